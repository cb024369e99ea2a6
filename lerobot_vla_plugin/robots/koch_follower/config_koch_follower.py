"""Config of the Koch v1.1 follower. Config only: imported on every `lerobot-*` start-up."""

from __future__ import annotations

from dataclasses import dataclass

from lerobot.robots.config import RobotConfig

from ...arms.config import FollowerFields


@RobotConfig.register_subclass("vla_koch_follower")
@dataclass
class VlaKochFollowerConfig(FollowerFields):
    # LeRobot's Koch follower reports -100..100 of the calibrated range (not degrees); so do we by default.
    use_degrees: bool = False
    # Speed of the first-command ramp, in -100..100 units per second.
    ramp_speed: float = 40.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.validate_follower_fields()
