"""SO-100 / SO-101 leaders: LeRobot's SO leader (same motors, units and calibration flow) on our Feetech bus."""

from __future__ import annotations

import logging

from lerobot.motors.motors_bus import MotorCalibration

from ...arms.definitions import so_motors
from ...arms.leader import ArmLeader
from ...motors.feetech.bus import FeetechBus
from .config_so_leader import VlaSO100LeaderConfig, VlaSO101LeaderConfig

logger = logging.getLogger(__name__)

POSITION_MODE = 0


class VlaSOLeader(ArmLeader):
    bus_class = FeetechBus
    full_turn_motors = ("wrist_roll",)

    def _make_motors(self):
        return so_motors(self.config.use_degrees)

    def configure(self) -> None:
        self.bus.disable_torque()
        self.bus.configure_motors()
        for motor in self.bus.motors:
            self.bus.write("Operating_Mode", motor, POSITION_MODE)

    def calibrate(self) -> None:
        if self.calibration:
            user_input = input(
                f"Press ENTER to use provided calibration file associated with the id {self.id}, or type 'c' and "
                "press ENTER to run calibration: ")
            if user_input.strip().lower() != "c":
                logger.info(f"Writing calibration file associated with the id {self.id} to the motors")
                self.bus.write_calibration(self.calibration)
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
        print(f"Calibration saved to {self.calibration_fpath}")


class VlaSO100Leader(VlaSOLeader):
    config_class = VlaSO100LeaderConfig
    name = "vla_so100_leader"


class VlaSO101Leader(VlaSOLeader):
    config_class = VlaSO101LeaderConfig
    name = "vla_so101_leader"
