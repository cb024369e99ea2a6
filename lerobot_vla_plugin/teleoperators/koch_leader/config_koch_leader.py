"""Config of the Koch v1.1 leader. Config only: imported on every `lerobot-*` start-up."""

from __future__ import annotations

from dataclasses import dataclass

from lerobot.teleoperators.config import TeleoperatorConfig

from ...arms.config import LeaderFields


@TeleoperatorConfig.register_subclass("vla_koch_leader")
@dataclass
class VlaKochLeaderConfig(LeaderFields):
    # The gripper is held (current-limited) at this opening, 0..100, so it springs back after a squeeze.
    gripper_open_pos: float = 50.0

    def __post_init__(self) -> None:
        self.validate_leader_fields()
        if not 0.0 <= self.gripper_open_pos <= 100.0:
            raise ValueError(f"gripper_open_pos must be within 0..100, got {self.gripper_open_pos!r}")
