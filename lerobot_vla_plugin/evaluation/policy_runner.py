"""Policy runners: what turns the robot's observation into its next action during an evaluation.

The episode loop only knows `PolicyRunner` (reset per episode, one action per control tick), so an asynchronous
runner (inference in a background thread, an action queue with a delay estimate) can replace the synchronous one
without touching the loop.
"""

from __future__ import annotations

import time
from typing import Protocol

from lerobot_vla_plugin.rollout.loaded_policy import LoadedPolicy, RunnerFault


class PolicyRunner(Protocol):
    def reset(self, task: str) -> None:
        """A new episode starts; `task` is the instruction said to the policy."""

    def act(self, observation: dict) -> dict[str, float]:
        """The robot action (`<joint>.pos` -> value) for this control tick's robot observation; raises
        `RunnerFault` when the episode has to stop."""


class SyncPolicyRunner:
    """One observation -> one action per tick through LeRobot's own `predict_action` (the call lerobot-record's
    `record_loop` makes with --policy.path), the policy's own action queue deciding when to infer: the control
    loop waits while a chunk is computed.

    `tick_info()` tells the control loop which ticks computed a new chunk and how long that took, read from the
    policy's `_action_queue` (LeRobot's chunking policies and flow_vla keep one): empty before the call means the
    call computed a chunk. A policy without that queue reports no chunks."""

    def __init__(self, loaded: LoadedPolicy):
        self.loaded = loaded
        self.policy = loaded.policy
        self.task = ""
        self._chunk_latency_s: float | None = None

    @classmethod
    def from_config(cls, policy_cfg, robot) -> SyncPolicyRunner:
        return cls(LoadedPolicy.from_config(policy_cfg, robot))

    def reset(self, task: str) -> None:
        self.task = task
        self.loaded.reset()

    def act(self, observation: dict) -> dict[str, float]:
        from lerobot.utils.control_utils import predict_action

        loaded = self.loaded
        queue = getattr(loaded.policy, "_action_queue", None)
        computes_chunk = queue is not None and len(queue) == 0
        started = time.perf_counter()
        values = predict_action(observation=loaded.frame(observation), policy=loaded.policy, device=loaded.device(),
                                preprocessor=loaded.preprocessor, postprocessor=loaded.postprocessor,
                                use_amp=loaded.policy.config.use_amp, task=self.task, robot_type=loaded.robot_type)
        self._chunk_latency_s = time.perf_counter() - started if computes_chunk else None
        return loaded.robot_action(values)

    def tick_info(self):
        from lerobot_vla_plugin.rollout.loop import TickInfo

        latency = self._chunk_latency_s
        return TickInfo(chunk_start=latency is not None, chunk_latency_s=latency)
