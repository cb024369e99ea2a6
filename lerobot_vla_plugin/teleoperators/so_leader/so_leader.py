"""SO-100 / SO-101 leaders: LeRobot's SO leader (same motors, units and calibration flow) on our Feetech bus."""

from __future__ import annotations

import logging

from ...arms.definitions import so_motors
from ...arms.so_calibration import POSITION_MODE, calibrate_so_arm
from ...arms.leader import ArmLeader
from ...motors.feetech.bus import FeetechBus
from .config_so_leader import VlaSO100LeaderConfig, VlaSO101LeaderConfig

logger = logging.getLogger(__name__)



class VlaSOLeader(ArmLeader):
    bus_class = FeetechBus
    full_turn_motors = ("wrist_roll",)
    can_hold_pose = True  # STS3215 servos, configured in position mode

    def _make_motors(self):
        return so_motors(self.config.use_degrees)

    def configure(self) -> None:
        self.bus.disable_torque()
        self.bus.configure_motors()
        for motor in self.bus.motors:
            self.bus.write("Operating_Mode", motor, POSITION_MODE)

    def calibrate(self) -> None:
        """LeRobot's SO calibration flow, prompt for prompt, so its docs and habits apply unchanged."""
        calibrate_so_arm(self)


class VlaSO100Leader(VlaSOLeader):
    config_class = VlaSO100LeaderConfig
    name = "vla_so100_leader"


class VlaSO101Leader(VlaSOLeader):
    config_class = VlaSO101LeaderConfig
    name = "vla_so101_leader"
