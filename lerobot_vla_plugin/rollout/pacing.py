"""When the next control tick starts, and what the ticks' timing was.

`WallPacer` keeps an absolute schedule (tick k is due at t0 + k * period): sleeping "one period minus the work"
drifts by the sleep's error every tick, an absolute schedule never does. It sleeps to just before the deadline and
waits out the last fraction of a millisecond, because `time.sleep` overshoots by up to a scheduler tick. A tick
that starts more than a period late (the work overran) re-anchors the schedule at now: missed ticks are skipped,
never made up in a burst that would send the arm several targets at once.

`LockstepPacer` is for the lockstep virtual arm: simulated time advances one period per tick whatever the wall
clock says, so there is nothing to wait for.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

# A tick that starts this many periods after the previous one overran: the arm kept its last target meanwhile.
OVERRUN_FACTOR = 1.5
_SPIN_S = 0.0015  # the last stretch before a deadline is waited out without sleeping


class WallPacer:
    name = "wall"

    def __init__(self, period_s: float, clock=time.perf_counter):
        if period_s <= 0:
            raise ValueError(f"period_s must be positive, got {period_s}")
        self.period_s = period_s
        self.clock = clock
        self._next: float | None = None
        self.reanchored = 0

    def start(self) -> None:
        self._next = None

    def wait(self) -> float:
        """Block until the next tick is due; returns the tick's start time (perf_counter seconds)."""
        now = self.clock()
        if self._next is None:
            self._next = now
        elif now < self._next:
            remaining = self._next - now
            if remaining > _SPIN_S:
                time.sleep(remaining - _SPIN_S)
            while self.clock() < self._next:
                pass
        elif now - self._next > self.period_s:
            self._next = now  # overran: skip the missed ticks instead of bursting to catch up
            self.reanchored += 1
        start = self.clock()
        self._next += self.period_s
        return start


class LockstepPacer:
    name = "lockstep"

    def __init__(self, period_s: float, clock=time.perf_counter):
        self.period_s = period_s
        self.clock = clock

    def start(self) -> None:
        pass

    def wait(self) -> float:
        return self.clock()


@dataclass
class TickTiming:
    """One episode's cadence. `clock` is the clock the arm lives on: "wall" (a real arm, or the virtual arm
    following the wall clock) or "lockstep" (simulated time: every tick is exactly one period by construction,
    the wall-clock figures then only say how fast the machine ran the simulation)."""

    clock: str
    target_hz: float
    ticks: int
    achieved_hz: float
    wall_hz: float
    period_mean_ms: float
    period_p99_ms: float
    period_max_ms: float
    overruns: int  # wall clock only: ticks that started more than OVERRUN_FACTOR periods after the previous one

    def as_dict(self) -> dict:
        return asdict(self)


def tick_timing(starts_s: list[float], target_hz: float, clock: str) -> TickTiming:
    """Timing of ticks that started at `starts_s` (wall seconds)."""
    starts = np.asarray(starts_s, dtype=float)
    periods = np.diff(starts) if len(starts) > 1 else np.zeros(0)
    wall_hz = float(len(periods) / (starts[-1] - starts[0])) if len(periods) and starts[-1] > starts[0] else 0.0
    nominal = 1.0 / target_hz
    overruns = int(np.sum(periods > OVERRUN_FACTOR * nominal)) if clock == "wall" else 0
    return TickTiming(
        clock=clock, target_hz=float(target_hz), ticks=len(starts),
        achieved_hz=wall_hz if clock == "wall" else float(target_hz) if len(starts) else 0.0,
        wall_hz=wall_hz,
        period_mean_ms=float(periods.mean() * 1000) if len(periods) else 0.0,
        period_p99_ms=float(np.percentile(periods, 99) * 1000) if len(periods) else 0.0,
        period_max_ms=float(periods.max() * 1000) if len(periods) else 0.0,
        overruns=overruns)
