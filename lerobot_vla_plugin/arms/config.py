"""Config fields shared by our followers and leaders, and their validation.

Imported by the registered config modules, so it stays light: dataclasses and LeRobot's config base classes only.
The shared fields sit in subclasses of RobotConfig / TeleoperatorConfig rather than in mixins: draccus takes an
option's `--help` text from the comment above the field, looking only along each config's first base class.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from lerobot.cameras import CameraConfig
from lerobot.robots.config import RobotConfig
from lerobot.teleoperators.config import TeleoperatorConfig

JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")


@dataclass
class FollowerFields(RobotConfig):
    """Fields of every follower. Units of the step/ramp fields are the action units: degrees for SO arms
    (`use_degrees=True`), -100..100 of the calibrated range for Koch arms; the gripper is 0..100."""

    # Serial port of the arm's bus adapter (`lerobot-vla find-port` lists them).
    port: str
    # Take the torque off every joint when the robot disconnects (the arm goes limp and may drop).
    disable_torque_on_disconnect: bool = True
    # Largest change of one joint's goal in one step, relative to its last observed position. On by default;
    # a positive number for all joints, or a dict with one per joint. None disables it (not recommended).
    max_relative_target: float | dict[str, float] | None = 10.0
    # Cameras by name, e.g. {front: {type: opencv, index_or_path: 0, width: 640, height: 480, fps: 30}}.
    cameras: dict[str, CameraConfig] = field(default_factory=dict)
    # Joint positions in degrees (SO arms, as LeRobot 0.4.4); false: -100..100 of the calibrated range.
    use_degrees: bool = True
    # A first command farther than this from the present pose is ramped to at `ramp_speed` per second.
    ramp_threshold: float = 10.0
    # Speed of that ramp, in action units (degrees) per second.
    ramp_speed: float = 60.0
    # get_observation reuses the positions read by the last control tick while they are younger than this.
    observation_reuse_ms: float = 2.0
    # Seconds between reads of the servos' temperature, voltage and load (one cheap bus transaction).
    health_check_period_s: float = 1.0
    # Warn once a servo gets this hot (degrees Celsius).
    temperature_warn_c: float = 55.0
    # Take the torque off and stop once a servo gets this hot (degrees Celsius).
    temperature_stop_c: float = 65.0
    # Warn when a servo's load stays above this percentage of its maximum.
    load_warn_percent: float = 80.0

    def validate_follower_fields(self) -> None:
        validate_max_relative_target(self.max_relative_target, JOINTS)
        for name in ("ramp_threshold", "ramp_speed", "health_check_period_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not (isinstance(self.observation_reuse_ms, (int, float)) and self.observation_reuse_ms >= 0):
            raise ValueError(f"observation_reuse_ms must be >= 0, got {self.observation_reuse_ms!r}")


@dataclass
class LeaderFields(TeleoperatorConfig):
    # Serial port of the leader's bus adapter (`lerobot-vla find-port` lists them).
    port: str
    # When get_action is called faster than this, the next read starts right away on a worker thread and is
    # used if still younger than this; 0 disables reading ahead.
    prefetch_max_age_ms: float = 5.0

    def validate_leader_fields(self) -> None:
        if isinstance(self.prefetch_max_age_ms, bool) or not isinstance(self.prefetch_max_age_ms, (int, float)) \
                or not math.isfinite(self.prefetch_max_age_ms) or self.prefetch_max_age_ms < 0:
            raise ValueError(f"prefetch_max_age_ms must be >= 0, got {self.prefetch_max_age_ms!r}")


def validate_max_relative_target(value, motors) -> dict[str, float] | None:
    """Check `max_relative_target` and expand it to one step limit per motor.

    Accepts a positive finite int or float, a dict giving one for each motor, or None (clamp disabled on
    purpose). NaN, inf, 0, negatives, booleans and strings are refused: each of them silently disables or
    inverts a clamp that users believe is protecting them.
    """
    motors = list(motors)
    if value is None:
        return None

    def check(name: str, step) -> float:
        if isinstance(step, bool) or not isinstance(step, (int, float)):
            raise ValueError(f"max_relative_target for {name} must be a number, got {step!r} "
                             f"({type(step).__name__}). Example: --robot.max_relative_target=10")
        if not math.isfinite(step) or step <= 0:
            raise ValueError(f"max_relative_target for {name} must be finite and > 0, got {step!r}. It limits how "
                             "far one step may move a joint; use a value like 10 (degrees), or None to disable.")
        return float(step)

    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(motors))
        missing = sorted(set(motors) - set(value))
        if unknown or missing:
            raise ValueError(f"max_relative_target must give a limit for exactly these motors: {', '.join(motors)}"
                             f" (unknown: {unknown or 'none'}, missing: {missing or 'none'}).")
        return {m: check(f"'{m}'", value[m]) for m in motors}
    return dict.fromkeys(motors, check("all motors", value))
