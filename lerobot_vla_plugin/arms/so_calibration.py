"""LeRobot's SO-100/SO-101 calibration flow, prompt for prompt, shared by our SO followers and leaders."""

from __future__ import annotations

import logging

from lerobot.motors.motors_bus import MotorCalibration

logger = logging.getLogger(__name__)

POSITION_MODE = 0  # Feetech Operating_Mode: position servo


def calibrate_so_arm(device) -> bool:
    """Interactive calibration of an SO arm (`device` has `.bus`, `.calibration`, `.id`, `.full_turn_motors`).

    Returns False when the user kept the calibration file (it is written to the servos), True when a new one was
    recorded, written to the servos and saved, so LeRobot's docs and habits apply unchanged.
    """
    if device.calibration:
        user_input = input(
            f"Press ENTER to use provided calibration file associated with the id {device.id}, or type 'c' and "
            "press ENTER to run calibration: ")
        if user_input.strip().lower() != "c":
            logger.info(f"Writing calibration file associated with the id {device.id} to the motors")
            device.bus.write_calibration(device.calibration)
            return False
    logger.info(f"\nRunning calibration of {device}")
    bus = device.bus
    bus.disable_torque()
    for motor in bus.motors:
        bus.write("Operating_Mode", motor, POSITION_MODE)
    input(f"Move {device} to the middle of its range of motion and press ENTER....")
    homing_offsets = bus.set_half_turn_homings()
    full_turn = device.full_turn_motors
    unknown_range_motors = [m for m in bus.motors if m not in full_turn]
    print(f"Move all joints except {', '.join(repr(m) for m in full_turn)} sequentially through "
          "their entire ranges of motion.\nRecording positions. Press ENTER to stop...")
    range_mins, range_maxes = bus.record_ranges_of_motion(unknown_range_motors)
    for motor in full_turn:
        range_mins[motor], range_maxes[motor] = 0, 4095
    device.calibration = {
        motor: MotorCalibration(id=m.id, drive_mode=0, homing_offset=homing_offsets[motor],
                                range_min=range_mins[motor], range_max=range_maxes[motor])
        for motor, m in bus.motors.items()
    }
    bus.write_calibration(device.calibration)
    device._save_calibration()
    print(f"Calibration saved to {device.calibration_fpath}")
    return True
