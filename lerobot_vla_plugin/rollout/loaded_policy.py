"""A LeRobot policy loaded for driving a robot: the policy, its saved pre/post processors, and the conversions
between the robot's observation/action dicts and the policy's tensors. Shared by every policy runner (synchronous
in evaluation/, asynchronous here), so a checkpoint is loaded one way.
"""

from __future__ import annotations

from dataclasses import dataclass


def inference_threads(cpu_count: int | None = None) -> int:
    """torch CPU threads for a policy that drives an arm: every core but one, which the control loop, the bus,
    the cameras (and on the virtual arm the simulation) need on time. torch's default, all cores, oversubscribes a
    small CPU: measured on a 2-core machine with the virtual arm running, one chunk took 1.4-2.1 s with 2 threads
    and about 43 ms with 1. OMP_NUM_THREADS, when set, decides instead."""
    import os

    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    return max(1, (cpu_count or os.cpu_count() or 1) - 1)


def use_inference_threads() -> int:
    """Give torch `inference_threads()` threads (commands that drive an arm call it once at start); returns it."""
    import torch

    threads = inference_threads()
    torch.set_num_threads(threads)
    return threads


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


class RobotPolicyIO:
    """The conversions between a robot's observation/action dicts and a policy's dataset frames, from `features`
    (the robot's dataset features): what a runner needs whether the policy runs here or on a policy server."""

    features: dict

    def frame(self, observation: dict) -> dict:
        """The robot observation as the policy's dataset frame (`observation.state`, `observation.images.*`)."""
        from lerobot.datasets.utils import build_dataset_frame
        from lerobot.utils.constants import OBS_STR

        return build_dataset_frame(self.features, observation, prefix=OBS_STR)

    def robot_action(self, values) -> dict[str, float]:
        """One action vector (robot units, a tensor or an array) as the robot's `<joint>.pos` dict."""
        import torch
        from lerobot.policies.utils import make_robot_action

        return make_robot_action(torch.as_tensor(values), self.features)


@dataclass
class LoadedPolicy(RobotPolicyIO):
    """A LeRobot policy with its saved processors, and what turns a robot observation into its input."""

    policy: object
    preprocessor: object
    postprocessor: object
    features: dict
    robot_type: str

    @classmethod
    def from_config(cls, policy_cfg, robot) -> LoadedPolicy:
        """Load any LeRobot policy (`policy_cfg.pretrained_path`) with its saved processors, for `robot`."""
        return cls.from_features(policy_cfg, robot_dataset_features(robot), robot.name)

    @classmethod
    def from_features(cls, policy_cfg, features: dict, robot_type: str) -> LoadedPolicy:
        """Load the policy for a robot described by its dataset `features` (see `robot_dataset_features`)."""
        from lerobot.policies.factory import make_policy, make_pre_post_processors

        policy = make_policy(policy_cfg, ds_meta=RobotFeatureMetadata(features))
        policy.eval()
        preprocessor, postprocessor = make_pre_post_processors(
            policy_cfg=policy_cfg, pretrained_path=policy_cfg.pretrained_path,
            preprocessor_overrides={"device_processor": {"device": policy_cfg.device},
                                    "rename_observations_processor": {"rename_map": {}}})
        return cls(policy, preprocessor, postprocessor, features, robot_type)

    def reset(self) -> None:
        self.policy.reset()
        self.preprocessor.reset()
        self.postprocessor.reset()

    def supports_rtc(self) -> bool:
        return bool(getattr(self.policy, "supports_rtc", lambda: False)())

    def name(self) -> str:
        return type(self.policy).__name__

    def actions_per_chunk(self) -> int | None:
        """The policy's `n_action_steps`: how many actions of each chunk run before the next chunk takes over."""
        return getattr(getattr(self.policy, "config", None), "n_action_steps", None)

    def predict_chunk(self, frame: dict, task: str, inference_delay: int | None = None,
                      prev_chunk_left_over=None):
        """One action chunk for a dataset frame (see `frame`): (actions in robot units, the same normalised),
        numpy arrays of shape (chunk, action_dim). With `prev_chunk_left_over` (normalised, an RTC policy) the chunk
        continues it, `inference_delay` actions being executed before it arrives."""
        import torch
        from lerobot.policies.utils import prepare_observation_for_inference

        # No inference_mode: RTC guidance takes a gradient inside predict_action_chunk.
        with torch.no_grad():
            batch = self.preprocessor(prepare_observation_for_inference(dict(frame), self.device(), task,
                                                                        self.robot_type))
            kwargs = {}
            if prev_chunk_left_over is not None:
                kwargs = {"inference_delay": inference_delay,
                          "prev_chunk_left_over": torch.as_tensor(prev_chunk_left_over, dtype=torch.float32)[None]}
            normalized = self.policy.predict_action_chunk(batch, **kwargs)
            actions = self.postprocessor(normalized)
        return actions[0].detach().float().cpu().numpy(), normalized[0].detach().float().cpu().numpy()

    def device(self):
        from lerobot.utils.utils import get_safe_torch_device

        return get_safe_torch_device(self.policy.config.device)
