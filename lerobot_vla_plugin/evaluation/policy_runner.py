"""Policy runners: what turns the robot's observation into its next action during an evaluation.

The episode loop only knows `PolicyRunner` (reset per episode, one action per control tick), so an asynchronous
runner (inference in a background thread, an action queue with a delay estimate) can replace the synchronous one
without touching the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class PolicyRunner(Protocol):
    def reset(self, task: str) -> None:
        """A new episode starts; `task` is the instruction said to the policy."""

    def act(self, observation: dict) -> dict[str, float]:
        """The robot action (`<joint>.pos` -> value) for this control tick's robot observation."""


def robot_dataset_features(robot, use_videos: bool = True) -> dict:
    """Dataset features of `robot` as lerobot-record builds them with its default (identity) processors."""
    from lerobot.datasets.utils import hw_to_dataset_features
    from lerobot.utils.constants import ACTION, OBS_STR

    return {**hw_to_dataset_features(robot.action_features, ACTION, use_videos),
            **hw_to_dataset_features(robot.observation_features, OBS_STR, use_videos)}


@dataclass
class RobotFeatureMetadata:
    """The part of a dataset's metadata `make_policy` reads: the features, no statistics (a trained policy
    carries its normalisation in its processors)."""

    features: dict
    stats: dict | None = None


class SyncPolicyRunner:
    """One observation -> one action per tick, the policy's own action queue deciding when to infer (as in
    lerobot-record with --policy.path): the control loop waits while a chunk is computed."""

    def __init__(self, policy, preprocessor, postprocessor, features: dict, robot_type: str):
        self.policy = policy
        self.preprocessor = preprocessor
        self.postprocessor = postprocessor
        self.features = features
        self.robot_type = robot_type
        self.task = ""

    @classmethod
    def from_config(cls, policy_cfg, robot) -> SyncPolicyRunner:
        """Load any LeRobot policy (`policy_cfg.pretrained_path`) with its saved processors, for `robot`."""
        from lerobot.policies.factory import make_policy, make_pre_post_processors

        features = robot_dataset_features(robot)
        policy = make_policy(policy_cfg, ds_meta=RobotFeatureMetadata(features))
        policy.eval()
        preprocessor, postprocessor = make_pre_post_processors(
            policy_cfg=policy_cfg, pretrained_path=policy_cfg.pretrained_path,
            preprocessor_overrides={"device_processor": {"device": policy_cfg.device},
                                    "rename_observations_processor": {"rename_map": {}}})
        return cls(policy, preprocessor, postprocessor, features, robot.name)

    def reset(self, task: str) -> None:
        self.task = task
        self.policy.reset()
        self.preprocessor.reset()
        self.postprocessor.reset()

    def act(self, observation: dict) -> dict[str, float]:
        from lerobot.datasets.utils import build_dataset_frame
        from lerobot.policies.utils import make_robot_action
        from lerobot.utils.constants import OBS_STR
        from lerobot.utils.control_utils import predict_action
        from lerobot.utils.utils import get_safe_torch_device

        frame = build_dataset_frame(self.features, observation, prefix=OBS_STR)
        values = predict_action(observation=frame, policy=self.policy,
                                device=get_safe_torch_device(self.policy.config.device),
                                preprocessor=self.preprocessor, postprocessor=self.postprocessor,
                                use_amp=self.policy.config.use_amp, task=self.task, robot_type=self.robot_type)
        return make_robot_action(values, self.features)
