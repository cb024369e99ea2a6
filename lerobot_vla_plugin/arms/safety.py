"""Every goal a follower sends passes here: finite values, calibrated joint limits, a ramp for a far first
command, and a per-step clamp against the last observed position.

Feetech/Dynamixel servos execute any goal at full torque, so a first command far from the resting pose, a NaN
or a jump in a policy's output becomes a violent motion. The clamp uses the positions read back by the
previous control tick, so it costs no extra bus read (LeRobot's `ensure_safe_goal_position` reads once more).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping

from lerobot.motors.motors_bus import MotorCalibration, MotorNormMode

from .config import validate_max_relative_target  # noqa: F401 - part of this module's API

logger = logging.getLogger(__name__)


def joint_limits(motors: Mapping, calibration: Mapping[str, MotorCalibration],
                 resolution: Mapping[str, int]) -> dict[str, tuple[float, float]]:
    """Calibrated range of each joint in the units the robot's actions use.

    Range modes are bounded by construction (-100..100, 0..100); degrees are not bounded by LeRobot's
    normalisation, so the calibrated [range_min, range_max] is converted to degrees around its middle.
    """
    limits = {}
    for name, motor in motors.items():
        if motor.norm_mode is MotorNormMode.RANGE_0_100:
            limits[name] = (0.0, 100.0)
        elif motor.norm_mode is MotorNormMode.RANGE_M100_100:
            limits[name] = (-100.0, 100.0)
        else:
            cal = calibration[name]
            half_span_deg = (cal.range_max - cal.range_min) / 2 * 360 / (resolution[name] - 1)
            limits[name] = (-half_span_deg, half_span_deg)
    return limits


class GoalGuard:
    """Turns requested goals into safe ones. One instance per follower; `reset()` whenever torque comes on."""

    def __init__(self, limits: dict[str, tuple[float, float]], max_step: dict[str, float] | None, *,
                 ramp_threshold: float, ramp_speed_per_s: float, max_ramp_dt_s: float = 0.1,
                 arm_name: str = "follower", clock=time.perf_counter):
        if not (math.isfinite(ramp_threshold) and ramp_threshold > 0):
            raise ValueError(f"ramp_threshold must be finite and > 0, got {ramp_threshold!r}")
        if not (math.isfinite(ramp_speed_per_s) and ramp_speed_per_s > 0):
            raise ValueError(f"ramp_speed must be finite and > 0, got {ramp_speed_per_s!r}")
        self.limits = limits
        self.max_step = max_step
        self.ramp_threshold = ramp_threshold
        self.ramp_speed_per_s = ramp_speed_per_s
        self.max_ramp_dt_s = max_ramp_dt_s
        self.arm_name = arm_name
        self.clock = clock
        self.ramping = False
        self._first_command = True
        self._last_sent: dict[str, float] = {}
        self._last_time_s: float | None = None
        self._last_clamp_warning_s = -math.inf
        self.clamped_steps = 0

    def reset(self) -> None:
        """The next command is a 'first command' again (after connect or torque re-enabled)."""
        self._first_command = True
        self.ramping = False
        self._last_sent = {}
        self._last_time_s = None

    def filter(self, goal: Mapping[str, float], present: Mapping[str, float]) -> dict[str, float]:
        now_s = self.clock()
        safe = {}
        for name, value in goal.items():
            if name not in self.limits:
                raise KeyError(f"{self.arm_name} has no joint named '{name}'; joints: {', '.join(self.limits)}")
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"The action for '{name}' on {self.arm_name} is {value}: refusing to send a "
                                 "non-finite goal. Check the policy or teleoperator that produced it.")
            lo, hi = self.limits[name]
            safe[name] = min(hi, max(lo, value))

        if self._first_command:
            self._first_command = False
            self._last_sent = {m: present[m] for m in present}
            far = {m: abs(v - present[m]) for m, v in safe.items() if abs(v - present[m]) > self.ramp_threshold}
            if far:
                worst = max(far, key=far.get)
                self.ramping = True
                logger.warning(
                    "%s: first command is %.1f away from the present pose on '%s' (threshold %.1f); ramping to it "
                    "at %.0f units/s instead of jumping.", self.arm_name, far[worst], worst, self.ramp_threshold,
                    self.ramp_speed_per_s)
        if self.ramping:
            dt = self.max_ramp_dt_s if self._last_time_s is None else min(now_s - self._last_time_s,
                                                                          self.max_ramp_dt_s)
            allowed = self.ramp_speed_per_s * max(dt, 0.0)
            done = True
            for name, value in safe.items():
                start = self._last_sent.get(name, present[name])
                step = min(allowed, max(-allowed, value - start))
                safe[name] = start + step
                done = done and abs(value - safe[name]) < 1e-9
            if done:
                self.ramping = False
                logger.info("%s: ramp finished, now following commands directly.", self.arm_name)

        if self.max_step is not None:
            clamped = []
            for name, value in safe.items():
                step = self.max_step[name]
                here = present[name]
                bounded = min(here + step, max(here - step, value))
                if bounded != value:
                    clamped.append(name)
                    safe[name] = bounded
            if clamped:
                self.clamped_steps += 1
                if now_s - self._last_clamp_warning_s > 1.0:
                    self._last_clamp_warning_s = now_s
                    logger.warning("%s: step clamped by max_relative_target on %s.", self.arm_name,
                                   ", ".join(clamped))
        self._last_sent.update(safe)
        self._last_time_s = now_s
        return safe
