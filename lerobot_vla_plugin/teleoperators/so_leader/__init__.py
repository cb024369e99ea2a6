"""SO-100 / SO-101 leaders (six STS3215 servos, torque off)."""
