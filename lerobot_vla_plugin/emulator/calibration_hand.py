"""The hand that moves a virtual arm's limp joints while LeRobot's calibration flow runs on it.

Stock `lerobot-calibrate` asks a person to put the arm at the middle of its range, then records each joint's range
while the person moves the joints; on a virtual arm nobody would, and it stops with "Some motors have the same min
and max values". The flow leaves a clear trace in the servos' registers, whichever bus driver writes them:

- torque off and every servo's calibration reset (Homing_Offset 0, position limits the whole turn): the person has
  put the arm at the middle of its range (`reset_calibration`, read back at once by `set_half_turn_homings`);
- a Homing_Offset written after that: range recording begins; the hand sweeps every joint through its range
  (`sim.operator.RangeSweep`), pass after pass, on the wall clock, as a person would while the prompt waits;
- the limits written to something else than the whole turn, or torque on: calibration is over, the hand lets go.

Only writes move the hand from one phase to the next, and only a write of calibration registers starts it, so an
arm that merely starts out uncalibrated is left alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from lerobot_vla_plugin.motors.feetech.tables import MODELS
from lerobot_vla_plugin.sim.operator import RangeSweep
from lerobot_vla_plugin.sim.so101 import JOINT_NAMES

from .arms import SO_JOINTS

IDLE, HOMING, SWEEPING = "idle", "homing", "sweeping"
_CALIBRATION_ADDRESSES = {MODELS["sts3215"].registers[name].address
                          for name in ("Homing_Offset", "Min_Position_Limit", "Max_Position_Limit")}


class CalibrationHand:
    """Follows LeRobot's calibration flow on one arm's servos; `target()` is where the hand holds the joints."""

    def __init__(self, role: str, servos: list, joint_limits_rad: np.ndarray, *,
                 say: Callable[[str], None] = lambda text: None, clock=time.monotonic):
        self.role = role
        self.servos = servos
        self.sweep = RangeSweep(joint_limits_rad)
        self.phase = IDLE
        self._say = say
        self._clock = clock
        self._sweep_start_s = 0.0
        self._announced_pass = False

    @property
    def active(self) -> bool:
        return self.phase != IDLE

    def after_write(self, address: int | None) -> str | None:
        """Call after every write to this arm's servos (`address`: where it wrote, None if unknown); returns the
        phase entered, if it changed."""
        torque = any(s.torque_enabled for s in self.servos)
        if self.phase == IDLE and address in _CALIBRATION_ADDRESSES and not torque \
                and all(self._reads(s, 0, 0, s.resolution - 1) for s in self.servos):
            return self._enter(HOMING, f"calibration of the {self.role}: the hand holds it at the middle of its range")
        if self.phase == HOMING and not torque and any(self._homing(s) != 0 for s in self.servos):
            self._sweep_start_s = self._clock()
            self._announced_pass = False
            return self._enter(SWEEPING, f"calibration of the {self.role}: the hand moves each joint through its "
                                         f"range, {self.sweep.duration_s:.1f} s a pass")
        if self.phase != IDLE and (torque or self._limits_written()):
            return self._enter(IDLE, f"calibration of the {self.role}: the hand lets go")
        return None

    def target(self) -> np.ndarray | None:
        """Joint radians (SO101Sim order) the hand holds now, or None when it does not touch the arm."""
        if self.phase == HOMING:
            return np.zeros(len(JOINT_NAMES))
        if self.phase == SWEEPING:
            elapsed = self._clock() - self._sweep_start_s
            if elapsed >= self.sweep.duration_s and not self._announced_pass:
                self._announced_pass = True
                self._say(f"calibration of the {self.role}: every joint has been through its range; "
                          "press ENTER in lerobot-calibrate")
            return self.sweep.target_at(elapsed)
        return None

    def _enter(self, phase: str, message: str) -> str:
        self.phase = phase
        self._say(message)
        return phase

    def _limits_written(self) -> bool:
        """A range other than the whole turn on a swept joint: LeRobot has written the new calibration."""
        swept = [s for s in self.servos
                 if 1 <= s.id <= len(SO_JOINTS) and SO_JOINTS[s.id - 1] not in self.sweep.full_turn]
        return any(not self._reads(s, None, 0, s.resolution - 1) for s in swept)

    @staticmethod
    def _homing(servo) -> int:
        return servo._homing_offset()

    @classmethod
    def _reads(cls, servo, homing: int | None, low: int, high: int) -> bool:
        memory = servo.memory
        limits = (memory.get_raw("Min_Position_Limit"), memory.get_raw("Max_Position_Limit")) == (low, high)
        return limits and (homing is None or cls._homing(servo) == homing)
