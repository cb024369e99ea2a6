"""PNGs of a rollout, drawn with Pillow (LeRobot 0.4.4's install has no matplotlib).

Episodes are laid end to end on one time axis (arm time: simulated seconds on the lockstep virtual arm, wall
seconds otherwise), separated by dark dashed lines.

- `rollout_joints.png`: per joint, the target sent (after the follower's clamps) and the measured position, with
  a light tick at every chunk boundary and red ticks where the queue ran dry;
- `rollout_latency.png`: each chunk's inference latency when it joined, against the control period;
- `rollout_uncertainty.png`: the executing chunk's uncertainty score per tick and the policy's threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .loop import EpisodeRun

INK, GRID, TARGET, MEASURED, BOUNDARY, STALL, EPISODE, REFERENCE = (
    (30, 30, 30), (225, 225, 225), (40, 90, 200), (230, 120, 20), (190, 190, 235), (210, 40, 40), (90, 90, 90),
    (40, 150, 70))


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


@dataclass
class _Axis:
    box: tuple[int, int, int, int]  # plot area
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def x(self, value):
        x0, _, x1, _ = self.box
        low, high = self.x_range
        return x0 + (np.asarray(value, dtype=float) - low) / max(high - low, 1e-9) * (x1 - x0)

    def y(self, value):
        _, y0, _, y1 = self.box
        low, high = self.y_range
        return y1 - (np.asarray(value, dtype=float) - low) / max(high - low, 1e-9) * (y1 - y0)


def padded_range(*arrays, include: tuple[float, ...] = ()) -> tuple[float, float]:
    values = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays] + [np.asarray(include, float)])
    values = values[np.isfinite(values)]
    if not len(values):
        return 0.0, 1.0
    low, high = float(values.min()), float(values.max())
    pad = max((high - low) * 0.08, 1e-3 if high == low == 0 else abs(high) * 0.05 + 1e-6)
    return low - pad, high + pad


class Sheet:
    """A white PNG with a title and plot panels, drawn with PIL alone (no plotting library in the install)."""

    def __init__(self, width: int, height: int, title: str):
        self.image = Image.new("RGB", (width, height), "white")
        self.draw = ImageDraw.Draw(self.image)
        self.draw.text((12, 8), title, fill=INK, font=_font(18))

    def panel(self, box, title: str, x_range, y_range, x_label: str = "") -> _Axis:
        draw = self.draw
        x0, y0, x1, y1 = box
        axis = _Axis((x0 + 60, y0 + 22, x1 - 10, y1 - 22), x_range, y_range)
        ax0, ay0, ax1, ay1 = axis.box
        draw.text((x0 + 60, y0 + 4), title, fill=INK, font=_font(13))
        for fraction in np.linspace(0, 1, 5):
            value = y_range[0] + fraction * (y_range[1] - y_range[0])
            y = float(axis.y(value))
            draw.line([(ax0, y), (ax1, y)], fill=GRID)
            draw.text((x0 + 2, y - 6), f"{value:.4g}", fill=INK, font=_font(10))
        for fraction in np.linspace(0, 1, 6):
            value = x_range[0] + fraction * (x_range[1] - x_range[0])
            x = float(axis.x(value))
            draw.text((x - 10, ay1 + 4), f"{value:.3g}", fill=INK, font=_font(10))
        if x_label:
            draw.text((ax1 - 80, ay1 + 4), x_label, fill=INK, font=_font(10))
        draw.rectangle([ax0, ay0, ax1, ay1], outline=INK)
        return axis

    def vlines(self, axis: _Axis, xs, color, dashed: bool = False, height: float = 1.0) -> None:
        _, ay0, _, ay1 = axis.box
        top = ay1 - height * (ay1 - ay0)
        for x in np.asarray(xs, dtype=float):
            px = float(axis.x(x))
            if dashed:
                for y in np.arange(top, ay1, 8):
                    self.draw.line([(px, y), (px, min(y + 4, ay1))], fill=color)
            else:
                self.draw.line([(px, top), (px, ay1)], fill=color)

    def hline(self, axis: _Axis, y: float, color, label: str) -> None:
        ax0, _, ax1, _ = axis.box
        py = float(axis.y(y))
        self.draw.line([(ax0, py), (ax1, py)], fill=color, width=2)
        self.draw.text((ax0 + 4, py - 13), label, fill=color, font=_font(11))

    def line(self, axis: _Axis, xs, ys, color, width: int = 2) -> None:
        xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
        finite = np.isfinite(ys)
        # Draw each run of finite values separately: a NaN is a gap, not a jump to zero.
        start = None
        for i in range(len(ys) + 1):
            if i < len(ys) and finite[i]:
                start = i if start is None else start
                continue
            if start is not None:
                points = list(zip(axis.x(xs[start:i]).tolist(), axis.y(ys[start:i]).tolist(), strict=True))
                if len(points) == 1:
                    px, py = points[0]
                    self.draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=color)
                else:
                    self.draw.line(points, fill=color, width=width)
                start = None

    def dots(self, axis: _Axis, xs, ys, color) -> None:
        for px, py in zip(axis.x(xs).tolist(), axis.y(ys).tolist(), strict=True):
            self.draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=color)

    def legend(self, x: int, y: int, entries: list[tuple[str, tuple]]) -> None:
        for label, color in entries:
            self.draw.line([(x, y + 6), (x + 18, y + 6)], fill=color, width=3)
            self.draw.text((x + 22, y), label, fill=INK, font=_font(11))
            x += 30 + 7 * len(label)

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.image.save(path)
        return path


def _timeline(runs: list[EpisodeRun], period_s: float):
    """Per run: tick times on the shared axis (episode k starts where k-1 ended); and the episode starts."""
    offsets, times, start = [], [], 0.0
    for run in runs:
        offsets.append(start)
        times.append(start + np.arange(run.ticks) * period_s)
        start += max(run.ticks, 1) * period_s
    return times, offsets, start


def plot_joints(path: Path, runs: list[EpisodeRun], period_s: float) -> Path:
    names = runs[0].trace.joint_names if runs else []
    rows = max(1, len(names))
    sheet = Sheet(1400, 70 + 170 * rows, "Joint targets sent (blue) vs measured positions (orange); light ticks: "
                   "chunk boundaries, red: queue ran dry, dashed: episodes")
    times, offsets, end = _timeline(runs, period_s)
    for j, name in enumerate(names):
        targets = [np.stack(r.trace.targets)[:, j] if r.trace.targets else np.zeros(0) for r in runs]
        measured = [np.stack(r.trace.measured)[:, j] if r.trace.measured else np.zeros(0) for r in runs]
        axis = sheet.panel((10, 40 + 170 * j, 1390, 40 + 170 * (j + 1)), name, (0.0, end),
                           padded_range(*targets, *measured), "time (s)")
        for run, t, offset in zip(runs, times, offsets, strict=True):
            sheet.vlines(axis, offset + np.asarray(run.trace.chunk_starts) * period_s, BOUNDARY)
            sheet.vlines(axis, offset + np.asarray(run.trace.stall_ticks) * period_s, STALL, height=0.15)
        sheet.vlines(axis, offsets[1:], EPISODE, dashed=True)
        for t, target, measure in zip(times, targets, measured, strict=True):
            sheet.line(axis, t, measure, MEASURED)
            sheet.line(axis, t, target, TARGET, width=1)
    sheet.legend(1000, 12, [("target", TARGET), ("measured", MEASURED), ("chunk", BOUNDARY), ("stall", STALL)])
    return sheet.save(path)


def plot_latency(path: Path, runs: list[EpisodeRun], period_s: float) -> Path:
    sheet = Sheet(1400, 460, "Inference latency of each chunk when it joined the queue (green: one control period)")
    _, offsets, end = _timeline(runs, period_s)
    xs = np.asarray([offset + tick * period_s for run, offset in zip(runs, offsets, strict=True)
                     for tick, _ in run.trace.chunk_latencies], dtype=float)
    ys = np.asarray([ms for run in runs for ms in run.latencies_ms()], dtype=float)
    axis = sheet.panel((10, 40, 1390, 450), "latency (ms)", (0.0, end),
                       padded_range(ys, include=(0.0, 1000 * period_s)), "time (s)")
    sheet.vlines(axis, offsets[1:], EPISODE, dashed=True)
    sheet.hline(axis, 1000 * period_s, REFERENCE, f"control period {1000 * period_s:.1f} ms")
    if len(ys):
        sheet.line(axis, xs, ys, TARGET, width=1)
        sheet.dots(axis, xs, ys, TARGET)
    else:
        sheet.draw.text((axis.box[0] + 10, axis.box[1] + 30), "(no chunk latencies: this runner does not report "
                        "them)", fill=INK, font=_font(14))
    return sheet.save(path)


def plot_uncertainty(path: Path, runs: list[EpisodeRun], period_s: float, threshold: float | None,
                     note: str = "") -> Path:
    sheet = Sheet(1400, 460, "Uncertainty score of the executing chunk (red: the policy's hand-off threshold)")
    times, offsets, end = _timeline(runs, period_s)
    scores = [np.asarray(run.trace.uncertainty, dtype=float) for run in runs]
    include = () if threshold is None else (threshold,)
    axis = sheet.panel((10, 40, 1390, 450), "uncertainty", (0.0, end), padded_range(*scores, include=include),
                       "time (s)")
    sheet.vlines(axis, offsets[1:], EPISODE, dashed=True)
    for t, score in zip(times, scores, strict=True):
        sheet.line(axis, t, score, TARGET)
    if threshold is not None:
        sheet.hline(axis, threshold, STALL, f"threshold {threshold:.4g}")
    has_scores = any(np.isfinite(s).any() for s in scores)
    message = note or ("" if has_scores else "(no uncertainty: the policy has no action_uncertainty())")
    if threshold is None and has_scores:
        message = (message + "  " if message else "") + "(threshold not calibrated)"
    if message:
        sheet.draw.text((axis.box[0] + 10, axis.box[1] + 10), message, fill=INK, font=_font(14))
    return sheet.save(path)


def write_plots(folder: Path, runs: list[EpisodeRun], period_s: float, threshold: float | None,
                uncertainty_note: str = "") -> list[Path]:
    folder = Path(folder)
    return [plot_joints(folder / "rollout_joints.png", runs, period_s),
            plot_latency(folder / "rollout_latency.png", runs, period_s),
            plot_uncertainty(folder / "rollout_uncertainty.png", runs, period_s, threshold, uncertainty_note)]
