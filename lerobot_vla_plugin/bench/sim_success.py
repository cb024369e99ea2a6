"""`lerobot-vla bench sim-success`: task success on the virtual SO-101 of flow_vla next to LeRobot's ACT, in one run.

Every policy is trained here with the same CPU budget (optimizer steps × batch size) on the same demonstrations,
decoded once (training/decoded_dataset.py), and evaluated on the same fresh scenes from the evaluation seed range
(never used for recording) with `lerobot-vla eval`'s evaluator, synchronously. It prints success per task with 95 %
Wilson intervals, flow_vla at several integration step counts, a data-scaling curve (flow_vla trained on the first
N demonstrations), and the ratios to ACT; the JSON goes to the output directory.

    lerobot-vla bench sim-success --dataset-root outputs/demo/so101_virtual_demo --steps 4000 --eval-episodes 50

It runs for hours at full size on a 2-core CPU (each policy trains for the whole budget, each evaluated episode is
up to 20 simulated seconds); `--quick` is a smoke run with tiny sizes.
"""

from __future__ import annotations

import argparse

# flow_vla's settings for this task, from the success study (recipes/so101_virtual_demo_small_cpu.json holds the same).
FLOW_VLA_STUDY_SETTINGS = {
    "image_keypoints": 32,
    "dim_model": 128,
    "n_heads": 4,
    "n_prefix_layers": 2,
    "tokenizer_max_length": 32,
    "image_augmentation": False,
}
# ACT as LeRobot configures it, trained from scratch like ours (no download), on the same chunk length.
ACT_SETTINGS = {"pretrained_backbone_weights": None}
QUICK_POLICY_SIZES = {
    "flow_vla": {"dim_model": 32, "n_heads": 2, "n_prefix_layers": 1, "expert_dim": 32, "expert_heads": 2,
                 "n_expert_layers": 1, "image_encoder_channels": [8, 16, 32], "image_keypoints": 4},
    "act": {"dim_model": 32, "n_heads": 2, "dim_feedforward": 64, "n_encoder_layers": 1, "n_decoder_layers": 1,
            "n_vae_encoder_layers": 1, "vision_backbone": "resnet18"},
}


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset-root", required=True, help="a LeRobotDataset recorded on the virtual SO-101")
    parser.add_argument("--repo-id", default="local/so101_virtual_demo", help="its repo id (default %(default)s)")
    parser.add_argument("--steps", type=int, default=4000, help="optimizer steps per policy (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="samples per step (default %(default)s)")
    parser.add_argument("--chunk-size", type=int, default=50, help="actions per chunk, both policies")
    parser.add_argument("--eval-episodes", type=int, default=50, help="fresh scenes per evaluation")
    parser.add_argument("--eval-seed", type=int, default=0, help="first evaluation scene seed offset")
    parser.add_argument("--episode-time-s", type=float, default=20.0, help="simulated seconds per try")
    parser.add_argument("--n-action-steps", type=int, default=None,
                        help="actions executed per chunk at evaluation (default: each policy's own)")
    parser.add_argument("--flow-steps", type=_int_list, default=[1, 2, 4, 10],
                        help="flow_vla integration step counts to evaluate (default 1,2,4,10)")
    parser.add_argument("--demos", type=_int_list, default=[],
                        help="data-scaling curve: also train flow_vla on the first N demonstrations, e.g. 10,20,40")
    parser.add_argument("--skip-act", action="store_true", help="flow_vla only")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--output-dir", default=None, help="checkpoints and JSON (default outputs/bench/sim_success)")
    parser.add_argument("--quick", action="store_true", help="tiny policies, few steps and scenes: a smoke run")


def run(args: argparse.Namespace) -> int:
    import json
    import os
    from pathlib import Path

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    import lerobot_robot_vla_plugin  # noqa: F401  (registers flow_vla)
    from lerobot_vla_plugin.training.decoded_dataset import DecodedFrameDataset

    out_dir = Path(args.output_dir or "outputs/bench/sim_success")
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset = LeRobotDataset(args.repo_id, root=args.dataset_root)
    total = dataset.meta.total_episodes
    print(f"Decoding {total} demonstrations from {args.dataset_root} once ...", flush=True)
    everything = DecodedFrameDataset(dataset, chunk_size=args.chunk_size)
    rows = []

    def study(name: str, policy_type: str, settings: dict, episodes: list[int] | None, flow_steps: list[int | None]):
        data = everything if episodes is None else DecodedFrameDataset(dataset, args.chunk_size, episodes=episodes)
        print(f"\n== {name}: training {args.steps} steps x batch {args.batch_size} on {data.num_episodes} "
              f"demonstrations ({len(data)} frames)", flush=True)
        trained = _train(policy_type, settings, data, args, out_dir / name)
        for steps in flow_steps:
            label = name if steps is None else f"{name} ({steps} flow steps)"
            summary = _evaluate(trained.checkpoint, args, steps, out_dir / f"eval_{label.replace(' ', '_')}")
            rows.append({"policy": label, "type": policy_type, "demos": data.num_episodes, "steps": args.steps,
                         "batch_size": args.batch_size, "train_wall_s": trained.wall_s,
                         "train_samples_per_s": trained.samples_per_s, "summary": summary})
            print(_row_line(rows[-1]), flush=True)

    flow_settings = {**FLOW_VLA_STUDY_SETTINGS, **(QUICK_POLICY_SIZES["flow_vla"] if args.quick else {})}
    study("flow_vla", "flow_vla", flow_settings, None, list(args.flow_steps) or [None])
    if not args.skip_act:
        study("act", "act", {**ACT_SETTINGS, **(QUICK_POLICY_SIZES["act"] if args.quick else {})}, None, [None])
    for count in sorted(set(args.demos)):
        if 0 < count < total:
            study(f"flow_vla_{count}_demos", "flow_vla", flow_settings, list(range(count)), [None])

    print("\n" + format_rows(rows))
    (out_dir / "sim_success.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\nJSON: {out_dir / 'sim_success.json'}")
    return 0


def _train(policy_type: str, settings: dict, data, args, folder):
    from lerobot.configs.types import FeatureType
    from lerobot.datasets.utils import dataset_to_policy_features
    from lerobot.policies.factory import make_policy_config

    from lerobot_vla_plugin.training.decoded_training import train_policy

    config = make_policy_config(policy_type, device="cpu", push_to_hub=False, chunk_size=args.chunk_size,
                                n_action_steps=args.chunk_size, **settings)
    features = dataset_to_policy_features(data.meta.features)
    config.output_features = {k: f for k, f in features.items() if f.type is FeatureType.ACTION}
    config.input_features = {k: f for k, f in features.items() if k not in config.output_features}
    return train_policy(config, data, steps=args.steps, batch_size=args.batch_size, output_dir=folder,
                        log_every=max(1, args.steps // 10), log=lambda line: print("  " + line, flush=True))


def _evaluate(checkpoint, args, flow_steps: int | None, folder) -> dict:
    from lerobot.configs.policies import PreTrainedConfig

    from lerobot_vla_plugin.workflow.evaluate import EvalEpisodesConfig, EvaluateConfig, evaluate

    overrides = []
    if flow_steps is not None:
        overrides.append(f"--num_inference_steps={flow_steps}")
    if args.n_action_steps is not None:
        overrides.append(f"--n_action_steps={args.n_action_steps}")
    policy = PreTrainedConfig.from_pretrained(checkpoint, cli_overrides=overrides)
    policy.pretrained_path = checkpoint
    cfg = EvaluateConfig(policy=policy, output_dir=str(folder), eval=EvalEpisodesConfig(
        episodes=args.eval_episodes, seed=args.eval_seed, episode_time_s=args.episode_time_s))
    return evaluate(cfg, out=lambda line: None)


def _overall(summary: dict) -> dict:
    """The all-tasks row of an evaluation summary (the only row when a single task was evaluated)."""
    return summary.get("all") or next(iter(summary.values()))


def _row_line(row: dict) -> str:
    summary = row["summary"]
    tasks = "  ".join(f"{task} {s['successes']}/{s['episodes']}" for task, s in summary.items() if task != "all")
    every = _overall(summary)
    low, high = every["wilson95"]
    return (f"{row['policy']:<28} demos {row['demos']:>3}  success {100 * every['success_rate']:5.1f}% "
            f"[{100 * low:.0f}-{100 * high:.0f}%]  {tasks}  train {row['train_wall_s'] / 60:.1f} min "
            f"({row['train_samples_per_s']:.0f} samples/s)")


def format_rows(rows: list[dict]) -> str:
    """The table, with each policy's success rate as a ratio to ACT's (same data and budget) when ACT ran."""
    act = next((r for r in rows if r["type"] == "act"), None)
    act_rate = None if act is None else _overall(act["summary"])["success_rate"]
    lines = [f"{'policy':<28} {'demos':>5} {'success':>8} {'95% Wilson':>12} {'vs ACT':>8} "
             f"{'train min':>9} {'samples/s':>9}"]
    for row in rows:
        every = _overall(row["summary"])
        low, high = every["wilson95"]
        if act_rate is None or row is act:
            ratio = "-"
        elif act_rate == 0:
            ratio = "inf" if every["success_rate"] > 0 else "n/a (0/0)"
        else:
            ratio = f"{every['success_rate'] / act_rate:.2f}x"
        lines.append(f"{row['policy']:<28} {row['demos']:>5} {100 * every['success_rate']:>7.1f}% "
                     f"[{100 * low:>3.0f}-{100 * high:>3.0f}%] {ratio:>8} {row['train_wall_s'] / 60:>9.1f} "
                     f"{row['train_samples_per_s']:>9.0f}")
    return "\n".join(lines)
