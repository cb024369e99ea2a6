"""The data flywheel: demonstrations and a rollout's intervention episodes merged into one dataset for the next
fine-tune, with LeRobot's own tools (`lerobot.datasets.dataset_tools` and `aggregate`).

LeRobot aggregates only datasets with identical features. A rollout recording has three more per-frame features
than a demonstration (`intervention`, `uncertainty`, `inference_latency_ms`, rollout/recording.py); the demos get
them too, with what they mean there: no intervention (a person drove every frame of a demonstration, but no policy
was handed off from), uncertainty and latency not measured (NOT_MEASURED, -1). The merge then keeps every frame's
flag, so a fine-tune may weight the intervention frames; stock `lerobot-train` trains on it unchanged. A feature
only some parts have is left out (the virtual arm's object positions, sim/features.py, which its demonstrations
and its rollouts both record, when one part was recorded before a later one of them existed).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from .recording import EXTRA_FEATURES, NOT_MEASURED


def _with_rollout_features(dataset, workdir: Path):
    """`dataset` with the rollout's extra features it lacks, filled as a demonstration's frames read."""
    from lerobot.datasets.dataset_tools import add_features

    missing = {key: feature for key, feature in EXTRA_FEATURES.items() if key not in dataset.meta.features}
    if not missing:
        return dataset
    frames = dataset.meta.total_frames
    # The demonstrations' uncertainty and latency: no policy ran there (NOT_MEASURED, see recording.py).
    values = {"intervention": np.zeros((frames, 1), dtype=bool),
              "uncertainty": np.full((frames, 1), NOT_MEASURED, dtype=np.float32),
              "inference_latency_ms": np.full((frames, 1), NOT_MEASURED, dtype=np.float32)}
    # The shape stays the tuple (1,): LeRobot stores exactly that shape as a scalar column, as the rollout wrote it.
    features = {key: (values[key], {**feature, "shape": tuple(feature["shape"])}) for key, feature in missing.items()}
    return add_features(dataset, features, output_dir=workdir / dataset.repo_id, repo_id=dataset.repo_id)


def _without_features(dataset, keys: set[str], workdir: Path):
    """`dataset` without `keys` (features the other parts lack, such as the virtual arm's object positions)."""
    from lerobot.datasets.dataset_tools import remove_feature

    if not keys:
        return dataset
    return remove_feature(dataset, sorted(keys), output_dir=workdir / f"{dataset.repo_id}_common",
                          repo_id=dataset.repo_id)


def intervention_flags(dataset) -> np.ndarray:
    """(frames,) bool: whether a person had control on each frame of a rollout recording."""
    return np.concatenate([np.ravel(value) for value in dataset.hf_dataset["intervention"]]).astype(bool)


def _intervention_episodes(dataset, workdir: Path):
    """`dataset` reduced to its episodes with at least one intervention frame (None: it has none)."""
    from lerobot.datasets.dataset_tools import delete_episodes

    flags = intervention_flags(dataset)
    episodes = np.asarray(dataset.hf_dataset["episode_index"]).reshape(-1)
    with_intervention = set(np.unique(episodes[flags]).tolist())
    without = [index for index in range(dataset.meta.total_episodes) if index not in with_intervention]
    if not with_intervention:
        return None
    if not without:
        return dataset
    return delete_episodes(dataset, without, output_dir=workdir / f"{dataset.repo_id}_interventions",
                           repo_id=dataset.repo_id)


def merge_demos_and_interventions(demos: list, rollouts: list, repo_id: str, root: str | Path, *,
                                  interventions_only: bool = True):
    """One LeRobotDataset at `root` with every episode of the `demos` datasets and the rollout datasets' episodes
    (only those with an intervention when `interventions_only`). Returns it, loaded."""
    from lerobot.datasets.aggregate import aggregate_datasets
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = Path(root)
    with tempfile.TemporaryDirectory(prefix="lerobot-vla-flywheel-") as tmp:
        workdir = Path(tmp)
        parts = []
        for dataset in rollouts:
            kept = _intervention_episodes(dataset, workdir) if interventions_only else dataset
            if kept is not None:
                parts.append(kept)
        if not parts:
            raise ValueError("none of the rollout datasets has an intervention episode to learn from")
        parts = [_with_rollout_features(dataset, workdir) for dataset in demos] + parts
        common = set.intersection(*(set(dataset.meta.features) for dataset in parts))
        parts = [_without_features(dataset, set(dataset.meta.features) - common, workdir) for dataset in parts]
        if root.exists():
            shutil.rmtree(root)
        aggregate_datasets(repo_ids=[dataset.repo_id for dataset in parts], aggr_repo_id=repo_id,
                           roots=[Path(dataset.root) for dataset in parts], aggr_root=root)
    return LeRobotDataset(repo_id, root=root)
