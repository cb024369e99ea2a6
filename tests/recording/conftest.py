"""Shared helpers for the recording tests: the features and frames of a tiny SO-101 recording."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from .kill_harness import FEATURES, FPS, TASKS, frame_for  # noqa: F401

REPO_ID = "local/recording_test"


def record_takes(recorder, run: int, takes: range, frames: int = 3, **save_kwargs) -> list[int]:
    """Record one episode per take with `frame_for` content; returns the episode indices."""
    indices = []
    for take in takes:
        for frame_index in range(frames):
            recorder.add_frame(frame_for(run, take, frame_index))
        indices.append(recorder.save_episode(**save_kwargs))
    return indices


def committed_episodes(root: Path) -> int:
    return json.loads((Path(root) / "meta" / "info.json").read_text())["total_episodes"]


def episode_states(dataset, episode_index: int) -> np.ndarray:
    """The state rows of one episode through the stock reader (no video decoding)."""
    episode = dataset.meta.episodes[episode_index]
    rows = dataset.hf_dataset[episode["dataset_from_index"]:episode["dataset_to_index"]]
    return np.stack([np.asarray(s) for s in rows["observation.state"]])
