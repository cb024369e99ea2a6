"""`lerobot-vla calibrate-uncertainty`: the hand-off threshold of a trained policy, from held-out episodes.

    lerobot-vla calibrate-uncertainty CHECKPOINT HELD_OUT_ROOT [--repo-id ID] [--max-false-alarm-rate 0.05]

A rollout hands the arm to a person when a chunk's uncertainty passes the policy's threshold; an uncalibrated
checkpoint has none, so only the hand-off key works. This scores the held-out episodes' observations as they are and
perturbed copies (policies/flow_vla/uncertainty.py), picks the threshold that raises at most the given share of
false alarms on the held-out data, and writes it into CHECKPOINT/config.json, where `lerobot-vla rollout` and
`lerobot-vla eval` read it. Held out means never trained on: on the virtual arm, record them from other scene
seeds (`lerobot-vla record --virtual so101 --seed 100000 ...`); on a real arm, record a few more episodes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EXIT_OK, EXIT_USAGE = 0, 2
BATCH_SIZE = 16


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="the policy folder (config.json, model.safetensors, processors)")
    parser.add_argument("held_out", type=Path, help="a LeRobotDataset folder of episodes the policy was not trained on")
    parser.add_argument("--repo-id", default=None, help="repo id to open the held-out dataset with (default: "
                        "local/<folder name>)")
    parser.add_argument("--max-false-alarm-rate", type=float, default=0.05,
                        help="largest share of held-out observations allowed above the threshold (default 0.05)")
    parser.add_argument("--max-batches", type=int, default=8,
                        help=f"held-out batches of {BATCH_SIZE} observations, spread over all episodes (default 8; "
                        "each observation is scored as it is and perturbed)")


def run(args: argparse.Namespace) -> int:
    config_file = args.checkpoint / "config.json"
    if not config_file.is_file():
        print(f"error: {config_file} does not exist; pass the folder that holds the policy's config.json "
              "(e.g. outputs/train/.../checkpoints/last/pretrained_model).")
        return EXIT_USAGE
    if not (args.held_out / "meta" / "info.json").is_file():
        print(f"error: {args.held_out} is not a LeRobotDataset (no meta/info.json); record held-out episodes there "
              "first, e.g. lerobot-vla record --virtual so101 --seed 100000 --dataset.num_episodes 2 "
              f"--dataset.root {args.held_out}")
        return EXIT_USAGE
    if not 0.0 <= args.max_false_alarm_rate < 1.0:
        print(f"error: --max-false-alarm-rate must be in [0, 1), got {args.max_false_alarm_rate}.")
        return EXIT_USAGE

    import torch
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors
    from torch.utils.data import Subset

    from lerobot_vla_plugin.policies.flow_vla.uncertainty import calibrate_uncertainty_threshold, held_out_batches
    from lerobot_vla_plugin.recording.atomic_files import write_json_atomic

    from .draccus_options import register_config_types

    register_config_types()
    policy_config = PreTrainedConfig.from_pretrained(args.checkpoint)
    policy_config.pretrained_path = str(args.checkpoint)
    policy_class = get_policy_class(policy_config.type)
    if not hasattr(policy_class, "action_uncertainty"):
        print(f"error: a {policy_config.type} policy has no uncertainty score (action_uncertainty); only flow_vla "
              "hands off on uncertainty. Its rollouts can still hand off on the key h.")
        return EXIT_USAGE
    policy = policy_class.from_pretrained(args.checkpoint, config=policy_config)
    policy.eval()
    preprocessor, _ = make_pre_post_processors(policy_config, pretrained_path=str(args.checkpoint))
    repo_id = args.repo_id or f"local/{args.held_out.name}"
    dataset = LeRobotDataset(repo_id, root=args.held_out)
    # Observations spread evenly over every episode, not the first episode's first seconds.
    count = min(len(dataset), args.max_batches * BATCH_SIZE)
    spread = Subset(dataset, torch.linspace(0, len(dataset) - 1, count).round().long().unique().tolist())
    calibration = calibrate_uncertainty_threshold(
        policy, held_out_batches(spread, preprocessor, batch_size=BATCH_SIZE),
        max_false_alarm_rate=args.max_false_alarm_rate)

    document = json.loads(config_file.read_text())
    document["uncertainty_threshold"] = calibration.threshold
    write_json_atomic(document, config_file)
    print(f"Uncertainty threshold {calibration.threshold:.4f} written to {config_file}")
    print(f"  from {len(calibration.in_distribution_scores)} held-out observations of {dataset.meta.total_episodes} "
          f"episodes ({args.held_out}) and as many perturbed copies")
    print(f"  separation (AUROC) {calibration.auroc:.3f}; held-out observations above it "
          f"{calibration.false_alarm_rate:.1%}; perturbed ones above it {calibration.detection_rate:.1%}")
    return EXIT_OK
