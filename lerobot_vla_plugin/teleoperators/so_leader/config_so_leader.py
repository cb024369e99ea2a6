"""Configs of the SO-100 and SO-101 leaders. Config only: imported on every `lerobot-*` start-up."""

from __future__ import annotations

from dataclasses import dataclass

from lerobot.teleoperators.config import TeleoperatorConfig

from ...arms.config import LeaderFields


@dataclass
class _VlaSOLeaderConfig(LeaderFields):
    # Must match the follower's `use_degrees` (both default to degrees, like LeRobot 0.4.4).
    use_degrees: bool = True

    def __post_init__(self) -> None:
        self.validate_leader_fields()


@TeleoperatorConfig.register_subclass("vla_so100_leader")
@dataclass
class VlaSO100LeaderConfig(_VlaSOLeaderConfig):
    pass


@TeleoperatorConfig.register_subclass("vla_so101_leader")
@dataclass
class VlaSO101LeaderConfig(_VlaSOLeaderConfig):
    pass
