"""LeRobot's SO-100/SO-101 calibration flow, prompt for prompt, shared by our SO followers and leaders."""

from __future__ import annotations

import logging

from .calibration_flow import keep_calibration_file, record_calibration

logger = logging.getLogger(__name__)

POSITION_MODE = 0  # Feetech Operating_Mode: position servo


def calibrate_so_arm(device) -> bool:
    """Interactive calibration of an SO arm (`device` has `.bus`, `.calibration`, `.id`, `.full_turn_motors`).

    Returns False when the user kept the calibration file (it is written to the servos), True when a new one was
    recorded, written to the servos and saved, so LeRobot's docs and habits apply unchanged.
    """
    if keep_calibration_file(device):
        return False
    logger.info(f"\nRunning calibration of {device}")
    device.bus.disable_torque()
    for motor in device.bus.motors:
        device.bus.write("Operating_Mode", motor, POSITION_MODE)
    record_calibration(device, ", ".join(repr(m) for m in device.full_turn_motors))
    return True
