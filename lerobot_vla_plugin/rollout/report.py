"""What a person reads after a rollout: one summary over all episodes (printed and as JSON).

Achieved rate and period percentiles pool every tick of every episode; latency percentiles pool every chunk.
A stall is a tick on which the arm got no fresh target in time: the action queue ran dry after the episode's
first chunk, or (on a wall clock) the tick started more than 1.5 periods after the previous one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .loop import EpisodeRun


def summarize(runs: list[EpisodeRun], successes: list[bool | None], settings: dict) -> dict:
    periods = np.concatenate([np.diff(r.trace.tick_starts_s) for r in runs if len(r.trace.tick_starts_s) > 1]
                             or [np.zeros(0)])
    latencies = np.asarray([ms for r in runs for ms in r.latencies_ms()], dtype=float)
    ticks = sum(r.ticks for r in runs)
    wall_span = sum(r.trace.tick_starts_s[-1] - r.trace.tick_starts_s[0] for r in runs if r.ticks > 1)
    wall_hz = float(len(periods) / wall_span) if wall_span > 0 else 0.0
    clock = runs[0].timing.clock if runs else settings.get("clock", "wall")
    known = [s for s in successes if s is not None]

    def percentile(values, q):
        return float(np.percentile(values, q)) if len(values) else None

    return {
        "settings": settings,
        "episodes": len(runs),
        "successes": sum(known) if known else None,
        "success_known_episodes": len(known),
        "interventions": sum(r.interventions for r in runs),
        "ticks": ticks,
        "clock": clock,
        "target_hz": settings.get("fps"),
        "achieved_hz": wall_hz if clock == "wall" else float(settings.get("fps") or 0.0) if ticks else 0.0,
        "wall_hz": wall_hz,
        "period_p50_ms": percentile(periods * 1000, 50),
        "period_p99_ms": percentile(periods * 1000, 99),
        "period_max_ms": float(periods.max() * 1000) if len(periods) else None,
        "stalls": sum(r.stalls for r in runs),
        "dry_ticks": sum(len(r.trace.stall_ticks) for r in runs),
        "overruns": sum(r.timing.overruns for r in runs),
        "startup_ticks": sum(r.trace.startup_ticks for r in runs),
        "chunks": sum(len(r.trace.chunk_starts) for r in runs),
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p90_ms": percentile(latencies, 90),
        "latency_p99_ms": percentile(latencies, 99),
        "errors": [r.error for r in runs if r.error],
        "per_episode": [{**r.summary(), "success": s} for r, s in zip(runs, successes, strict=True)],
    }


def format_summary(summary: dict) -> str:
    def ms(value):
        return "-" if value is None else f"{value:.1f} ms"

    episodes = summary["episodes"]
    known = summary["success_known_episodes"]
    success = (f"{summary['successes']}/{known} successes" if known else "success not known (no simulation)")
    clock = summary["clock"]
    rate = f"{summary['achieved_hz']:.1f} Hz achieved (target {summary['target_hz']} Hz"
    rate += f", lockstep; wall {summary['wall_hz']:.1f} Hz)" if clock == "lockstep" else ", wall clock)"
    settings = summary["settings"]
    lines = [
        f"Rollout: {episodes} episode{'s' if episodes != 1 else ''}, {success}, "
        f"{summary['interventions']} interventions",
        f"Control loop: {rate}, period p50 {ms(summary['period_p50_ms'])} / p99 {ms(summary['period_p99_ms'])} "
        f"/ max {ms(summary['period_max_ms'])}",
        f"Stalls: {summary['stalls']} ({summary['dry_ticks']} ticks the queue ran dry, {summary['overruns']} "
        f"overrun periods); {summary['startup_ticks']} ticks waiting for an episode's first chunk",
        f"Inference ({settings.get('inference')}{', RTC' if settings.get('rtc') else ''}): {summary['chunks']} "
        f"chunks, latency p50 {ms(summary['latency_p50_ms'])} / p90 {ms(summary['latency_p90_ms'])} / p99 "
        f"{ms(summary['latency_p99_ms'])}",
    ]
    if summary.get("servo_faults"):
        lines.append(f"Servo faults (virtual arm power-cycled, those episodes not counted above): "
                     f"{len(summary['servo_faults'])}")
    return "\n".join(lines)


def write_json(path: Path, summary: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, default=_plain) + "\n")
    return path


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
