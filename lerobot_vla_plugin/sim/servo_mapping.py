"""Joint angle <-> STS3215 position steps, shared by the MuJoCo arm and the servo emulator.

Kept free of MuJoCo so the emulator can convert values without loading a physics engine. With the
"new calib" convention a joint at 0 rad sits at the middle of the encoder range (step 2048).
"""

from __future__ import annotations

import numpy as np

STEPS_PER_TURN = 4096
CENTER_STEP = 2048
MAX_STEP = STEPS_PER_TURN - 1


def joint_to_servo_steps(rad: np.ndarray) -> np.ndarray:
    """Radians -> integer encoder steps, clipped to the 12-bit range a real servo can report."""
    steps = np.rint(CENTER_STEP + np.asarray(rad, dtype=np.float64) * STEPS_PER_TURN / (2 * np.pi))
    return np.clip(steps, 0, MAX_STEP).astype(np.int64)


def servo_steps_to_joint(steps: np.ndarray) -> np.ndarray:
    """Encoder steps -> radians (inverse of `joint_to_servo_steps` up to one step of quantization)."""
    return (np.asarray(steps, dtype=np.float64) - CENTER_STEP) * (2 * np.pi) / STEPS_PER_TURN
