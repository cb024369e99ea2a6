"""SO-100 / SO-101 followers: LeRobot's SO follower (same motors, units, calibration flow and settings) on our
Feetech bus, with the shared safety layer of `arms.follower`."""

from __future__ import annotations

import logging

from lerobot.motors.motors_bus import MotorCalibration

from ...arms.definitions import so_motors
from ...arms.follower import ArmFollower
from ...motors.feetech.bus import FeetechBus
from .config_so_follower import VlaSO100FollowerConfig, VlaSO101FollowerConfig

logger = logging.getLogger(__name__)

POSITION_MODE = 0  # Feetech Operating_Mode: position servo


class VlaSOFollower(ArmFollower):
    bus_class = FeetechBus
    full_turn_motors = ("wrist_roll",)

    def _make_motors(self):
        return so_motors(self.config.use_degrees)

    def _configure_motors(self) -> None:
        self.bus.configure_motors()
        for motor in self.bus.motors:
            self.bus.write("Operating_Mode", motor, POSITION_MODE)
            # P=16 instead of the factory 32 avoids shaking at hold; I=0, D=32 are the defaults.
            self.bus.write("P_Coefficient", motor, 16)
            self.bus.write("I_Coefficient", motor, 0)
            self.bus.write("D_Coefficient", motor, 32)
            if motor == "gripper":
                # Half torque/current: a gripper squeezing an object stalls for minutes and burns otherwise.
                self.bus.write("Max_Torque_Limit", motor, 500)
                self.bus.write("Protection_Current", motor, 250)
                self.bus.write("Overload_Torque", motor, 25)

    def calibrate(self) -> None:
        """LeRobot's SO calibration flow, prompt for prompt, so its docs and habits apply unchanged."""
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
        self.bus.disable_torque()
        for motor in self.bus.motors:
            self.bus.write("Operating_Mode", motor, POSITION_MODE)
        input(f"Move {self} to the middle of its range of motion and press ENTER....")
        homing_offsets = self.bus.set_half_turn_homings()
        unknown_range_motors = [m for m in self.bus.motors if m not in self.full_turn_motors]
        print(f"Move all joints except {', '.join(repr(m) for m in self.full_turn_motors)} sequentially through "
              "their entire ranges of motion.\nRecording positions. Press ENTER to stop...")
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


class VlaSO100Follower(VlaSOFollower):
    config_class = VlaSO100FollowerConfig
    name = "vla_so100_follower"


class VlaSO101Follower(VlaSOFollower):
    config_class = VlaSO101FollowerConfig
    name = "vla_so101_follower"
