"""Our followers, registered with LeRobot as `vla_so100_follower`, `vla_so101_follower`, `vla_koch_follower`.

Each package follows LeRobot's layout (`config_<x>.py` with `<Name>Config`, `<x>.py` with `<Name>`) so that
`make_robot_from_config` finds the class without importing it at plugin discovery.
"""
