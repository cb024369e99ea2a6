"""`lerobot-vla dataset-report ROOT`: a quality gate for a recorded LeRobot dataset, before training on it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

STATE_KEY = "observation.state"
ACTION_KEY = "action"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", type=Path, help="dataset folder (the one holding meta/info.json)")
    parser.add_argument("--repo-id", default=None, help="repo id to open it with (default: local/<folder name>)")
    parser.add_argument("--chunk-size", type=int, default=50,
                        help="the policy's action chunk: shorter episodes are flagged (default 50)")
    parser.add_argument("--min-tasks", type=int, default=2,
                        help="fewest distinct language tasks accepted (default 2; 1 for single-task policies)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when a blocking check fails (warnings, such as a check that had "
                             "nothing to measure, do not fail it)")
    parser.add_argument("--plot", type=Path, default=None, metavar="OUT.png", help="write a summary plot")


def load_episode_data(root: Path, repo_id: str | None = None):
    """Episodes (timestamps, state, action, task, achieved rate) through the stock LeRobot reader."""
    import numpy as np
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from lerobot_vla_plugin.recording.quality import EpisodeData

    root = Path(root)
    if not (root / "meta" / "info.json").is_file():
        raise FileNotFoundError(f"No LeRobot dataset at {root} (meta/info.json not found). Pass the dataset "
                                "folder, i.e. the --dataset.root it was recorded to.")
    dataset = LeRobotDataset(repo_id or f"local/{root.name}", root=root)
    features = dataset.meta.features
    if STATE_KEY not in features:
        raise ValueError(f"{root} has no {STATE_KEY!r} feature; the report analyses joint trajectories.")
    names = features[STATE_KEY]["names"]
    names = list(names) if names is not None else [f"joint_{i}" for i in range(features[STATE_KEY]["shape"][0])]
    columns = ["timestamp", "episode_index", STATE_KEY] + ([ACTION_KEY] if ACTION_KEY in features else [])
    table = dataset.hf_dataset.select_columns(columns).with_format("numpy")[:]
    episode_of_row = np.asarray(table["episode_index"]).reshape(-1)
    meta = dataset.meta.episodes
    extra_columns = set(meta.column_names)
    episodes = []
    for index in range(dataset.meta.total_episodes):
        row = meta[index]
        rows = episode_of_row == index
        episodes.append(EpisodeData(
            index=index,
            task=" | ".join(row["tasks"]),
            timestamps=np.asarray(table["timestamp"])[rows].reshape(-1).astype(np.float64),
            states=np.stack(table[STATE_KEY][rows]).astype(np.float64),
            actions=np.stack(table[ACTION_KEY][rows]).astype(np.float64) if ACTION_KEY in table else None,
            achieved_hz=row["achieved_hz"] if "achieved_hz" in extra_columns else None,
            demonstration=row["demonstration"] if "demonstration" in extra_columns else None,
        ))
    return episodes, dataset.meta.fps, names


def damage_found(root: Path) -> str:
    """A damaged file would end the stock reader in a long traceback: name it and the repair instead."""
    from lerobot_vla_plugin.recording.repair import DatasetCorruptError
    from lerobot_vla_plugin.recording.salvage import plan_salvage

    if not (Path(root) / "meta" / "episodes").is_dir():
        return ""  # not a dataset at all: the reader below says so
    try:
        return plan_salvage(root).damage()
    except DatasetCorruptError as exc:
        return str(exc)


def run(args: argparse.Namespace) -> int:
    from lerobot_vla_plugin.recording.quality import analyze, format_report

    damage = damage_found(args.root)
    if damage:
        print(f"error: {damage}", file=sys.stderr)
        return 2
    try:
        episodes, fps, names = load_episode_data(args.root, args.repo_id)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not episodes:
        print(f"error: {args.root} has no finished episode to analyse.", file=sys.stderr)
        return 2
    report = analyze(episodes, fps=fps, joint_names=names, chunk_size=args.chunk_size, min_tasks=args.min_tasks)
    print(f"Dataset {args.root}")
    print(format_report(report))
    if args.plot is not None:
        from lerobot_vla_plugin.recording.quality_plot import plot_report

        print(f"Summary plot: {plot_report(report, args.plot)}")
    if args.strict and report.failures:
        print(f"--strict: {args.root} fails the blocking check(s): {', '.join(c.name for c in report.failures)}",
              file=sys.stderr)
        return 1
    return 0
