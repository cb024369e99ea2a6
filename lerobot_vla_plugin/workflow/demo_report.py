"""`lerobot-vla demo-report OUT`: the main job's report folder, from what its stages left in OUT.

    OUT/report/README.md        success per task and evaluation round, stage wall times, the commands that ran
    OUT/report/loss_curve.png   lerobot-train's logged loss against the step
    OUT/report/frames_<round>.png   camera frames of failures and a success (copied from each evaluation)
    OUT/report/success.json     the success table as data

Inputs (all optional; what is missing is said in the report, never filled in): `train.log` (lerobot-train's
output), `eval_<round>/eval_episodes.json` and `eval_frames.png` (lerobot-vla eval), `stage_times.tsv`
(`stage<TAB>seconds<TAB>note` lines) and `commands.sh` (the commands as they ran).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

_LOSS_LINE = re.compile(r"step:(?P<step>[0-9.]+)(?P<unit>[KMB]?)\b.*?\bloss:(?P<loss>[0-9.eE+-]+)")
_UNITS = {"": 1, "K": 1_000, "M": 1_000_000, "B": 1_000_000_000}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="the main job's output folder (default of examples/demo.sh: outputs/demo)")


def run(args: argparse.Namespace) -> int:
    folder = write_report(Path(args.out))
    print(f"Report: {folder / 'README.md'}")
    return 0


def parse_losses(log_text: str) -> list[tuple[int, float]]:
    """(step, loss) from lerobot-train's log lines (`step:1K ... loss:0.123 ...`)."""
    points = []
    for match in _LOSS_LINE.finditer(log_text):
        step = round(float(match["step"]) * _UNITS[match["unit"]])
        points.append((step, float(match["loss"])))
    return points


def evaluation_rounds(out: Path) -> dict[str, dict]:
    """{round name: eval_episodes.json document} for every OUT/eval_<round> folder, in name order."""
    rounds = {}
    for path in sorted(out.glob("eval_*/eval_episodes.json")):
        rounds[path.parent.name.removeprefix("eval_")] = json.loads(path.read_text())
    return rounds


def success_table(rounds: dict[str, dict]) -> list[str]:
    lines = ["| round | inference | task | success | rate | 95% Wilson |", "|---|---|---|---|---|---|"]
    for name, document in rounds.items():
        inference = document["settings"].get("inference", "?")
        for task, row in document["summary"].items():
            low, high = row["wilson95"]
            lines.append(f"| {name} | {inference} | {task} | {row['successes']}/{row['episodes']} | "
                         f"{100 * row['success_rate']:.0f}% | {100 * low:.0f}–{100 * high:.0f}% |")
    return lines


def write_loss_curve(points: list[tuple[int, float]], path: Path) -> Path:
    """Loss against step on the rollout plots' drawing sheet (PIL only, no plotting library needed)."""
    import numpy as np

    from lerobot_vla_plugin.rollout.plots import INK, TARGET, Sheet, padded_range

    steps = np.array([s for s, _ in points], dtype=float)
    log_loss = np.log10(np.maximum([loss for _, loss in points], 1e-12))
    sheet = Sheet(760, 360, "Training loss (lerobot-train log)")
    axis = sheet.panel((10, 40, 750, 350), "log10(loss)", (float(steps.min()), float(max(steps.max(), 1.0))),
                       padded_range(log_loss), x_label="training step")
    sheet.line(axis, steps, log_loss, TARGET)
    sheet.dots(axis, steps, log_loss, INK)
    return sheet.save(path)


def flywheel_lines(out: Path) -> list[str]:
    """What the rollout with hand-off did (its summary, rollout/report.py) and what the merge holds."""
    summary_file = out / "round1_rollout_report" / "rollout_summary.json"
    if not summary_file.is_file():
        return ["No rollout with hand-off has run yet."]
    summary = json.loads(summary_file.read_text())
    threshold = summary["settings"].get("uncertainty_threshold")
    patience_s = summary["settings"].get("hand_off_after_s")
    when = f"uncertainty threshold {threshold if threshold is None else f'{threshold:.3f}'}"
    if patience_s is not None:
        when += f", or {patience_s:g} s of an episode without finishing"
    lines = [f"Rollout with hand-off: {summary['episodes']} episodes, {summary['interventions']} hand-offs to the "
             f"scripted operator ({when}), "
             f"{summary['successes']}/{summary['success_known_episodes']} episodes ended in success with the "
             "operator's corrections."]
    merged = out / "round1_dataset" / "meta" / "info.json"
    if merged.is_file():
        info = json.loads(merged.read_text())
        lines.append(f"Fine-tuned from the round-0 checkpoint on demonstrations + corrected episodes: "
                     f"{info['total_episodes']} episodes, {info['total_frames']} frames (`round1_dataset`); "
                     "round1 in the success table above.")
    else:
        lines.append("No corrected episode to learn from (the policy never handed off): no round-1 fine-tune.")
    lines.append("Plots of the rollout: `round1_rollout_report/*.png` beside this report folder.")
    return lines


def write_report(out: Path) -> Path:
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    lines = [f"# Main job report: {out}", ""]

    rounds = evaluation_rounds(out)
    lines += ["## Success on fresh scenes (evaluation seeds, never recorded)", ""]
    if rounds:
        lines += success_table(rounds)
        (report / "success.json").write_text(json.dumps(
            {name: {"settings": d["settings"], "summary": d["summary"]} for name, d in rounds.items()}, indent=2) + "\n")
        for name in rounds:
            frames = out / f"eval_{name}" / "eval_frames.png"
            if frames.is_file():
                shutil.copyfile(frames, report / f"frames_{name}.png")
                succeeded = any(row["successes"] for row in rounds[name]["summary"].values())
                shown = "failures and a success" if succeeded else "failures"
                lines += ["", f"Frames ({name}, {shown}): `frames_{name}.png`"]
    else:
        lines.append("No evaluation has run yet: no success rate to report.")

    lines += ["", "## Flywheel round", ""] + flywheel_lines(out)

    lines += ["", "## Training", ""]
    log = out / "train.log"
    points = parse_losses(log.read_text(errors="replace")) if log.is_file() else []
    if points:
        write_loss_curve(points, report / "loss_curve.png")
        lines.append(f"Loss from {points[0][1]:.3f} (step {points[0][0]}) to {points[-1][1]:.3f} (step "
                     f"{points[-1][0]}): `loss_curve.png`")
    else:
        lines.append("No training log with losses (train.log) in this folder: no loss curve.")

    lines += ["", "## Stage wall times", ""]
    times = out / "stage_times.tsv"
    if times.is_file():
        lines += ["| stage | wall time | note |", "|---|---|---|"]
        for row in times.read_text().splitlines():
            stage, seconds, *note = row.split("\t") + [""]
            lines.append(f"| {stage} | {float(seconds) / 60:.1f} min | {note[0]} |")
    else:
        lines.append("No stage times recorded.")

    lines += ["", "## Commands (repeat any stage by hand; on a real arm swap `--virtual so101` for `--robot.*`)", ""]
    commands = out / "commands.sh"
    lines += ["```bash", commands.read_text().rstrip(), "```"] if commands.is_file() else ["No commands recorded."]
    (report / "README.md").write_text("\n".join(lines) + "\n")
    return report
