"""Koch v1.1 leader: LeRobot's Koch leader (same motors, modes, gripper trigger and calibration flow) on our
Dynamixel bus."""

from __future__ import annotations

import logging

from lerobot.motors.motors_bus import MotorCalibration

from ...arms.definitions import koch_leader_motors
from ...arms.leader import ArmLeader
from ...motors.dynamixel.bus import DynamixelBus
from ...motors.dynamixel.tables import OperatingMode
from .config_koch_leader import VlaKochLeaderConfig

logger = logging.getLogger(__name__)


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
        self.bus.disable_torque()
        if self.calibration:
            user_input = input(
                f"Press ENTER to use provided calibration file associated with the id {self.id}, or type 'c' and "
                "press ENTER to run calibration: ")
            if user_input.strip().lower() != "c":
                logger.info(f"Writing calibration file associated with the id {self.id} to the motors")
                self.bus.write_calibration(self.calibration)
                return
        logger.info(f"\nRunning calibration of {self}")
        for motor in self.bus.motors:
            self.bus.write("Operating_Mode", motor, int(OperatingMode.EXTENDED_POSITION))
        self.bus.write("Drive_Mode", "elbow_flex", 1)  # inverted, as LeRobot's Koch leader
        drive_modes = {motor: 1 if motor == "elbow_flex" else 0 for motor in self.bus.motors}
        input(f"Move {self} to the middle of its range of motion and press ENTER....")
        homing_offsets = self.bus.set_half_turn_homings()
        unknown_range_motors = [m for m in self.bus.motors if m not in self.full_turn_motors]
        print(f"Move all joints except {list(self.full_turn_motors)} sequentially through their entire "
              "ranges of motion.\nRecording positions. Press ENTER to stop...")
        range_mins, range_maxes = self.bus.record_ranges_of_motion(unknown_range_motors)
        for motor in self.full_turn_motors:
            range_mins[motor], range_maxes[motor] = 0, 4095
        self.calibration = {
            motor: MotorCalibration(id=m.id, drive_mode=drive_modes[motor], homing_offset=homing_offsets[motor],
                                    range_min=range_mins[motor], range_max=range_maxes[motor])
            for motor, m in self.bus.motors.items()
        }
        self.bus.write_calibration(self.calibration)
        self._save_calibration()
        print(f"Calibration saved to {self.calibration_fpath}")
