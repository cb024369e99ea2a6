"""How many control ticks a chunk takes to arrive, estimated from recent inference latencies.

A running maximum (what LeRobot's LatencyTracker keeps) lets one warm-up spike inflate the delay for the whole
run: every later chunk then throws away more of its start than it needs to. A high percentile over a window of the
last few latencies follows the policy's current speed and forgets a spike once it has left the window.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np


def latency_to_ticks(latency_s: float, period_s: float) -> int:
    """Control ticks that pass while an inference of `latency_s` runs: ceil(latency / period)."""
    # A tiny tolerance keeps a latency of exactly k periods (in float arithmetic) at k ticks.
    return max(0, math.ceil(latency_s / period_s - 1e-9))


class DelayEstimator:
    """`percentile` of the last `window` latencies, in seconds and in ticks of `period_s`. Before the first
    measurement the delay is `initial_delay_ticks`, a guess the caller makes (e.g. from a benchmark)."""

    def __init__(self, period_s: float, *, window: int = 20, percentile: float = 90.0, initial_delay_ticks: int = 0):
        if period_s <= 0 or window < 1 or not 0 <= percentile <= 100 or initial_delay_ticks < 0:
            raise ValueError("period_s and window must be positive, percentile in [0, 100], initial_delay_ticks >= 0")
        self.period_s = period_s
        self.percentile = percentile
        self.initial_delay_ticks = initial_delay_ticks
        self._recent: deque[float] = deque(maxlen=window)
        self.all_latencies_s: list[float] = []  # every measurement, for reports

    def record(self, latency_s: float) -> None:
        self._recent.append(float(latency_s))
        self.all_latencies_s.append(float(latency_s))

    @property
    def measured(self) -> bool:
        return bool(self._recent)

    def latency_s(self, percentile: float | None = None) -> float | None:
        """The `percentile` (default: the estimator's) of the recent window; None before any measurement."""
        if not self._recent:
            return None
        return float(np.percentile(np.asarray(self._recent), self.percentile if percentile is None else percentile))

    def delay_ticks(self) -> int:
        latency = self.latency_s()
        return self.initial_delay_ticks if latency is None else latency_to_ticks(latency, self.period_s)
