"""What a rollout measured: chunks, latencies, ticks the queue ran dry, and how smooth the chunk boundaries were."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


def second_difference_max(actions: np.ndarray, boundaries: list[int], start: int = 0) -> tuple[float, float]:
    """Max |a[i+1] - 2 a[i] + a[i-1]| (over joints) at chunk boundaries and elsewhere, for the targets sent from
    tick `start` on. A boundary at tick b (the first action of a new chunk) counts at centres b-1 and b, where a jump
    between a[b-1] and a[b] shows up. Returns (at_boundaries, elsewhere); 0.0 where there is nothing to measure."""
    actions = np.asarray(actions, dtype=float)
    if len(actions) - start < 3:
        return 0.0, 0.0
    second = np.abs(actions[start + 2:] - 2 * actions[start + 1:-1] + actions[start:-2]).max(axis=1)
    centres = np.arange(start + 1, len(actions) - 1)
    at_boundary = np.isin(centres, [c for b in boundaries for c in (b - 1, b)])
    boundary = float(second[at_boundary].max()) if at_boundary.any() else 0.0
    elsewhere = float(second[~at_boundary].max()) if (~at_boundary).any() else 0.0
    return boundary, elsewhere


@dataclass
class EpisodeRolloutStats:
    ticks: int = 0
    chunks: int = 0
    # Ticks before the episode's first chunk arrived (the arm held its pose), and ticks after it on which the
    # queue was dry (the arm held its last target): a stall is inference falling behind the loop.
    startup_ticks: int = 0
    stalls: int = 0
    dropped_actions: int = 0
    arrival_delays_ticks: list[int] = field(default_factory=list)
    boundary_jerk: float = 0.0
    elsewhere_jerk: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def summarize_rollout(episodes: list[EpisodeRolloutStats], latencies_s: list[float]) -> dict:
    """One dict over all episodes: totals, latency percentiles (seconds) and the worst jerk seen."""
    latencies = np.asarray(latencies_s, dtype=float)
    delays = [d for e in episodes for d in e.arrival_delays_ticks]
    return {
        "episodes": len(episodes),
        "ticks": sum(e.ticks for e in episodes),
        "chunks": sum(e.chunks for e in episodes),
        "startup_ticks": sum(e.startup_ticks for e in episodes),
        "stalls": sum(e.stalls for e in episodes),
        "dropped_actions": sum(e.dropped_actions for e in episodes),
        "latency_p50_s": float(np.percentile(latencies, 50)) if len(latencies) else None,
        "latency_p90_s": float(np.percentile(latencies, 90)) if len(latencies) else None,
        "latency_max_s": float(latencies.max()) if len(latencies) else None,
        "arrival_delay_ticks_max": max(delays) if delays else None,
        "arrival_delay_ticks_mean": float(np.mean(delays)) if delays else None,
        "boundary_jerk": max((e.boundary_jerk for e in episodes), default=0.0),
        "elsewhere_jerk": max((e.elsewhere_jerk for e in episodes), default=0.0),
    }
