"""`lerobot-vla flywheel-merge`: demonstrations plus a rollout's corrections, one dataset for the next fine-tune.

    lerobot-vla flywheel-merge --demos DEMOS_ROOT --rollouts ROLLOUT_ROOT [ROLLOUT_ROOT ...] --output ROOT

Keeps every demonstration episode and the rollout episodes with at least one intervention frame (a person, or on
the virtual arm its scripted operator, took over), merged with LeRobot's own dataset tools (rollout/flywheel.py).
Stock `lerobot-train --dataset.root ROOT --policy.path=CHECKPOINT` then fine-tunes on it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# A crash exits 1; "no rollout episode has an intervention" is an outcome a script acts on, so it has its own code.
EXIT_OK, EXIT_USAGE, EXIT_NOTHING_TO_LEARN = 0, 2, 3


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--demos", type=Path, nargs="+", required=True, help="demonstration dataset folder(s)")
    parser.add_argument("--rollouts", type=Path, nargs="+", required=True,
                        help="dataset folder(s) recorded by lerobot-vla rollout --dataset.root")
    parser.add_argument("--output", type=Path, required=True, help="folder of the merged dataset (replaced)")
    parser.add_argument("--repo-id", default=None, help="repo id of the merged dataset (default: local/<folder>)")
    parser.add_argument("--all-rollout-episodes", action="store_true",
                        help="keep the rollout episodes without an intervention too")


def run(args: argparse.Namespace) -> int:
    inputs = [*args.demos, *args.rollouts]
    missing = [root for root in inputs if not (root / "meta" / "info.json").is_file()]
    if missing:
        print(f"error: not a LeRobotDataset (no meta/info.json): {', '.join(map(str, missing))}")
        return EXIT_USAGE
    if args.output.resolve() in {root.resolve() for root in inputs}:
        print(f"error: --output {args.output} is one of the inputs; choose a new folder.")
        return EXIT_USAGE

    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from lerobot_vla_plugin.rollout.flywheel import intervention_flags, merge_demos_and_interventions

    def load(root: Path):
        return LeRobotDataset(f"local/{root.name}", root=root)

    try:
        merged = merge_demos_and_interventions(
            [load(root) for root in args.demos], [load(root) for root in args.rollouts],
            args.repo_id or f"local/{args.output.name}", args.output,
            interventions_only=not args.all_rollout_episodes)
    except ValueError as error:  # no intervention anywhere: nothing new to learn, nothing written
        print(f"Nothing merged: {error}.")
        return EXIT_NOTHING_TO_LEARN
    corrected = int(intervention_flags(merged).sum())
    print(f"Merged {merged.meta.total_episodes} episodes ({merged.meta.total_frames} frames, {corrected} of them "
          f"intervention frames) into {args.output}")
    return EXIT_OK
