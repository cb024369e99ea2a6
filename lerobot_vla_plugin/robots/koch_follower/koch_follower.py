"""Koch v1.1 follower: LeRobot's Koch follower (same motors, modes, gains, units and calibration flow) on our
Dynamixel bus, with the shared safety layer of `arms.follower`."""

from __future__ import annotations

import logging

from lerobot.motors.motors_bus import MotorCalibration

from ...arms.definitions import koch_follower_motors
from ...arms.follower import ArmFollower
from ...motors.dynamixel.bus import DynamixelBus
from ...motors.dynamixel.tables import OperatingMode
from .config_koch_follower import VlaKochFollowerConfig

logger = logging.getLogger(__name__)


class VlaKochFollower(ArmFollower):
    config_class = VlaKochFollowerConfig
    name = "vla_koch_follower"
    bus_class = DynamixelBus
    full_turn_motors = ("shoulder_pan", "wrist_roll")

    def _make_motors(self):
        return koch_follower_motors(self.config.use_degrees)

    def _configure_motors(self) -> None:
        self.bus.configure_motors()
        # Extended position: no wrap at the 0/4095 seam, wherever the horn was mounted.
        for motor in self.bus.motors:
            if motor != "gripper":
                self.bus.write("Operating_Mode", motor, int(OperatingMode.EXTENDED_POSITION))
        # Current-based position: the gripper closes on an object without forcing beyond its current limit.
        self.bus.write("Operating_Mode", "gripper", int(OperatingMode.CURRENT_POSITION))
        self.bus.write("Position_P_Gain", "elbow_flex", 1500)
        self.bus.write("Position_I_Gain", "elbow_flex", 0)
        self.bus.write("Position_D_Gain", "elbow_flex", 600)

    def calibrate(self) -> None:
        """LeRobot's Koch calibration flow, prompt for prompt."""
        self.bus.disable_torque()
        if self.calibration:
            user_input = input(
                f"Press ENTER to use provided calibration file associated with the id {self.id}, or type 'c' and "
                "press ENTER to run calibration: ")
            if user_input.strip().lower() != "c":
                logger.info(f"Writing calibration file associated with the id {self.id} to the motors")
                self.bus.write_calibration(self.calibration)
                self._guard = None
                return
        logger.info(f"\nRunning calibration of {self}")
        for motor in self.bus.motors:
            self.bus.write("Operating_Mode", motor, int(OperatingMode.EXTENDED_POSITION))
        input(f"Move {self} to the middle of its range of motion and press ENTER....")
        homing_offsets = self.bus.set_half_turn_homings()
        unknown_range_motors = [m for m in self.bus.motors if m not in self.full_turn_motors]
        print(f"Move all joints except {list(self.full_turn_motors)} sequentially through their entire "
              "ranges of motion.\nRecording positions. Press ENTER to stop...")
        range_mins, range_maxes = self.bus.record_ranges_of_motion(unknown_range_motors)
        for motor in self.full_turn_motors:
            range_mins[motor], range_maxes[motor] = 0, 4095
        self.calibration = {
            motor: MotorCalibration(id=m.id, drive_mode=0, homing_offset=homing_offsets[motor],
                                    range_min=range_mins[motor], range_max=range_maxes[motor])
            for motor, m in self.bus.motors.items()
        }
        self.bus.write_calibration(self.calibration)
        self._save_calibration()
        self._guard = None
        print("Calibration saved to", self.calibration_fpath)
