"""Configs of the SO-100 and SO-101 followers. Config only: imported on every `lerobot-*` start-up."""

from __future__ import annotations

from dataclasses import dataclass

from lerobot.robots.config import RobotConfig

from ...arms.config import FollowerFields


@dataclass
class _VlaSOFollowerConfig(FollowerFields):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.validate_follower_fields()


@RobotConfig.register_subclass("vla_so100_follower")
@dataclass
class VlaSO100FollowerConfig(_VlaSOFollowerConfig):
    pass


@RobotConfig.register_subclass("vla_so101_follower")
@dataclass
class VlaSO101FollowerConfig(_VlaSOFollowerConfig):
    pass
