"""Train any LeRobot policy on a `DecodedFrameDataset`: the steps `lerobot-train` takes, minus per-sample decoding.

Same policy factory, processors (normalisation from the dataset's stats), optimizer and scheduler presets and
gradient clipping as `lerobot-train`; the checkpoint directory has the same files as its `pretrained_model`, so
`lerobot-vla eval --policy.path=…`, `lerobot-vla rollout` and `lerobot-train --policy.path=…` load it. Used by the
benchmarks that compare policies at equal CPU budgets, where decoding would otherwise be most of the time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .decoded_dataset import DecodedFrameDataset


@dataclass
class TrainingResult:
    checkpoint: Path
    steps: int
    wall_s: float
    samples_per_s: float
    losses: list[tuple[int, float]] = field(default_factory=list)


def save_checkpoint(policy, preprocessor, postprocessor, folder: Path) -> Path:
    """The files of lerobot-train's `pretrained_model`: config, weights and both processor pipelines."""
    policy.save_pretrained(folder)
    preprocessor.save_pretrained(folder)
    postprocessor.save_pretrained(folder)
    return folder


def train_policy(policy_cfg, data: DecodedFrameDataset, *, steps: int, batch_size: int, output_dir: Path,
                 seed: int = 0, log_every: int = 100, save_every: int = 0, log=print,
                 time_budget_s: float | None = None) -> TrainingResult:
    """`steps` optimizer steps, or fewer if `time_budget_s` of wall time runs out first (an equal CPU budget for
    policies whose steps cost very different amounts); the final checkpoint goes to output_dir/pretrained_model,
    and with `save_every` intermediate ones to output_dir/step_<n>/pretrained_model (for learning curves)."""
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    torch.manual_seed(seed)
    policy = make_policy(policy_cfg, ds_meta=data.meta)
    preprocessor, postprocessor = make_pre_post_processors(policy_cfg, dataset_stats=data.meta.stats)
    optimizer = policy_cfg.get_optimizer_preset().build(policy.get_optim_params())
    scheduler_cfg = policy_cfg.get_scheduler_preset()
    scheduler = scheduler_cfg.build(optimizer, steps) if scheduler_cfg is not None else None
    grad_clip = policy_cfg.get_optimizer_preset().grad_clip_norm
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(seed))
    policy.train()
    losses, step, running, parts, start = [], 0, [], {}, time.perf_counter()
    while step < steps:
        for batch in loader:
            loss, info = policy.forward(preprocessor(batch))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
            running.append(loss.item())
            for key, value in (info or {}).items():
                if key != "loss" and isinstance(value, float):
                    parts.setdefault(key, []).append(value)
            if step % log_every == 0 or step == steps:
                mean = sum(running) / len(running)
                losses.append((step, mean))
                terms = "".join(f" {key} {sum(values) / len(values):.4f}" for key, values in parts.items())
                running, parts = [], {}
                elapsed = time.perf_counter() - start
                log(f"step {step}/{steps} loss {mean:.4f}{terms} ({step * batch_size / elapsed:.1f} samples/s)")
            if save_every and step % save_every == 0 and step < steps:
                save_checkpoint(policy, preprocessor, postprocessor, Path(output_dir) / f"step_{step}" / "pretrained_model")
            if time_budget_s is not None and step < steps and time.perf_counter() - start >= time_budget_s:
                log(f"step {step}/{steps}: the {time_budget_s / 60:.1f} min training budget is spent")
                steps = step
            if step >= steps:
                break
    wall_s = time.perf_counter() - start
    checkpoint = save_checkpoint(policy, preprocessor, postprocessor, Path(output_dir) / "pretrained_model")
    return TrainingResult(checkpoint, steps, wall_s, steps * batch_size / wall_s, losses)
