"""`lerobot-vla bench sim-success`: task success on the virtual SO-101 of flow_vla next to LeRobot's ACT, in one run.

Every policy is trained here with the same CPU budget (optimizer steps × batch size) on the same demonstrations,
decoded once (training/decoded_dataset.py), and evaluated on the same fresh scenes from the evaluation seed range
(never used for recording) with `lerobot-vla eval`'s evaluator, synchronously. It prints success per task with 95 %
Wilson intervals, flow_vla at several integration step counts, a data-scaling curve (flow_vla trained on the first
N demonstrations), path diversity (flow_vla on a dataset recorded with varied operator paths, at the same count)
and the ratios to ACT; the JSON goes to the output directory. flow_vla trains with the virtual
arm's CPU recipe (bench/policy_study.py).

    lerobot-vla bench sim-success --dataset-root outputs/demo/so101_virtual_demo --steps 4000 --eval-episodes 50

It runs for hours at full size on a 2-core CPU (each policy trains for the whole budget, each evaluated episode is
up to 20 simulated seconds); `--quick` is a smoke run with tiny sizes.
"""

from __future__ import annotations

import argparse

from .policy_study import (
    act_settings,
    add_budget_arguments,
    flow_vla_settings,
    format_rows,
    train_and_evaluate,
    write_rows,
)


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset-root", required=True, help="a LeRobotDataset recorded on the virtual SO-101")
    parser.add_argument("--repo-id", default="local/so101_virtual_demo", help="its repo id (default %(default)s)")
    add_budget_arguments(parser)
    parser.add_argument("--flow-steps", type=_int_list, default=[1, 2, 4, 10],
                        help="flow_vla integration step counts to evaluate (default 1,2,4,10)")
    parser.add_argument("--demos", type=_int_list, default=[],
                        help="data-scaling curve: also train flow_vla on the first N demonstrations, e.g. 10,20,40")
    parser.add_argument("--varied-dataset-root", default=None,
                        help="path diversity: also train flow_vla on this dataset, recorded on the same arm with varied "
                             "operator paths (lerobot-vla record --virtual_reach_detour_m 0.06), at the same count")
    parser.add_argument("--skip-act", action="store_true", help="flow_vla only")
    parser.add_argument("--output-dir", default=None, help="checkpoints and JSON (default outputs/bench/sim_success)")


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    import lerobot_robot_vla_plugin  # noqa: F401  (registers flow_vla)
    from lerobot_vla_plugin.training.decoded_dataset import DecodedFrameDataset

    flow_settings = flow_vla_settings(args.recipe, args.quick)
    out_dir = Path(args.output_dir or "outputs/bench/sim_success")
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset = LeRobotDataset(args.repo_id, root=args.dataset_root)
    total = dataset.meta.total_episodes
    print(f"Decoding {total} demonstrations from {args.dataset_root} once ...", flush=True)
    everything = DecodedFrameDataset(dataset, chunk_size=args.chunk_size)

    rows = train_and_evaluate("flow_vla", "flow_vla", flow_settings, everything, args, out_dir,
                              list(args.flow_steps) or [None])
    if not args.skip_act:
        rows += train_and_evaluate("act", "act", act_settings(args.quick), everything, args, out_dir)
    for count in sorted(set(args.demos)):
        if 0 < count < total:
            subset = DecodedFrameDataset(dataset, args.chunk_size, episodes=list(range(count)))
            rows += train_and_evaluate(f"flow_vla_{count}_demos", "flow_vla", flow_settings, subset, args, out_dir)

    if args.varied_dataset_root:
        varied = LeRobotDataset(args.repo_id, root=args.varied_dataset_root)
        count = min(total, varied.meta.total_episodes)
        print(f"Decoding {count} demonstrations with varied paths from {args.varied_dataset_root} once ...", flush=True)
        rows += train_and_evaluate(f"flow_vla_varied_paths_{count}_demos", "flow_vla", flow_settings,
                                   DecodedFrameDataset(varied, args.chunk_size, episodes=list(range(count))),
                                   args, out_dir)
    act = next((row for row in rows if row.type == "act"), None)
    print("\n" + format_rows(rows, act, "ACT"))
    write_rows(rows, out_dir / "sim_success.json")
    print(f"\nJSON: {out_dir / 'sim_success.json'}")
    return 0
