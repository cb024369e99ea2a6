"""Running a chunking policy at control rate: inference off the control loop, an action queue that merges each new
chunk (RTC prefix or crossfade), a delay estimate from recent latencies, and a guard that stops cleanly on
non-finite actions or an inference that never returns.

Kept out of plugin discovery: nothing here is imported unless a command (or a test) asks for it.
"""
