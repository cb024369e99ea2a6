"""The policy runner a rollout asks for: asynchronous or synchronous inference, on the arm's clock, with the
policy's uncertainty score taken alongside each chunk when the policy has one.

Both modes are the same `AsyncPolicyRunner` (one action queue, one NaN guard, one deadline): "sync" only swaps
its clock for `BlockingClock`, so the loop waits for each chunk the moment the queue runs dry, as lerobot-record
does with --policy.path, and on a real arm that wait shows up as overrun ticks.
"""

from __future__ import annotations

import math
import threading
import time

INFERENCE_MODES = ("async", "sync")
# How an asynchronous runner joins a new chunk to the remainder of the last one (action_queue.py): "auto" is RTC
# when the policy supports it, else "blend"; "rtc" continues the remainder (the policy is given it); "blend"
# crossfades into the new chunk; "naive" lets the new chunk simply replace the remainder.
MERGE_MODES = ("auto", "rtc", "blend", "naive")


class BlockingClock:
    """Synchronous inference: a chunk joins on the tick it was requested, the loop waiting for it (up to the
    watchdog deadline)."""

    name = "sync"
    fixed_delay_ticks = 0

    def available(self, pending, tick: int, deadline_s: float) -> bool:
        return pending.wait(max(0.0, deadline_s - time.perf_counter()))


class InstrumentedPolicy:
    """A policy seen through a thin wrapper that scores each chunk's observation with the policy's own
    `action_uncertainty(batch)` (flow_vla's sample spread), in the inference thread, right after the chunk.

    Scores are kept per episode (`generation`): a chunk abandoned at an episode's end, finishing late, never
    lends its score to the next episode. Everything else is the wrapped policy's.
    """

    def __init__(self, policy, *, score: bool = True):
        self._policy = policy
        self.scores_uncertainty = bool(score and callable(getattr(policy, "action_uncertainty", None)))
        self._lock = threading.Lock()
        self.generation = 0
        self._scores: list[tuple[int, float, float]] = []  # (generation, score, seconds spent scoring)

    def __getattr__(self, name):
        return getattr(self._policy, name)

    @property
    def wrapped(self):
        return self._policy

    @property
    def uncertainty_threshold(self) -> float | None:
        threshold = getattr(getattr(self._policy, "config", None), "uncertainty_threshold", None)
        return float(threshold) if threshold is not None and math.isfinite(threshold) else None

    def new_episode(self) -> None:
        with self._lock:
            self.generation += 1

    def predict_action_chunk(self, batch, **kwargs):
        generation = self.generation
        chunk = self._policy.predict_action_chunk(batch, **kwargs)
        if self.scores_uncertainty:
            started = time.perf_counter()
            try:
                score = float(self._policy.action_uncertainty(batch).reshape(-1)[0])
            except Exception:  # noqa: BLE001 - a score that cannot be computed is unknown, not a fault
                score = float("nan")
            with self._lock:
                self._scores.append((generation, score, time.perf_counter() - started))
        return chunk

    def chunk_score(self, index: int) -> float:
        """The score of this episode's `index`-th chunk (0-based, in request order); NaN when unknown."""
        with self._lock:
            scores = [score for generation, score, _ in self._scores if generation == self.generation]
        return scores[index] if 0 <= index < len(scores) else float("nan")

    def scoring_seconds(self) -> list[float]:
        with self._lock:
            return [seconds for _, _, seconds in self._scores]


def build_runner(loaded, *, inference: str, period_s: float, lockstep: bool, delay_ticks: int | None = None,
                 score_uncertainty: bool = True, merge: str = "auto"):
    """An `AsyncPolicyRunner` for `inference` ("async" / "sync") on a lockstep or wall-clock arm, joining chunks
    as `merge` says (async only). The loaded policy is wrapped in `InstrumentedPolicy` (then
    `runner.loaded.policy`)."""
    from .async_runner import AsyncPolicyRunner
    from .clock import LockstepClock, WallClock

    if inference not in INFERENCE_MODES:
        raise ValueError(f"inference must be one of {INFERENCE_MODES}, got {inference!r}")
    if merge not in MERGE_MODES:
        raise ValueError(f"merge must be one of {MERGE_MODES}, got {merge!r}")
    if not isinstance(loaded.policy, InstrumentedPolicy):
        loaded.policy = InstrumentedPolicy(loaded.policy, score=score_uncertainty)
    if inference == "sync":
        return AsyncPolicyRunner(loaded, period_s=period_s, clock=BlockingClock(), margin_ticks=0)
    clock = LockstepClock(period_s, delay_ticks) if lockstep else WallClock()
    use_rtc = {"auto": None, "rtc": True}.get(merge, False)
    merging = {"crossfade_steps": 0} if merge == "naive" else {}
    return AsyncPolicyRunner(loaded, period_s=period_s, clock=clock, use_rtc=use_rtc, **merging)
