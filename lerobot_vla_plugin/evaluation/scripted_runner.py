"""A policy that needs no training: it replays the scripted operator's demonstration of the current scene.

It is the evaluator's reference point. The recorder's demonstrations come from the same operator, so its success
rate is the ceiling an imitation policy trained on them can reach, and a check that the instrument itself works.
"""

from __future__ import annotations

import mujoco
import numpy as np

from lerobot_vla_plugin.sim.operator import ScriptedOperator
from lerobot_vla_plugin.sim.so101 import TASKS, SO101Sim

from lerobot_vla_plugin.arms.virtual_so101 import follower_action_from_joint_angles


class ScriptedOperatorRunner:
    """Sends the virtual arm's `leader_joint_targets()` (the demonstration planned for the episode's task) as the
    follower's action. `cube`: replay a demonstration for that cube instead, planned on the same scene (a policy
    that confuses the cubes)."""

    def __init__(self, virtual, cube: str | None = None):
        if cube is not None and cube not in TASKS:
            raise KeyError(f"unknown cube {cube!r}; choose one of {sorted(TASKS)}")
        self.virtual = virtual
        self.cube = cube
        self._joint_limits = virtual.sim.joint_limits()
        self._targets = virtual.leader_joint_targets

    def reset(self, task: str) -> None:
        if self.cube is None or self.cube == self.virtual.task:
            self._targets = self.virtual.leader_joint_targets
            return
        virtual = self.virtual
        planning = SO101Sim(virtual.sim.scene_path)
        with virtual.lock:
            mujoco.mj_copyData(planning.data, planning.model, virtual.sim.data)
            start_s = virtual.episode_time_s
        operator = ScriptedOperator(planning, self.cube, np.random.default_rng(virtual.seed))
        operator.plan()
        self._targets = lambda: operator.target_at(virtual.episode_time_s - start_s)

    def act(self, observation: dict) -> dict[str, float]:
        return follower_action_from_joint_angles(self._targets(), self._joint_limits)
