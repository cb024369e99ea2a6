"""SO-100 / SO-101 followers (six STS3215 servos on a Feetech bus)."""
