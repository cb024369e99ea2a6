"""LeRobot's Koch v1.1 calibration flow, prompt for prompt, shared by our Koch follower and leader."""

from __future__ import annotations

import logging

from ..motors.dynamixel.tables import OperatingMode
from .calibration_flow import keep_calibration_file, record_calibration

logger = logging.getLogger(__name__)


def calibrate_koch_arm(device, inverted_motors: tuple[str, ...] = ()) -> bool:
    """Interactive calibration of a Koch arm (`device` has `.bus`, `.calibration`, `.id`, `.full_turn_motors`).

    `inverted_motors` get Drive_Mode 1 before homing (LeRobot's Koch leader inverts its elbow). Returns False
    when the user kept the calibration file (it is written to the servos), True when a new one was recorded,
    written to the servos and saved.
    """
    device.bus.disable_torque()  # Koch: before the prompt, unlike the SO flow
    if keep_calibration_file(device):
        return False
    logger.info(f"\nRunning calibration of {device}")
    for motor in device.bus.motors:
        device.bus.write("Operating_Mode", motor, int(OperatingMode.EXTENDED_POSITION))
    for motor in inverted_motors:
        device.bus.write("Drive_Mode", motor, 1)
    record_calibration(device, str(list(device.full_turn_motors)), inverted_motors)
    return True
