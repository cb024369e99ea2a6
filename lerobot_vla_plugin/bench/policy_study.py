"""What the success benchmarks share: train a LeRobot policy on decoded demonstrations at a fixed CPU budget,
evaluate it on fresh virtual-arm scenes, and print one table of success rates with a ratio to a baseline row.

flow_vla's settings come from the virtual arm's CPU recipe (recipes/so101_virtual_demo_small_cpu.json), the file
the main job trains with, so a benchmark measures the policy a user gets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

VIRTUAL_RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "so101_virtual_demo_small_cpu.json"
# Options the benchmark sets itself (the chunk, where it runs) rather than taking from the recipe.
_BENCH_OWNED_KEYS = {"type", "device", "push_to_hub", "chunk_size", "n_action_steps"}
# ACT as LeRobot configures it, trained from scratch like ours (no download), on the same chunk length.
ACT_SETTINGS = {"pretrained_backbone_weights": None}
QUICK_POLICY_SIZES = {
    "flow_vla": {"dim_model": 32, "n_heads": 2, "n_prefix_layers": 1, "expert_dim": 32, "expert_heads": 2,
                 "n_expert_layers": 1, "image_encoder_channels": [8, 16, 32], "image_keypoints": 4},
    "act": {"dim_model": 32, "n_heads": 2, "dim_feedforward": 64, "n_encoder_layers": 1, "n_decoder_layers": 1,
            "n_vae_encoder_layers": 1, "vision_backbone": "resnet18"},
}


def add_budget_arguments(parser, *, steps: int = 4000) -> None:
    """The options every success benchmark has: budget, chunk, evaluation scenes, threads, recipe."""
    parser.add_argument("--steps", type=int, default=steps, help="optimizer steps per policy (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="samples per step (default %(default)s)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="equal wall-time budget instead: each policy trains this long (--steps is then a cap)")
    parser.add_argument("--chunk-size", type=int, default=50, help="actions per chunk, every policy")
    parser.add_argument("--eval-episodes", type=int, default=50, help="fresh scenes per evaluation")
    parser.add_argument("--eval-seed", type=int, default=0, help="first evaluation scene seed offset")
    parser.add_argument("--episode-time-s", type=float, default=20.0, help="simulated seconds per try")
    parser.add_argument("--n-action-steps", type=int, default=None,
                        help="actions executed per chunk at evaluation (default: each policy's own)")
    parser.add_argument("--recipe", default=str(VIRTUAL_RECIPE),
                        help="flow_vla's settings: the 'policy' block of this recipe (default: the virtual arm's)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="tiny policies, few steps and scenes: a smoke run")


def flow_vla_settings(recipe: str | Path, quick: bool) -> dict:
    """The recipe's flow_vla options (minus what the benchmark owns), shrunk to smoke size with `quick`."""
    path = Path(recipe)
    if not path.is_file():
        raise SystemExit(f"Recipe {path} not found: pass --recipe recipes/so101_virtual_demo_small_cpu.json from a "
                         "clone of the repository.")
    policy = json.loads(path.read_text())["policy"]
    if policy.get("type") != "flow_vla":
        raise SystemExit(f"Recipe {path} trains '{policy.get('type')}', not flow_vla: pass a flow_vla recipe.")
    settings = {key: tuple(value) if isinstance(value, list) else value
                for key, value in policy.items() if key not in _BENCH_OWNED_KEYS}
    return {**settings, **(QUICK_POLICY_SIZES["flow_vla"] if quick else {})}


def act_settings(quick: bool) -> dict:
    return {**ACT_SETTINGS, **(QUICK_POLICY_SIZES["act"] if quick else {})}


@dataclass
class StudyRow:
    """One trained policy (or one evaluation setting of it) and its success."""

    policy: str
    type: str
    demos: int
    steps: int
    batch_size: int
    train_wall_s: float
    train_samples_per_s: float
    summary: dict


def train_on(policy_type: str, settings: dict, data, args, folder: Path):
    """`args.steps` × `args.batch_size` of training, or `args.minutes` of it; returns a TrainingResult."""
    from lerobot.configs.types import FeatureType
    from lerobot.datasets.utils import dataset_to_policy_features
    from lerobot.policies.factory import make_policy_config

    from lerobot_vla_plugin.training.decoded_training import train_policy

    config = make_policy_config(policy_type, device="cpu", push_to_hub=False, chunk_size=args.chunk_size,
                                n_action_steps=args.chunk_size, **settings)
    features = dataset_to_policy_features(data.meta.features)
    config.output_features = {k: f for k, f in features.items() if f.type is FeatureType.ACTION}
    config.input_features = {k: f for k, f in features.items() if k not in config.output_features}
    budget_s = None if args.minutes is None else 60.0 * args.minutes
    return train_policy(config, data, steps=args.steps, batch_size=args.batch_size, output_dir=folder,
                        log_every=max(1, min(args.steps // 10, 200)), time_budget_s=budget_s,
                        log=lambda line: print("  " + line, flush=True))


def evaluate_checkpoint(checkpoint, args, folder: Path, flow_steps: int | None = None) -> dict:
    """`lerobot-vla eval`'s evaluator on the benchmark's scenes, synchronously; returns its summary."""
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


def train_and_evaluate(name: str, policy_type: str, settings: dict, data, args, out_dir: Path,
                       flow_steps: list[int | None] = (None,)) -> list[StudyRow]:
    """Train one policy on `data`, evaluate it once per flow-step count; one printed line per evaluation."""
    limit = "" if args.minutes is None else f" (or {args.minutes:g} min, whichever ends first)"
    print(f"\n== {name}: training {args.steps} steps x batch {args.batch_size}{limit} on {data.num_episodes} "
          f"demonstrations ({len(data)} frames)", flush=True)
    trained = train_on(policy_type, settings, data, args, out_dir / name)
    rows = []
    for steps in flow_steps:
        label = name if steps is None else f"{name} ({steps} flow steps)"
        summary = evaluate_checkpoint(trained.checkpoint, args, out_dir / f"eval_{label.replace(' ', '_')}", steps)
        rows.append(StudyRow(label, policy_type, data.num_episodes, trained.steps, args.batch_size, trained.wall_s,
                             trained.samples_per_s, summary))
        print(row_line(rows[-1]), flush=True)
    return rows


def overall(summary: dict) -> dict:
    """The all-tasks row of an evaluation summary (the only row when a single task was evaluated)."""
    return summary.get("all") or next(iter(summary.values()))


def row_line(row: StudyRow) -> str:
    tasks = "  ".join(f"{task} {s['successes']}/{s['episodes']}" for task, s in row.summary.items() if task != "all")
    every = overall(row.summary)
    low, high = every["wilson95"]
    return (f"{row.policy:<28} demos {row.demos:>3}  success {100 * every['success_rate']:5.1f}% "
            f"[{100 * low:.0f}-{100 * high:.0f}%]  {tasks}  train {row.steps} steps, {row.train_wall_s / 60:.1f} min "
            f"({row.train_samples_per_s:.0f} samples/s)")


def format_rows(rows: list[StudyRow], baseline: StudyRow | None, baseline_name: str) -> str:
    """The table, each row's success as a ratio to `baseline`'s (same scenes and budget) when there is one."""
    base_rate = None if baseline is None else overall(baseline.summary)["success_rate"]
    lines = [f"{'policy':<28} {'demos':>5} {'success':>8} {'95% Wilson':>12} {'vs ' + baseline_name:>12} "
             f"{'steps':>6} {'train min':>9} {'samples/s':>9}"]
    for row in rows:
        every = overall(row.summary)
        low, high = every["wilson95"]
        if base_rate is None or row is baseline:
            ratio = "-"
        elif base_rate == 0:
            ratio = "inf" if every["success_rate"] > 0 else "n/a (0/0)"
        else:
            ratio = f"{every['success_rate'] / base_rate:.2f}x"
        lines.append(f"{row.policy:<28} {row.demos:>5} {100 * every['success_rate']:>7.1f}% "
                     f"[{100 * low:>3.0f}-{100 * high:>3.0f}%] {ratio:>12} {row.steps:>6} {row.train_wall_s / 60:>9.1f} "
                     f"{row.train_samples_per_s:>9.0f}")
    return "\n".join(lines)


def write_rows(rows: list[StudyRow], path: Path) -> None:
    from dataclasses import asdict

    path.write_text(json.dumps([asdict(row) for row in rows], indent=2) + "\n")
