"""A LeRobot policy loaded for driving a robot: the policy, its saved pre/post processors, and the conversions
between the robot's observation/action dicts and the policy's tensors. Shared by every policy runner (synchronous
in evaluation/, asynchronous here), so a checkpoint is loaded one way.
"""

from __future__ import annotations

from dataclasses import dataclass


class RunnerFault(RuntimeError):
    """A runner cannot go on driving the arm this episode (`act` raised it); the loop ends the episode.
    `hold_action`: the target the arm should keep (None: keep the last one sent)."""

    hold_action: dict[str, float] | None = None



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


@dataclass
class LoadedPolicy:
    """A LeRobot policy with its saved processors, and what turns a robot observation into its input."""

    policy: object
    preprocessor: object
    postprocessor: object
    features: dict
    robot_type: str

    @classmethod
    def from_config(cls, policy_cfg, robot) -> LoadedPolicy:
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

    def reset(self) -> None:
        self.policy.reset()
        self.preprocessor.reset()
        self.postprocessor.reset()

    def frame(self, observation: dict) -> dict:
        """The robot observation as the policy's dataset frame (`observation.state`, `observation.images.*`)."""
        from lerobot.datasets.utils import build_dataset_frame
        from lerobot.utils.constants import OBS_STR

        return build_dataset_frame(self.features, observation, prefix=OBS_STR)

    def device(self):
        from lerobot.utils.utils import get_safe_torch_device

        return get_safe_torch_device(self.policy.config.device)

    def robot_action(self, values) -> dict[str, float]:
        """One action vector (robot units, a tensor or an array) as the robot's `<joint>.pos` dict."""
        import torch
        from lerobot.policies.utils import make_robot_action

        return make_robot_action(torch.as_tensor(values), self.features)
