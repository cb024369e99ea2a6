"""Our leaders, registered with LeRobot as `vla_so100_leader`, `vla_so101_leader`, `vla_koch_leader`."""
