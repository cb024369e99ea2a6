"""`AsyncPolicyRunner`: a chunking policy driven at control rate, its inference off the control loop.

Every tick the loop gets one action from the queue at once. A new chunk is requested (from this tick's
observation, in a background thread) when the queue's remainder is about to fall below the estimated delay plus a
margin, or earlier when the policy's `n_action_steps` is shorter than its chunk: observations then go to the policy
every `n_action_steps` ticks, as in LeRobot's synchronous `select_action`, so the arm re-plans from fresher
observations; when a chunk arrives it is merged (action_queue.py). With a policy that `supports_rtc()` the request
carries the remainder (policy space) and the delay, and `predict_action_chunk` continues it; otherwise the chunk is
crossfaded in.

Bounded failure: a chunk with a non-finite action never joins the queue, an inference that raises or does not
return before its deadline (`deadline_factor` x the recent latency, at least `min_deadline_s`) stops the episode:
`act` raises a `RolloutError` that carries the last target, the one the arm should keep holding.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from .action_queue import ActionQueue
from .clock import LockstepClock, WallClock
from .latency import DelayEstimator
from .loaded_policy import LoadedPolicy, RunnerFault
from .stats import EpisodeRolloutStats, second_difference_max, summarize_rollout


class RolloutError(RunnerFault):
    """The policy cannot go on driving the arm this episode; `hold_action` is the target to keep (None: the
    episode's first chunk never came, keep the arm where it is)."""

    def __init__(self, message: str, hold_action: dict[str, float] | None = None):
        super().__init__(message)
        self.hold_action = hold_action


class NonFiniteActionError(RolloutError):
    pass


class InferenceFailedError(RolloutError):
    pass


class InferenceTimeoutError(RolloutError):
    pass


class _Request:
    """One chunk being computed in its own daemon thread (a hung inference must not keep the process alive)."""

    def __init__(self, tick: int, executed: int, inference_delay: int | None):
        self.tick = tick
        self.executed_at_request = executed
        self.inference_delay = inference_delay
        self.started_s = time.perf_counter()
        self.latency_s: float | None = None
        self.actions: np.ndarray | None = None
        self.normalized: np.ndarray | None = None
        self.error: BaseException | None = None
        self._done = threading.Event()

    def wait(self, timeout_s: float | None) -> bool:
        return self._done.wait(timeout_s) if timeout_s else self._done.is_set()

    def finish(self) -> None:
        self.latency_s = time.perf_counter() - self.started_s
        self._done.set()


class AsyncPolicyRunner:
    """The evaluator's PolicyRunner (reset(task), act(observation)) with asynchronous chunk inference.

    `loaded`: where chunks come from, a `LoadedPolicy` (inference in this process) or a `RemotePolicy`
    (remote_client.py: a policy server computes them); either way its `predict_chunk` runs in the background
    thread, and the latency the delay estimate learns from is the whole call (for a server: the round trip).
    `clock`: `WallClock()` on a real arm, `LockstepClock(period_s, delay_ticks)` on the lockstep virtual arm.
    `use_rtc`: None follows `policy.supports_rtc()`; False crossfades chunks even for an RTC policy.
    """

    def __init__(self, loaded: LoadedPolicy, *, period_s: float, clock=None, use_rtc: bool | None = None,
                 margin_ticks: int = 2, crossfade_steps: int = 4, initial_delay_ticks: int = 3,
                 latency_window: int = 20, latency_percentile: float = 90.0, deadline_factor: float = 10.0,
                 min_deadline_s: float = 5.0, first_deadline_s: float = 60.0):
        self.loaded = loaded
        self.policy = getattr(loaded, "policy", None)  # the policy in this process; None for a RemotePolicy
        self.period_s = period_s
        self.clock = clock if clock is not None else WallClock()
        supports_rtc = loaded.supports_rtc()
        if use_rtc and not supports_rtc:
            raise ValueError(f"{loaded.name()} does not support real-time chunking")
        self.use_rtc = supports_rtc if use_rtc is None else use_rtc
        self.margin_ticks = margin_ticks
        self.actions_per_chunk = loaded.actions_per_chunk()
        self.deadline_factor = deadline_factor
        self.min_deadline_s = min_deadline_s
        self.first_deadline_s = first_deadline_s
        self.estimator = DelayEstimator(period_s, window=latency_window, percentile=latency_percentile,
                                        initial_delay_ticks=initial_delay_ticks)
        self.queue = ActionQueue(crossfade_steps)
        self.episodes: list[EpisodeRolloutStats] = []
        self.task = ""
        self._request: _Request | None = None
        self._fault: RolloutError | None = None
        self._tick = 0
        self._sent: list[np.ndarray] = []
        self._boundaries: list[int] = []
        self._first_chunk_tick: int | None = None
        self._chunk_requested_at_executed: int | None = None  # queue.executed when the running chunk was asked

    @classmethod
    def from_config(cls, policy_cfg, robot, **kwargs) -> AsyncPolicyRunner:
        return cls(LoadedPolicy.from_config(policy_cfg, robot), **kwargs)

    # -- PolicyRunner ------------------------------------------------------------------------------------------

    def reset(self, task: str) -> None:
        self._finish_episode_stats()
        self._abandon_request()
        self.task = task
        self.loaded.reset()
        self.queue.clear()
        self._fault = None
        self._tick = 0
        self._sent, self._boundaries, self._first_chunk_tick = [], [], None
        self._chunk_requested_at_executed = None
        self.episodes.append(EpisodeRolloutStats())

    def act(self, observation: dict) -> dict[str, float]:
        if self._fault is not None:
            raise self._fault
        if not self.episodes:
            self.reset(self.task)
        try:
            self._collect()
            if self._request is None and self._next_chunk_due():
                self._start_request(observation)
                self._collect()  # a zero-tick delay joins on the tick it was asked for
        except RolloutError as error:
            self._fault = error
            raise
        return self._execute(observation)

    def pause(self) -> None:
        """A person takes the arm: the queue and the chunk being computed are dropped (it may still finish in its
        thread; nothing reads it). The next `act` starts afresh from that tick's observation, the arm kept where
        it is until the first new chunk arrives, executed from its start."""
        self._abandon_request(wait=False)
        self.queue.clear()
        self._chunk_requested_at_executed = None

    # -- what the loop measures --------------------------------------------------------------------------------

    def expected_delay_ticks(self) -> int:
        fixed = self.clock.fixed_delay_ticks
        return self.estimator.delay_ticks() if fixed is None else fixed

    def deadline_s(self) -> float:
        """How long a requested chunk may take before the watchdog stops the episode."""
        latency = self.estimator.latency_s()
        if latency is None:
            return max(self.first_deadline_s, self.min_deadline_s)
        return max(self.min_deadline_s, self.deadline_factor * latency)

    def stats(self) -> dict:
        """Everything since construction: see stats.summarize_rollout; `rtc` and the clock say how it ran."""
        self._finish_episode_stats()
        summary = summarize_rollout(self.episodes, self.estimator.all_latencies_s)
        summary.update(rtc=self.use_rtc, clock=self.clock.name, fixed_delay_ticks=self.clock.fixed_delay_ticks,
                       delay_estimate_ticks=self.estimator.delay_ticks())
        return summary

    def episode_stats(self) -> dict | None:
        """The current (or last) episode's measurements, for the evaluator's report."""
        if not self.episodes:
            return None
        self._finish_episode_stats()
        return self.episodes[-1].as_dict()

    def close(self) -> None:
        self._abandon_request(wait=False)

    # -- internals ---------------------------------------------------------------------------------------------

    def _execute(self, observation: dict) -> dict[str, float]:
        episode = self.episodes[-1]
        action = self.queue.pop()
        if action is None:  # the episode's first chunk is not here yet: keep the arm where it is
            action = self._present_position(observation)
            episode.startup_ticks += 1
        elif self.queue.held:
            episode.stalls += 1
        elif self.queue.chunk_start:
            self._boundaries.append(self._tick)
            if self._first_chunk_tick is None:
                self._first_chunk_tick = self._tick
        self._sent.append(np.asarray(action, dtype=float))
        self._tick += 1
        episode.ticks = self._tick
        return self.loaded.robot_action(action)

    def _next_chunk_due(self) -> bool:
        """Request now so the next chunk lands as the queue runs dry, or once `actions_per_chunk` ticks have passed
        since the running chunk's observation (the next chunk then takes over after its delay)."""
        if self.queue.remaining() <= self.expected_delay_ticks() + self.margin_ticks:
            return True
        if self.actions_per_chunk is None or self._chunk_requested_at_executed is None:
            return False
        return self.queue.executed - self._chunk_requested_at_executed >= self.actions_per_chunk

    def _present_position(self, observation: dict) -> np.ndarray:
        names = self.loaded.features["action"]["names"]
        return np.array([float(observation[name]) for name in names])

    def _hold_action(self) -> dict[str, float] | None:
        last = self.queue.last_action
        return None if last is None else self.loaded.robot_action(last)

    def _start_request(self, observation: dict) -> None:
        leftover = self.queue.leftover_normalized() if self.use_rtc else None
        delay = min(self.expected_delay_ticks(), len(leftover)) if leftover is not None else None
        request = _Request(self._tick, self.queue.executed, delay)
        frame = self.loaded.frame(observation)  # this tick's observation, copied before the loop moves on
        frame = {key: np.array(value, copy=True) for key, value in frame.items()}
        thread = threading.Thread(target=self._infer, args=(request, frame, self.task, leftover),
                                  name="policy-inference", daemon=True)
        self._request = request
        thread.start()

    def _infer(self, request: _Request, frame: dict, task: str, leftover: np.ndarray | None) -> None:
        try:
            request.actions, request.normalized = self.loaded.predict_chunk(frame, task, request.inference_delay,
                                                                            leftover)
        except BaseException as error:  # reported to the loop, which stops the episode
            request.error = error
        finally:
            request.finish()

    def _collect(self) -> None:
        request = self._request
        if request is None:
            return
        deadline = request.started_s + self.deadline_s()
        if not self.clock.available(request, self._tick, deadline):
            if time.perf_counter() >= deadline:
                raise InferenceTimeoutError(
                    f"the policy's chunk requested at tick {request.tick} has not arrived after "
                    f"{time.perf_counter() - request.started_s:.1f} s (deadline {self.deadline_s():.1f} s); "
                    "holding the last target", self._hold_action())
            return
        self._request = None
        if request.error is not None:
            raise InferenceFailedError(f"the policy's inference failed: {request.error!r}; holding the last target",
                                       self._hold_action()) from request.error
        self.estimator.record(request.latency_s)
        actions = request.actions
        if actions is None or not np.isfinite(actions).all():
            bad = 0 if actions is None else int((~np.isfinite(actions)).any(axis=1).sum())
            raise NonFiniteActionError(
                f"the policy returned a chunk with {bad} non-finite action(s) (requested at tick {request.tick}); "
                "none was sent, holding the last target", self._hold_action())
        episode = self.episodes[-1]
        dropped = self.queue.merge(actions, request.normalized,
                                   executed_since_request=self.queue.executed - request.executed_at_request,
                                   crossfade=not self.use_rtc)
        self._chunk_requested_at_executed = request.executed_at_request
        episode.chunks += 1
        episode.dropped_actions += dropped
        episode.arrival_delays_ticks.append(self._tick - request.tick)

    def _abandon_request(self, wait: bool = True) -> None:
        """Let an in-flight inference finish (within its deadline) so two never compete; its chunk is dropped."""
        request, self._request = self._request, None
        if request is not None and wait:
            request.wait(max(0.0, request.started_s + self.deadline_s() - time.perf_counter()))

    def _finish_episode_stats(self) -> None:
        if not self.episodes or not self._sent:
            return
        start = self._first_chunk_tick if self._first_chunk_tick is not None else len(self._sent)
        later = [b for b in self._boundaries if b != self._first_chunk_tick]
        episode = self.episodes[-1]
        episode.boundary_jerk, episode.elsewhere_jerk = second_difference_max(np.stack(self._sent), later, start)


__all__ = ["AsyncPolicyRunner", "InferenceFailedError", "InferenceTimeoutError", "LockstepClock",
           "NonFiniteActionError", "RolloutError", "WallClock"]
