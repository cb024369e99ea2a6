"""One PNG summarising a quality report, drawn with Pillow (LeRobot's install has no matplotlib)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lerobot_vla_plugin.recording.quality import QualityReport

WIDTH, HEIGHT = 1200, 800
PANEL_MARGIN = 50
INK, GRID, BAR, ALERT, OK, WARN = (30, 30, 30), (210, 210, 210), (70, 120, 190), (200, 50, 50), (40, 150, 70), \
    (220, 150, 30)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()


def _bar_panel(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], title: str, labels: list[str],
               values: list[float], colors: list[tuple] | None = None, value_format: str = "{:.0f}",
               reference: tuple[float, str] | None = None) -> None:
    """Horizontal bars: readable with long labels such as task sentences."""
    x0, y0, x1, y1 = box
    draw.text((x0, y0), title, fill=INK, font=_font(18))
    top, label_width = y0 + 30, min(260, (x1 - x0) // 2)
    if not values:
        draw.text((x0, top), "(no data)", fill=INK, font=_font(14))
        return
    vmax = max(max(values), reference[0] if reference else 0, 1e-9)
    row = min(28, (y1 - top) / len(values))
    bar_x0, bar_x1 = x0 + label_width, x1 - 60
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = top + i * row
        draw.text((x0, y + row / 4), label[:34], fill=INK, font=_font(12))
        length = (bar_x1 - bar_x0) * value / vmax
        draw.rectangle((bar_x0, y + 3, bar_x0 + length, y + row - 3), fill=(colors[i] if colors else BAR))
        draw.text((bar_x0 + length + 5, y + row / 4), value_format.format(value), fill=INK, font=_font(12))
    if reference:
        x = bar_x0 + (bar_x1 - bar_x0) * reference[0] / vmax
        draw.line((x, top, x, top + len(values) * row), fill=ALERT, width=2)
        draw.text((x + 3, top + len(values) * row + 2), reference[1], fill=ALERT, font=_font(12))


def _histogram_panel(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], lengths: list[int],
                     chunk_size: int) -> None:
    x0, y0, x1, y1 = box
    draw.text((x0, y0), "Episode length (frames)", fill=INK, font=_font(18))
    top, bottom, left, right = y0 + 35, y1 - 25, x0 + 10, x1 - 10
    lo, hi = min(min(lengths), chunk_size), max(max(lengths), chunk_size)
    edges = np.linspace(lo, hi + 1, 16)
    counts, _ = np.histogram(lengths, bins=edges)
    peak = max(counts.max(), 1)
    width = (right - left) / len(counts)
    for i, count in enumerate(counts):
        height = (bottom - top) * count / peak
        color = ALERT if edges[i + 1] <= chunk_size else BAR
        draw.rectangle((left + i * width + 1, bottom - height, left + (i + 1) * width - 1, bottom), fill=color)
    draw.line((left, bottom, right, bottom), fill=INK)
    x = left + (right - left) * (chunk_size - lo) / max(hi + 1 - lo, 1)
    draw.line((x, top, x, bottom), fill=ALERT, width=2)
    draw.text((x + 3, top), f"chunk {chunk_size}", fill=ALERT, font=_font(12))
    draw.text((left, bottom + 5), str(lo), fill=INK, font=_font(12))
    draw.text((right - 30, bottom + 5), str(hi), fill=INK, font=_font(12))


def _checks_panel(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], report: QualityReport) -> None:
    x0, y0, _, _ = box
    draw.text((x0, y0), "Checks", fill=INK, font=_font(18))
    for i, check in enumerate(report.checks):
        color = OK if check.passed else (ALERT if check.blocking else WARN)
        status = "ok" if check.passed else ("FAIL" if check.blocking else "warn")
        y = y0 + 32 + i * 40
        draw.rectangle((x0, y + 2, x0 + 14, y + 16), fill=color)
        draw.text((x0 + 22, y), f"{status:4s} {check.name}", fill=INK, font=_font(14))
        draw.text((x0 + 22, y + 18), check.summary[:70], fill=INK, font=_font(11))


def plot_report(report: QualityReport, path: str | Path) -> Path:
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    half_w, half_h = WIDTH // 2, HEIGHT // 2
    tasks = sorted(report.episodes_per_task, key=lambda t: -report.episodes_per_task[t])
    _bar_panel(draw, (PANEL_MARGIN, 20, half_w - 20, half_h - 20),
               f"Episodes per task (entropy {report.task_entropy_bits:.2f} bits)", tasks,
               [report.episodes_per_task[t] for t in tasks])
    _histogram_panel(draw, (half_w + 20, 20, WIDTH - PANEL_MARGIN, half_h - 20), report.episode_lengths,
                     report.chunk_size)
    coverage = [report.joint_coverage[n] * 100 for n in report.joint_names]
    _bar_panel(draw, (PANEL_MARGIN, half_h + 10, half_w - 20, HEIGHT - 20), "Joint range coverage (%)",
               report.joint_names, coverage, colors=[ALERT if c == 0 else BAR for c in coverage])
    _checks_panel(draw, (half_w + 20, half_h + 10, WIDTH - PANEL_MARGIN, HEIGHT - 20), report)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
