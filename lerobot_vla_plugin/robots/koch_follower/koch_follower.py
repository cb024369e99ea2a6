"""Koch v1.1 follower: LeRobot's Koch follower (same motors, modes, gains, units and calibration flow) on our
Dynamixel bus, with the shared safety layer of `arms.follower`."""

from __future__ import annotations

from ...arms.definitions import koch_follower_motors
from ...arms.follower import ArmFollower
from ...arms.koch_calibration import calibrate_koch_arm
from ...motors.dynamixel.bus import DynamixelBus
from ...motors.dynamixel.tables import OperatingMode
from .config_koch_follower import VlaKochFollowerConfig


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
        calibrate_koch_arm(self)
        self._guard = None  # joint limits come from the calibration
