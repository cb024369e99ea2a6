"""Koch v1.1 leader: LeRobot's Koch leader (same motors, modes, gripper trigger and calibration flow) on our
Dynamixel bus."""

from __future__ import annotations

from ...arms.definitions import koch_leader_motors
from ...arms.koch_calibration import calibrate_koch_arm
from ...arms.leader import ArmLeader
from ...motors.dynamixel.bus import DynamixelBus
from ...motors.dynamixel.tables import OperatingMode
from .config_koch_leader import VlaKochLeaderConfig


class VlaKochLeader(ArmLeader):
    config_class = VlaKochLeaderConfig
    name = "vla_koch_leader"
    bus_class = DynamixelBus
    full_turn_motors = ("shoulder_pan", "wrist_roll")

    def _make_motors(self):
        return koch_leader_motors()

    def configure(self) -> None:
        self.bus.disable_torque()
        self.bus.configure_motors()
        for motor in self.bus.motors:
            if motor != "gripper":
                self.bus.write("Operating_Mode", motor, int(OperatingMode.EXTENDED_POSITION))
        # Current-based position with torque on: the gripper is a spring trigger held at `gripper_open_pos`.
        self.bus.write("Operating_Mode", "gripper", int(OperatingMode.CURRENT_POSITION))
        self.bus.enable_torque("gripper")
        if self.is_calibrated:
            self.bus.write("Goal_Position", "gripper", self.config.gripper_open_pos)

    def calibrate(self) -> None:
        """LeRobot's Koch calibration flow, prompt for prompt; the elbow is inverted, as on LeRobot's Koch leader."""
        calibrate_koch_arm(self, inverted_motors=("elbow_flex",))
