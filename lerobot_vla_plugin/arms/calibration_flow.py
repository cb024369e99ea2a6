"""The steps LeRobot's SO and Koch calibration flows share, prompt for prompt (see so_calibration.py and
koch_calibration.py for the order each arm runs them in)."""

from __future__ import annotations

import logging

from lerobot.motors.motors_bus import MotorCalibration

logger = logging.getLogger(__name__)


def keep_calibration_file(device) -> bool:
    """Offer the device's calibration file; True when the user kept it (it is then written to the servos)."""
    if not device.calibration:
        return False
    user_input = input(
        f"Press ENTER to use provided calibration file associated with the id {device.id}, or type 'c' and "
        "press ENTER to run calibration: ")
    if user_input.strip().lower() == "c":
        return False
    logger.info(f"Writing calibration file associated with the id {device.id} to the motors")
    device.bus.write_calibration(device.calibration)
    return True


def record_calibration(device, full_turn_label: str, inverted_motors: tuple[str, ...] = ()) -> None:
    """Home every joint at mid-range, record the ranges of all but `device.full_turn_motors` (named in the prompt
    as `full_turn_label`), then write the calibration to the servos and save its file."""
    bus = device.bus
    input(f"Move {device} to the middle of its range of motion and press ENTER....")
    homing_offsets = bus.set_half_turn_homings()
    full_turn = device.full_turn_motors
    unknown_range_motors = [m for m in bus.motors if m not in full_turn]
    print(f"Move all joints except {full_turn_label} sequentially through their entire ranges of motion.\n"
          "Recording positions. Press ENTER to stop...")
    range_mins, range_maxes = bus.record_ranges_of_motion(unknown_range_motors)
    for motor in full_turn:
        range_mins[motor], range_maxes[motor] = 0, 4095
    device.calibration = {
        motor: MotorCalibration(id=m.id, drive_mode=1 if motor in inverted_motors else 0,
                                homing_offset=homing_offsets[motor], range_min=range_mins[motor],
                                range_max=range_maxes[motor])
        for motor, m in bus.motors.items()
    }
    bus.write_calibration(device.calibration)
    device._save_calibration()
    print(f"Calibration saved to {device.calibration_fpath}")
