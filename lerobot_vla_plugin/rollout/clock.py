"""When a chunk that is being computed may join the action queue: the one thing that differs between a real arm
and the lockstep virtual arm.

On a real arm the loop runs at its period in wall-clock time and a chunk joins as soon as its thread returns
(`WallClock`). On the lockstep virtual arm simulated time advances one period per control tick however long the
tick took, so a thread's wall-clock latency says nothing by itself. `LockstepClock` makes the delay explicit: a
chunk computed from the observation at tick k joins at tick k + d, d being either fixed or the thread's measured
latency in ticks, and the loop waits for the thread when it has not returned by then (the simulation does not
advance meanwhile). A success measured in simulation then means what it would on a real arm at that delay.
"""

from __future__ import annotations

import time
from typing import Protocol


class PendingChunk(Protocol):
    tick: int  # the tick whose observation the chunk is computed from
    started_s: float  # time.perf_counter() when the request was made

    def wait(self, timeout_s: float | None) -> bool:
        """True once the inference has returned (within `timeout_s`, 0 = just look)."""


class WallClock:
    """Real time: a chunk joins on the first tick after its inference returned; the loop never waits."""

    name = "wall"
    fixed_delay_ticks: int | None = None

    def available(self, pending: PendingChunk, tick: int, deadline_s: float) -> bool:
        return pending.wait(0)


class LockstepClock:
    """Simulated time, one `period_s` per tick. `delay_ticks`: every chunk joins exactly that many ticks after its
    request (the loop waits for the thread up to the watchdog's deadline when it is late); None: a chunk joins at
    the first tick k + d with d * period_s >= its wall-clock latency, the latency a real arm would see."""

    name = "lockstep"

    def __init__(self, period_s: float, delay_ticks: int | None = None):
        if period_s <= 0 or (delay_ticks is not None and delay_ticks < 0):
            raise ValueError("period_s must be positive and delay_ticks >= 0")
        self.period_s = period_s
        self.fixed_delay_ticks = delay_ticks

    def available(self, pending: PendingChunk, tick: int, deadline_s: float) -> bool:
        elapsed_ticks = tick - pending.tick
        if self.fixed_delay_ticks is not None:
            if elapsed_ticks < self.fixed_delay_ticks:
                return False
            return pending.wait(max(0.0, deadline_s - time.perf_counter()))
        # Had the inference returned by this tick on a real arm? Wait (the simulation stands still) until the
        # wall-clock instant that tick stands for, or the deadline, whichever comes first.
        due_s = min(pending.started_s + elapsed_ticks * self.period_s, deadline_s)
        return pending.wait(max(0.0, due_s - time.perf_counter()))
