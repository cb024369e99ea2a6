"""`lerobot-vla bench multiply`: is a multiplied dataset worth its recorded size? Three flow_vla policies, one run.

    lerobot-vla bench multiply --source SMALL_ROOT --recorded BIG_ROOT --factor 10 --steps 4000 --eval-episodes 50

(a) trained on SOURCE's recorded demonstrations (say 10), (b) on SOURCE multiplied by `lerobot-vla multiply` to
factor × as many (10 recorded + 90 generated, generated here and timed, or an existing `--multiplied` folder), and
(c) on the first as many recorded demonstrations of RECORDED (100). Same CPU budget, same recipe, the same fresh
evaluation scenes; the table gives each success rate as a ratio to (c). The generation rate and acceptance per task
are measured on the way. Both datasets must be recorded on the virtual SO-101 (RECORDED needs at least factor × the
source's episodes).

At full size this takes hours on a 2-core CPU; `--quick` is a smoke run with tiny sizes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .policy_study import add_budget_arguments, flow_vla_settings, format_rows, train_and_evaluate, write_rows


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", type=Path, required=True,
                        help="the few recorded demonstrations (lerobot-vla record --virtual so101)")
    parser.add_argument("--recorded", type=Path, required=True,
                        help="a larger recording of the same tasks on the virtual arm: the all-recorded comparison")
    parser.add_argument("--factor", type=int, default=10, help="multiply the source by this (default 10)")
    parser.add_argument("--multiplied", type=Path, default=None,
                        help="an existing `lerobot-vla multiply` output of --source to reuse (default: generate "
                             "one into the output directory)")
    add_budget_arguments(parser)
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/bench/multiply"),
                        help="multiplied dataset, checkpoints and JSON (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    import json
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    import lerobot_robot_vla_plugin  # noqa: F401  (registers flow_vla)
    from lerobot_vla_plugin.training.decoded_dataset import DecodedFrameDataset
    from lerobot_vla_plugin.workflow.multiply import format_result, multiply_dataset

    settings = flow_vla_settings(args.recipe, args.quick)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    generation = None
    multiplied_root = args.multiplied or args.output_dir / "multiplied"
    if args.multiplied is None and not multiplied_root.exists():
        result = multiply_dataset(args.source, multiplied_root, args.factor)
        if result.tried:
            print(format_result(result), flush=True)
        if result.exit_code != 0:
            print(f"error: {result.message}")
            return result.exit_code
        generation = {"minutes": result.minutes, "per_minute": result.per_minute, "kept": dict(result.kept),
                      "tried": dict(result.tried), "failed_takes": result.failed_takes}
    else:
        print(f"Reusing the multiplied dataset {multiplied_root} (its generation is not timed in this run).")

    source = LeRobotDataset(f"local/{args.source.name}", root=args.source)
    multiplied = LeRobotDataset(f"local/{multiplied_root.name}", root=multiplied_root)
    recorded = LeRobotDataset(f"local/{args.recorded.name}", root=args.recorded)
    recorded_count, total = source.meta.total_episodes, multiplied.meta.total_episodes
    if recorded.meta.total_episodes < total:
        print(f"error: {args.recorded} holds {recorded.meta.total_episodes} episodes; the all-recorded comparison "
              f"needs {total}, as many as {multiplied_root}. Record more, or lower --factor.")
        return 2
    arms = [
        (f"{recorded_count} recorded", DecodedFrameDataset(source, args.chunk_size)),
        (f"{recorded_count} rec + {total - recorded_count} generated", DecodedFrameDataset(multiplied, args.chunk_size)),
        (f"{total} recorded", DecodedFrameDataset(recorded, args.chunk_size, episodes=list(range(total)))),
    ]
    rows = []
    for name, data in arms:
        rows += train_and_evaluate(name, "flow_vla", settings, data, args, args.output_dir)

    print("\n" + format_rows(rows, rows[-1], "recorded"))
    write_rows(rows, args.output_dir / "multiply.json")
    if generation is not None:
        (args.output_dir / "generation.json").write_text(json.dumps(generation, indent=2) + "\n")
    print(f"\nJSON: {args.output_dir / 'multiply.json'}")
    return 0
