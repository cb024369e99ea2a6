"""SO-100 / SO-101 followers: LeRobot's SO follower (same motors, units, calibration flow and settings) on our
Feetech bus, with the shared safety layer of `arms.follower`."""

from __future__ import annotations

import logging

from ...arms.definitions import so_motors
from ...arms.so_calibration import POSITION_MODE, calibrate_so_arm
from ...arms.follower import ArmFollower
from ...motors.feetech.bus import FeetechBus
from .config_so_follower import VlaSO100FollowerConfig, VlaSO101FollowerConfig

logger = logging.getLogger(__name__)



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
        calibrate_so_arm(self)
        self._guard = None  # joint limits come from the calibration


class VlaSO100Follower(VlaSOFollower):
    config_class = VlaSO100FollowerConfig
    name = "vla_so100_follower"


class VlaSO101Follower(VlaSOFollower):
    config_class = VlaSO101FollowerConfig
    name = "vla_so101_follower"
