"""Policy runners: what turns the robot's observation into its next action during an evaluation.

The episode loop only knows `PolicyRunner` (reset per episode, one action per control tick), so an asynchronous
runner (inference in a background thread, an action queue with a delay estimate) can replace the synchronous one
without touching the loop.
"""

from __future__ import annotations

from typing import Protocol

from lerobot_vla_plugin.rollout.loaded_policy import LoadedPolicy, RunnerFault


class PolicyRunner(Protocol):
    def reset(self, task: str) -> None:
        """A new episode starts; `task` is the instruction said to the policy."""

    def act(self, observation: dict) -> dict[str, float]:
        """The robot action (`<joint>.pos` -> value) for this control tick's robot observation; raises
        `RunnerFault` when the episode has to stop."""


class SyncPolicyRunner:
    """One observation -> one action per tick, the policy's own action queue deciding when to infer (as in
    lerobot-record with --policy.path): the control loop waits while a chunk is computed."""

    def __init__(self, loaded: LoadedPolicy):
        self.loaded = loaded
        self.policy = loaded.policy
        self.task = ""

    @classmethod
    def from_config(cls, policy_cfg, robot) -> SyncPolicyRunner:
        return cls(LoadedPolicy.from_config(policy_cfg, robot))

    def reset(self, task: str) -> None:
        self.task = task
        self.loaded.reset()

    def act(self, observation: dict) -> dict[str, float]:
        from lerobot.utils.control_utils import predict_action

        loaded = self.loaded
        values = predict_action(observation=loaded.frame(observation), policy=loaded.policy, device=loaded.device(),
                                preprocessor=loaded.preprocessor, postprocessor=loaded.postprocessor,
                                use_amp=loaded.policy.config.use_amp, task=self.task, robot_type=loaded.robot_type)
        return loaded.robot_action(values)
