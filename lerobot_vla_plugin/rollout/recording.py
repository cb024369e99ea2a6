"""A rollout recorded as a LeRobotDataset, through the crash-safe writer (recording/).

The frames are lerobot-record's (observation, action, task) with the action being what the arm was really told,
after the follower's clamps, plus three per-frame features stock LeRobot loads like any other:

- `intervention` (bool): a person had control on that frame (always false until a hand-off exists);
- `uncertainty` (float32): the executing chunk's uncertainty score when the policy has one (flow_vla's
  `action_uncertainty`), else NOT_MEASURED (-1);
- `inference_latency_ms` (float32): how long the executing chunk took to compute (NOT_MEASURED before the first
  chunk).

Not measured is -1, never NaN: LeRobot's parquet writer stores NaN as null, and one null breaks the collation of
every batch that draws the frame in `lerobot-train`, so a fine-tune on the rollout would crash.

Each episode's metadata row carries the loop's measurements and, when the simulation knows it, `is_success`. On
the virtual arm the frames also carry where the objects are (sim/features.py), as its demonstrations do: a merge
of demonstrations and corrected rollouts keeps them, so the fine-tune on it still teaches the object readout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# An uncertainty or latency that was not measured (no policy ran, or none had answered yet): never a real value.
NOT_MEASURED = -1.0

EXTRA_FEATURES = {
    "intervention": {"dtype": "bool", "shape": (1,), "names": None},
    "uncertainty": {"dtype": "float32", "shape": (1,), "names": None},
    "inference_latency_ms": {"dtype": "float32", "shape": (1,), "names": None},
}


def rollout_dataset_features(robot, use_videos: bool, *, sim_objects: bool = False) -> dict:
    from lerobot_vla_plugin.sim.features import sim_object_dataset_features

    from .loaded_policy import robot_dataset_features

    return {**robot_dataset_features(robot, use_videos), **EXTRA_FEATURES,
            **(sim_object_dataset_features() if sim_objects else {})}


class RolloutRecorder:
    """Feeds a `CrashSafeRecorder` from the control loop's `on_tick`; one `save_episode` per rollout episode.
    `virtual`: the virtual arm (emulator/virtual_arm.VirtualArm) whose object positions each frame records."""

    def __init__(self, recorder, virtual=None):
        from lerobot_vla_plugin.sim.features import TRAINING_ONLY_FEATURES, SimObjectFrames

        self.recorder = recorder
        # The robot's own features come from its observation; the object positions from the simulation.
        self.robot_features = {key: feature for key, feature in recorder.features.items()
                               if key not in TRAINING_ONLY_FEATURES}
        self.task = ""
        self.sim_objects = SimObjectFrames(virtual) if virtual is not None else None

    @classmethod
    def create(cls, repo_id: str, root: str | Path, *, robot, fps: int, use_videos: bool = True,
               vcodec: str = "libsvtav1", encode_in_subprocess: bool = True, virtual=None) -> RolloutRecorder:
        from lerobot_vla_plugin.recording import CrashSafeRecorder

        cameras = len(getattr(robot, "cameras", {}) or {})
        features = rollout_dataset_features(robot, use_videos, sim_objects=virtual is not None)
        recorder = CrashSafeRecorder.create(repo_id, root, fps=fps, robot_type=robot.name, features=features,
                                            use_videos=use_videos, vcodec=vcodec,
                                            encode_in_subprocess=encode_in_subprocess,
                                            image_writer_threads=max(1, 2 * cameras))
        return cls(recorder, virtual)

    @property
    def root(self) -> Path:
        return self.recorder.root

    def start_episode(self, task: str) -> None:
        """Call before the episode's first frame: that frame's object positions are the episode's start."""
        self.task = task
        if self.sim_objects is not None:
            self.sim_objects.new_episode()

    def on_tick(self, tick: int, observation: dict, sent_action: dict, extras: dict) -> None:
        from lerobot.datasets.utils import build_dataset_frame
        from lerobot.utils.constants import ACTION, OBS_STR

        frame = {**build_dataset_frame(self.robot_features, observation, prefix=OBS_STR),
                 **build_dataset_frame(self.robot_features, sent_action, prefix=ACTION), "task": self.task}
        for key, feature in EXTRA_FEATURES.items():
            value = extras[key]
            if feature["dtype"] == "float32" and not np.isfinite(value):
                value = NOT_MEASURED
            frame[key] = np.array([value], dtype=feature["dtype"])
        if self.sim_objects is not None:
            frame.update(self.sim_objects.values(self.recorder.features))
        self.recorder.add_frame(frame)

    @property
    def frames(self) -> int:
        return self.recorder.current_episode_frames

    def save_episode(self, metadata: dict) -> int | None:
        """Hand the episode to the background writer (None when it has no frames)."""
        if self.frames == 0:
            self.recorder.discard_episode()
            return None
        return self.recorder.save_episode(metadata, wait=False)

    def discard_episode(self) -> None:
        self.recorder.discard_episode()

    def close(self) -> int:
        """Wait for every save; returns the number of episodes on disk (raises if a save failed)."""
        self.recorder.close()
        return self.recorder.num_episodes
