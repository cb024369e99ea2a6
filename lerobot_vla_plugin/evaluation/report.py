"""What an evaluation hands back: a table per task, every episode as JSON, and a strip of camera frames.

Success rates over a few dozen episodes are noisy; the 95 % Wilson interval says how noisy, so two policies are
only called different when their intervals say so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .evaluator import EvaluatedEpisode
from .outcome import FAILURE_MODES, EpisodeResult

Z_95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Score interval of a binomial rate: stays inside [0, 1] and is honest at 0/n and n/n, unlike p ± z·se."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize(results: list[EpisodeResult]) -> dict[str, dict]:
    """Per task, then all tasks together ("all"): rate, interval, failure modes and times."""
    groups = {task: [r for r in results if r.task == task] for task in dict.fromkeys(r.task for r in results)}
    if len(groups) > 1:
        groups["all"] = list(results)
    summary = {}
    for task, group in groups.items():
        successes = sum(r.success for r in group)
        low, high = wilson_interval(successes, len(group))
        times = [r.time_to_success_s for r in group if r.success]
        aims = [r.first_grasp_aim for r in group if r.first_grasp_aim is not None]
        summary[task] = {
            "episodes": len(group),
            "successes": successes,
            "success_rate": successes / len(group) if group else 0.0,
            "wilson95": [low, high],
            "failure_modes": {mode: sum(r.failure_mode == mode for r in group) for mode in FAILURE_MODES},
            "mean_time_to_success_s": float(np.mean(times)) if times else None,
            "grasp_attempts": len(aims),
            "median_grasp_offset_mm": float(np.median([a.offset_mm for a in aims])) if aims else None,
            "median_grasp_heading_error_deg": (float(np.median([abs(a.heading_error_deg) for a in aims]))
                                               if aims else None),
            "mean_wall_s_per_episode": float(np.mean([r.wall_s for r in group])),
            "mean_simulated_s_per_episode": float(np.mean([r.simulated_s for r in group])),
        }
    return summary


def format_table(summary: dict[str, dict]) -> str:
    """One row per task. `grasp aim` is the median GraspAim over the episodes whose gripper closed for a grasp:
    the jaws' horizontal offset from the cube's centre and their turn from its faces (outcome.py)."""
    modes = "  ".join(f"{mode:>13}" for mode in FAILURE_MODES)
    lines = [f"{'task':<6} {'success':>8} {'rate':>6} {'95% Wilson':>14}  {modes}  {'to success':>10}  "
             f"{'grasp aim':>15}  {'wall/episode':>12}"]
    for task, row in summary.items():
        low, high = row["wilson95"]
        to_success = row["mean_time_to_success_s"]
        counts = "  ".join(f"{row['failure_modes'][mode]:>13}" for mode in FAILURE_MODES)
        aim = ("-" if row["median_grasp_offset_mm"] is None
               else f"{row['median_grasp_offset_mm']:.0f} mm {row['median_grasp_heading_error_deg']:.0f} deg")
        lines.append(f"{task:<6} {row['successes']:>4}/{row['episodes']:<3} {100 * row['success_rate']:>5.0f}% "
                     f"[{100 * low:>4.0f}%, {100 * high:>3.0f}%]  {counts}  "
                     f"{'-' if to_success is None else f'{to_success:.1f} s':>10}  {aim:>15}  "
                     f"{row['mean_wall_s_per_episode']:>10.1f} s")
    return "\n".join(lines)


def write_json(path: Path, results: list[EpisodeResult], settings: dict) -> Path:
    from dataclasses import asdict

    document = {"settings": settings, "summary": summarize(results), "episodes": [asdict(r) for r in results]}
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def strip_episodes(episodes: list[EvaluatedEpisode], failures: int = 3) -> list[EvaluatedEpisode]:
    """A few failures, different modes first, and the first success if there is one."""
    failed = [e for e in episodes if not e.result.success]
    chosen: list[EvaluatedEpisode] = []
    for episode in failed:  # one of each mode first
        if len(chosen) < failures and all(c.result.failure_mode != episode.result.failure_mode for c in chosen):
            chosen.append(episode)
    chosen += [e for e in failed if e not in chosen][:failures - len(chosen)]
    chosen += [e for e in episodes if e.result.success][:1]
    return chosen


def write_frame_strip(path: Path, episodes: list[EvaluatedEpisode]) -> Path | None:
    """One row per episode, its frames from start to end, labelled with the task, seed and outcome."""
    rows = [e for e in episodes if e.frames]
    if not rows:
        return None
    height, width = rows[0].frames[0].shape[:2]
    label_h = 14
    columns = max(len(e.frames) for e in rows)
    sheet = Image.new("RGB", (columns * width, len(rows) * (height + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for row, episode in enumerate(rows):
        r = episode.result
        top = row * (height + label_h)
        outcome = f"success in {r.time_to_success_s:.1f} s" if r.success else r.failure_mode
        draw.text((3, top + 1), f"episode {r.episode} ({r.task}, seed {r.scene_seed}): {outcome}", fill="black",
                  font=font)
        for column, frame in enumerate(episode.frames):
            sheet.paste(Image.fromarray(np.ascontiguousarray(frame)), (column * width, top + label_h))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
