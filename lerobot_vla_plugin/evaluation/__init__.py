"""Measuring a policy's success on the virtual SO-101: policy runners, the episode loop, outcomes and reports.

Kept out of plugin discovery: nothing here is imported unless `lerobot-vla eval` (or a test) asks for it.
"""
