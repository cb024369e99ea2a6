"""The control loop of a policy on an arm, one episode at a time: paced ticks of observation -> runner -> arm.

Every command that lets a policy drive an arm runs this loop: `lerobot-vla rollout` (real or virtual arm, with
recording) and the evaluator (the virtual arm, without recording, plus its report). Per tick it:

1. waits for the tick (wall schedule, or nothing on the lockstep virtual arm),
2. reads the observation, asks the hand-off whether a person has the arm (then its action is sent and the
   runner is paused), else asks the runner for this tick's action (an asynchronous runner answers at once from
   its queue; a runner that gives up raises `RunnerFault`: the arm is sent the fault's hold target and the
   episode ends with the fault's message),
3. sends it through the robot, whose own guard clamps it (limits, per-step limit, non-finite goals refused),
4. notes what the arm was told and where it was, which chunk the action came from, the chunk's latency and
   uncertainty, and whether a human has control (`HandOff`), then hands the tick to `on_tick` (the recorder).

A `LoopWatchdog` stops the loop when one tick takes far longer than the runner can explain (a hung bus, camera
or synchronous policy): it takes torque off at once, then interrupts the loop, which ends with `LoopStalled`.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .loaded_policy import RunnerFault
from .pacing import LockstepPacer, TickTiming, WallPacer, tick_timing

logger = logging.getLogger(__name__)


class LoopStalled(RuntimeError):
    """A tick did not finish within the watchdog's limit; torque was taken off."""


class HandOff:
    """Who drives the arm. This one never hands off: the policy always drives, every frame records
    `intervention = False`. `rollout/handoff.py`'s `LeaderHandOff` hands the arm to a person on the leader:
    `observe_chunk` sees each chunk's uncertainty score as it starts executing, `drive` gives the tick's action
    while the policy is paused (None: the policy drives), and `intervening` says whether a person has the arm."""

    intervening = False
    interventions = 0

    def observe_chunk(self, score: float, threshold: float | None) -> None:
        pass

    def drive(self, observation: dict, last_target: dict | None) -> dict | None:
        return None

    def new_episode(self) -> None:
        pass


@dataclass
class TickInfo:
    """What the runner did on one tick, read from its queue and counters."""

    startup: bool = False  # the episode's first chunk had not arrived: the arm kept its pose
    dry: bool = False  # the queue ran dry after the first chunk: the arm held its last target (a stall)
    chunk_start: bool = False  # this tick executed the first action of a newly merged chunk
    chunk_latency_s: float | None = None  # latency of the chunk merged on this tick


class RunnerProbe:
    """Reads an `AsyncPolicyRunner`'s public state after each `act`; a runner with a `tick_info()` (the synchronous
    select_action runner) says itself; any other runner (scripted) reports nothing, and its ticks count as plain
    ticks."""

    def __init__(self, runner):
        self.runner = runner
        self._latencies = 0
        self._stalls = 0
        self._startup = 0
        self._chunk_offset = 0  # chunks merged before the last pause: scores restart there

    def start_episode(self) -> None:
        estimator = getattr(self.runner, "estimator", None)
        self._latencies = len(estimator.all_latencies_s) if estimator is not None else 0
        self._stalls = self._startup = self._chunk_offset = 0
        if hasattr(self.policy, "new_episode"):
            self.policy.new_episode()

    def pause(self) -> None:
        """A person took the arm: the runner drops its queue and the chunk in flight (whose score, still to come,
        belongs to no executed chunk), and scores count again from the next chunk."""
        pause = getattr(self.runner, "pause", None)
        if pause is not None:
            pause()
        if hasattr(self.policy, "new_episode"):
            self.policy.new_episode()
        self._chunk_offset = self.chunks

    def after_act(self) -> TickInfo:
        runner = self.runner
        if callable(getattr(runner, "tick_info", None)):
            return runner.tick_info()
        episodes = getattr(runner, "episodes", None)
        if not episodes:
            return TickInfo()
        episode = episodes[-1]
        info = TickInfo(startup=episode.startup_ticks > self._startup, dry=episode.stalls > self._stalls,
                        chunk_start=bool(runner.queue.chunk_start))
        self._startup, self._stalls = episode.startup_ticks, episode.stalls
        latencies = runner.estimator.all_latencies_s
        if len(latencies) > self._latencies:
            info.chunk_latency_s = latencies[-1]
            self._latencies = len(latencies)
        return info

    @property
    def chunks(self) -> int:
        episodes = getattr(self.runner, "episodes", None)
        return episodes[-1].chunks if episodes else 0

    @property
    def policy(self):
        """The runner's policy as loaded in this process (runners/InstrumentedPolicy when it scores chunks);
        None for a runner without one (scripted, remote)."""
        return getattr(getattr(self.runner, "loaded", None), "policy", None)

    def chunk_score(self, index: int) -> float:
        policy = self.policy
        index -= self._chunk_offset
        return policy.chunk_score(index) if hasattr(policy, "chunk_score") else float("nan")

    @property
    def uncertainty_threshold(self) -> float | None:
        return getattr(self.policy, "uncertainty_threshold", None)


@dataclass
class EpisodeTrace:
    """Per tick of one episode: what the arm was told (after the robot's clamps) and where it was."""

    joint_names: list[str]
    tick_starts_s: list[float] = field(default_factory=list)  # wall clock
    requested: list[np.ndarray] = field(default_factory=list)  # the runner's action, before the robot's clamps
    targets: list[np.ndarray] = field(default_factory=list)  # what the robot sent the servos (after its clamps)
    measured: list[np.ndarray] = field(default_factory=list)
    chunk_starts: list[int] = field(default_factory=list)  # ticks that began a new chunk
    stall_ticks: list[int] = field(default_factory=list)  # queue dry after the first chunk
    startup_ticks: int = 0
    chunk_latencies: list[tuple[int, float]] = field(default_factory=list)  # (tick the chunk joined, seconds)
    uncertainty: list[float] = field(default_factory=list)  # per tick: the executing chunk's score (NaN: none)
    intervention: list[bool] = field(default_factory=list)


@dataclass
class EpisodeRun:
    """How one episode of the loop went."""

    ticks: int
    trace: EpisodeTrace
    timing: TickTiming
    error: str | None = None  # why the runner or a stalled camera ended the episode (the arm holds its target)
    interventions: int = 0

    @property
    def stalls(self) -> int:
        """Ticks on which the arm did not get a fresh target in time: the queue ran dry, or the tick overran."""
        return len(self.trace.stall_ticks) + self.timing.overruns

    def latencies_ms(self) -> list[float]:
        return [1000.0 * seconds for _, seconds in self.trace.chunk_latencies]

    def summary(self) -> dict:
        latencies = np.asarray(self.latencies_ms(), dtype=float)
        scores = np.asarray(self.trace.uncertainty, dtype=float)
        scores = scores[np.isfinite(scores)]

        def percentile(values, q):
            return float(np.percentile(values, q)) if len(values) else None

        return {
            **self.timing.as_dict(), "stalls": self.stalls, "dry_ticks": len(self.trace.stall_ticks),
            "startup_ticks": self.trace.startup_ticks, "chunks": len(self.trace.chunk_starts),
            "latency_p50_ms": percentile(latencies, 50), "latency_p90_ms": percentile(latencies, 90),
            "latency_p99_ms": percentile(latencies, 99), "uncertainty_mean": float(scores.mean()) if len(scores)
            else None, "interventions": self.interventions, "error": self.error,
        }


TickCallback = Callable[[int, dict, dict, dict], None]  # (tick, observation, sent action, per-frame extras)


def _interrupt_the_loop(signum, frame):
    raise KeyboardInterrupt


class LoopWatchdog:
    """Watches the loop's ticks from a thread. When one runs past `limit_s()` it takes torque off at once
    (`robot.emergency_torque_off`), then interrupts the loop's thread with a signal of its own (SIGUSR1, handled
    while the watchdog runs) so even a blocking read returns; the loop turns that interrupt into `LoopStalled`.
    Not SIGINT: a process started in the background by a script inherits SIGINT ignored, and Ctrl-C keeps its
    own meaning."""

    def __init__(self, robot, limit_s: Callable[[], float], poll_s: float = 0.05):
        self.robot = robot
        self.limit_s = limit_s
        self.poll_s = poll_s
        self.tripped: str | None = None
        self._tick_started: float | None = None
        self._tick_limit = math.inf
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop_thread = threading.current_thread()
        self._can_interrupt = False
        self._previous_handler = None

    def __enter__(self) -> LoopWatchdog:
        self.tripped = None
        self._loop_thread = threading.current_thread()
        # Python runs signal handlers in the main thread only: a loop elsewhere gets torque off, not an interrupt.
        self._can_interrupt = self._loop_thread is threading.main_thread()
        if self._can_interrupt:
            self._previous_handler = signal.signal(signal.SIGUSR1, _interrupt_the_loop)
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="rollout-watchdog", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        # A watch thread still busy (a torque-off that hangs) may yet send its signal: keep the handler then.
        if self._can_interrupt and (self._thread is None or not self._thread.is_alive()):
            signal.signal(signal.SIGUSR1, self._previous_handler or signal.SIG_DFL)
            self._can_interrupt = False

    def tick_started(self) -> None:
        limit = self.limit_s()
        with self._lock:
            self._tick_started, self._tick_limit = time.perf_counter(), limit

    def tick_finished(self) -> None:
        with self._lock:
            self._tick_started = None

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            with self._lock:
                started, limit = self._tick_started, self._tick_limit
            if started is None or time.perf_counter() - started <= limit:
                continue
            self.tripped = (f"the control loop's tick has not finished after {time.perf_counter() - started:.1f} s "
                            f"(watchdog limit {limit:.1f} s): the policy, a camera or the servo bus hangs; torque "
                            "was taken off")
            logger.error("Watchdog: %s.", self.tripped)
            torque_off = getattr(self.robot, "emergency_torque_off", None)
            if torque_off is not None:
                try:
                    torque_off("the rollout watchdog fired")
                except Exception as exc:  # noqa: BLE001 - still interrupt the loop
                    logger.error("Watchdog torque-off failed: %s", exc)
            if self._can_interrupt:
                signal.pthread_kill(self._loop_thread.ident, signal.SIGUSR1)
            return


class ControlLoop:
    """Runs episodes of `runner` on the connected `robot` at `fps`. `lockstep`: the arm's time is simulated (no
    pacing, every tick one period). `watchdog_s`: the longest a tick may take beyond what the runner may wait
    for a chunk by design (None: no watchdog)."""

    def __init__(self, robot, runner, *, fps: float, lockstep: bool, watchdog_s: float | None = 10.0,
                 hand_off: HandOff | None = None):
        self.robot = robot
        self.runner = runner
        self.fps = fps
        self.period_s = 1.0 / fps
        self.lockstep = lockstep
        self.pacer = LockstepPacer(self.period_s) if lockstep else WallPacer(self.period_s)
        self.watchdog_s = watchdog_s
        self.hand_off = hand_off or HandOff()
        self.probe = RunnerProbe(runner)

    def _tick_limit_s(self) -> float:
        """A runner whose clock waits for chunks (lockstep, sync) may legitimately hold a tick up to its
        inference deadline; on top of that a tick gets `watchdog_s`."""
        clock = getattr(self.runner, "clock", None)
        deadline = getattr(self.runner, "deadline_s", None)
        waits = clock is not None and getattr(clock, "name", "wall") != "wall" and deadline is not None
        return self.watchdog_s + (deadline() if waits else 0.0)

    def run_episode(self, instruction: str, max_ticks: int, *, before_tick: Callable[[int], None] | None = None,
                    until: Callable[[], bool] | None = None, on_tick: TickCallback | None = None) -> EpisodeRun:
        """Up to `max_ticks` ticks of `instruction`; `until()` (after each tick) ends the episode early."""
        self.runner.reset(instruction)
        self.probe.start_episode()
        self.hand_off.new_episode()
        names = list(self.robot.action_features)
        trace = EpisodeTrace(joint_names=names)
        interventions_before = self.hand_off.interventions
        error = None
        score, latency_s = float("nan"), float("nan")
        self.pacer.start()
        watchdog = LoopWatchdog(self.robot, self._tick_limit_s) if self.watchdog_s is not None else None
        tick = 0
        sent: dict | None = None
        paused = False
        try:
            if watchdog is not None:
                watchdog.__enter__()
            while tick < max_ticks:
                start = self.pacer.wait()
                if watchdog is not None:
                    watchdog.tick_started()
                if before_tick is not None:
                    before_tick(tick)
                try:
                    observation = self.robot.get_observation()
                except TimeoutError as exc:  # a camera's frames stopped coming: acting on an old view is blind
                    error = f"{exc}; the arm holds its last target"
                    break
                action = self.hand_off.drive(observation, sent)
                if action is not None:  # a person has the arm (or it is being handed over): the policy waits
                    if not paused:
                        self.probe.pause()
                        paused = True
                    info = TickInfo()
                else:
                    paused = False
                    try:
                        action = self.runner.act(observation)
                    except RunnerFault as fault:
                        error = str(fault)
                        hold = getattr(fault, "hold_action", None)
                        if hold is not None:
                            self.robot.send_action(hold)
                        break
                    info = self.probe.after_act()
                sent = self.robot.send_action(action)
                if info.chunk_latency_s is not None:
                    trace.chunk_latencies.append((tick, info.chunk_latency_s))
                if info.chunk_start:
                    trace.chunk_starts.append(tick)
                    latency_s = info.chunk_latency_s if info.chunk_latency_s is not None else latency_s
                    score = self.probe.chunk_score(self.probe.chunks - 1)
                    self.hand_off.observe_chunk(score, self.probe.uncertainty_threshold)
                if info.dry:
                    trace.stall_ticks.append(tick)
                trace.startup_ticks += info.startup
                trace.tick_starts_s.append(start)
                trace.requested.append(np.array([action.get(name, np.nan) for name in names], dtype=float))
                trace.targets.append(np.array([sent.get(name, np.nan) for name in names], dtype=float))
                trace.measured.append(np.array([observation.get(name, np.nan) for name in names], dtype=float))
                trace.uncertainty.append(score)
                trace.intervention.append(bool(self.hand_off.intervening))
                if on_tick is not None:
                    on_tick(tick, observation, sent, {
                        "intervention": bool(self.hand_off.intervening), "uncertainty": score,
                        "inference_latency_ms": 1000.0 * latency_s})
                if watchdog is not None:
                    watchdog.tick_finished()
                tick += 1
                if until is not None and until():
                    break
        except KeyboardInterrupt:
            if watchdog is not None and watchdog.tripped:
                raise LoopStalled(watchdog.tripped) from None
            raise
        finally:
            if watchdog is not None:
                watchdog.__exit__()
        timing = tick_timing(trace.tick_starts_s, self.fps, "lockstep" if self.lockstep else "wall")
        return EpisodeRun(ticks=tick, trace=trace, timing=timing, error=error,
                          interventions=self.hand_off.interventions - interventions_before)
