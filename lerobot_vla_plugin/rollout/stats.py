"""What a rollout measured: chunks, latencies, ticks the queue ran dry, and how smooth the chunk boundaries were."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


def second_differences(actions: np.ndarray, boundaries: list[int], start: int = 0,
                       columns: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """|a[i+1] - 2 a[i] + a[i-1]| (max over `columns`, default every joint) for the targets sent from tick `start`
    on, split into (at chunk boundaries, elsewhere). A boundary at tick b (the first action of a new chunk) counts
    at centres b-1 and b, where a jump between a[b-1] and a[b] shows up. Either array may be empty."""
    actions = np.asarray(actions, dtype=float)
    if columns is not None:
        actions = actions[:, columns]
    if len(actions) - start < 3:
        return np.zeros(0), np.zeros(0)
    second = np.abs(actions[start + 2:] - 2 * actions[start + 1:-1] + actions[start:-2]).max(axis=1)
    centres = np.arange(start + 1, len(actions) - 1)
    at_boundary = np.isin(centres, [c for b in boundaries for c in (b - 1, b)])
    return second[at_boundary], second[~at_boundary]


def second_difference_max(actions: np.ndarray, boundaries: list[int], start: int = 0) -> tuple[float, float]:
    """The largest second difference at chunk boundaries and elsewhere (see `second_differences`); 0.0 where
    there is nothing to measure."""
    at_boundary, elsewhere = second_differences(actions, boundaries, start)
    return (float(at_boundary.max()) if len(at_boundary) else 0.0,
            float(elsewhere.max()) if len(elsewhere) else 0.0)


def chunk_boundary_jerk(traces, skip: tuple[str, ...] = ("gripper.pos",)) -> dict:
    """How abruptly the joint targets change where a new chunk takes over, against everywhere else, pooled over
    episodes (`traces`: the control loop's EpisodeTrace, or anything with joint_names, requested, chunk_starts).

    Per tick t: max over the joints not in `skip` of |a[t+1] - 2 a[t] + a[t-1]|, a being the targets the runner
    sent (before the arm's clamps), in action units per tick^2 (degrees on SO arms; the gripper, in percent, is
    skipped). Ticks before an episode's first chunk (the arm holding its pose) do not count, and neither does that
    first chunk's start. Means and maxima are None where nothing was measured (no later chunk boundary)."""
    at_boundary, elsewhere = [], []
    for trace in traces:
        if not trace.chunk_starts or not trace.requested:
            continue
        columns = [i for i, name in enumerate(trace.joint_names) if name not in skip]
        first, *later = trace.chunk_starts
        boundary, other = second_differences(np.stack(trace.requested), later, first, columns)
        at_boundary.append(boundary)
        elsewhere.append(other)
    at_boundary = np.concatenate(at_boundary) if at_boundary else np.zeros(0)
    elsewhere = np.concatenate(elsewhere) if elsewhere else np.zeros(0)

    def mean(values):
        return float(values.mean()) if len(values) else None

    return {"jerk_boundary": mean(at_boundary), "jerk_elsewhere": mean(elsewhere),
            "jerk_boundary_max": float(at_boundary.max()) if len(at_boundary) else None,
            "jerk_elsewhere_max": float(elsewhere.max()) if len(elsewhere) else None,
            "jerk_boundary_ticks": len(at_boundary), "jerk_elsewhere_ticks": len(elsewhere)}


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
