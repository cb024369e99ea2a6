"""AsyncPolicyRunner with tiny real policies: a loop that never waits on a slow policy, bounded failure (NaN,
a hung inference), and the lockstep clock that charges each chunk its delay in simulated ticks."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from lerobot_vla_plugin.rollout.async_runner import (
    AsyncPolicyRunner,
    InferenceTimeoutError,
    NonFiniteActionError,
)
from lerobot_vla_plugin.rollout.clock import LockstepClock, WallClock
from lerobot_vla_plugin.rollout.latency import latency_to_ticks

from .conftest import NAMES, STEP, RampPolicy, loaded, observation

PERIOD = 1 / 30


def vector(action: dict) -> np.ndarray:
    return np.array([action[name] for name in NAMES])


def test_a_slow_policy_never_blocks_a_wall_clock_loop():
    gate = threading.Event()
    policy = RampPolicy(gate=gate)
    runner = AsyncPolicyRunner(loaded(policy), period_s=PERIOD, clock=WallClock(), margin_ticks=1)
    runner.reset("move")
    # Inference cannot finish while the gate is shut: every tick still returns at once, holding the pose.
    held = [vector(runner.act(observation(0.0))) for _ in range(15)]
    assert np.array_equal(np.stack(held), np.zeros((15, 6)))
    assert runner.episodes[-1].startup_ticks == 15 and runner.episodes[-1].chunks == 0
    gate.set()
    sent = []
    while runner.episodes[-1].chunks < 1:  # the loop keeps ticking until the chunk is in
        sent.append(vector(runner.act(observation(0.0))))
        time.sleep(0.002)
    # The tick that merged the chunk executed its first action: the first chunk from its start, nothing skipped.
    assert sent[-1][0] == pytest.approx(STEP) and all(a[0] == 0.0 for a in sent[:-1])
    # Shut the gate again: the queue runs dry and the loop holds the last target, it never jumps or stops.
    gate.clear()
    for _ in range(20):
        sent.append(vector(runner.act(observation(sent[-1][0]))))
    stats = runner.episodes[-1]
    assert stats.stalls > 0
    steps = np.abs(np.diff(np.stack(sent[-stats.stalls - 1:]), axis=0))
    assert steps.max() == 0.0  # held ticks repeat the last target exactly
    gate.set()
    runner.reset("move again")  # the episode completes; the pending chunk is let finish and dropped
    assert runner.stats()["episodes"] == 2
    runner.close()


def test_lockstep_clock_charges_each_chunk_a_fixed_delay():
    policy = RampPolicy(chunk_size=8)
    runner = AsyncPolicyRunner(loaded(policy), period_s=PERIOD, clock=LockstepClock(PERIOD, delay_ticks=3),
                               margin_ticks=1)
    runner.reset("move")
    position, sent = 0.0, []
    for _ in range(40):
        action = vector(runner.act(observation(position)))
        sent.append(action)
        position = action[0]
    stats = runner.episodes[-1]
    # The first chunk came 3 ticks after its observation and ran from its start (no actions skipped).
    assert stats.startup_ticks == 3 and sent[3][0] == pytest.approx(STEP)
    assert stats.arrival_delays_ticks == [3] * stats.chunks and stats.chunks >= 6
    # Each later chunk dropped the actions executed while it was computed: 3 per chunk.
    assert stats.dropped_actions == 3 * (stats.chunks - 1)
    assert stats.stalls == 0
    # The ramp continues across chunk boundaries: every tick after the start moves by one step.
    assert np.diff(np.stack(sent[3:])[:, 0]) == pytest.approx(np.full(36, STEP))
    summary = runner.stats()
    assert summary["boundary_jerk"] == pytest.approx(0.0, abs=1e-6)
    assert summary["clock"] == "lockstep" and summary["fixed_delay_ticks"] == 3 and not summary["rtc"]
    runner.close()


def test_n_action_steps_shorter_than_the_chunk_sends_an_observation_every_n_action_steps_ticks():
    """As LeRobot's select_action runs n_action_steps of each chunk, the runner asks for the next chunk that many
    ticks after the running chunk's observation; the delay is still charged, and the ramp never breaks."""

    def run(policy: RampPolicy) -> list[np.ndarray]:
        runner = AsyncPolicyRunner(loaded(policy), period_s=PERIOD, clock=LockstepClock(PERIOD, delay_ticks=2),
                                   margin_ticks=1)
        runner.reset("move")
        position, sent = 0.0, []
        for _ in range(40):
            sent.append(vector(runner.act(observation(position))))
            position = sent[-1][0]
        assert runner.episodes[-1].stalls == 0
        runner.close()
        return sent

    replanning = RampPolicy(chunk_size=16, n_action_steps=6)
    sent = run(replanning)
    observed = np.array([call["state"] for call in replanning.calls])
    # Requests at ticks 0, 8, 14, 20, ...: after the first chunk's start-up, one observation every 6 ticks.
    assert np.diff(observed[1:]) == pytest.approx(np.full(len(observed) - 2, 6 * STEP))
    assert len(observed) >= 6  # ticks 0 to 32 at least (the request of tick 38 may still be in its thread)
    assert np.diff(np.stack(sent[2:])[:, 0]) == pytest.approx(np.full(37, STEP))
    whole_chunks = RampPolicy(chunk_size=16)  # no n_action_steps: a chunk runs until the queue is nearly dry
    run(whole_chunks)
    observed = [call["state"] for call in whole_chunks.calls]
    assert len(observed) >= 3 and observed[2] - observed[1] == pytest.approx((16 - 2 - 1) * STEP)  # chunk-delay-margin


def test_lockstep_clock_with_a_measured_delay_charges_the_latency_in_ticks():
    class SleepyRamp(RampPolicy):
        def predict_action_chunk(self, batch, **kwargs):
            time.sleep(0.08)  # about 2.4 periods
            return super().predict_action_chunk(batch, **kwargs)

    runner = AsyncPolicyRunner(loaded(SleepyRamp()), period_s=PERIOD, clock=LockstepClock(PERIOD), margin_ticks=1)
    runner.reset("move")
    position = 0.0
    for _ in range(20):
        position = vector(runner.act(observation(position)))[0]
    stats = runner.episodes[-1]
    latencies = runner.estimator.all_latencies_s
    assert stats.chunks >= 2 and len(latencies) == stats.chunks
    for delay, latency in zip(stats.arrival_delays_ticks, latencies):
        # Joined on the first tick at or after its latency; one tick later at most if the thread signalled
        # just after that tick's instant.
        assert latency_to_ticks(latency, PERIOD) <= delay <= latency_to_ticks(latency, PERIOD) + 1
    runner.close()


def test_an_rtc_policy_is_given_the_leftover_and_the_delay():
    policy = RampPolicy(chunk_size=8, rtc=True)
    runner = AsyncPolicyRunner(loaded(policy), period_s=PERIOD, clock=LockstepClock(PERIOD, delay_ticks=2),
                               margin_ticks=1)
    runner.reset("move")
    position = 0.0
    for _ in range(12):
        position = vector(runner.act(observation(position)))[0]
    first, second = policy.calls[0], policy.calls[1]
    assert first["leftover"] is None  # nothing to continue at the start of an episode
    assert second["inference_delay"] == 2 and second["leftover"].shape == (1, 3, 6)
    assert runner.stats()["rtc"] is True
    runner.close()


def test_non_finite_actions_end_in_a_hold_and_a_clear_error():
    policy = RampPolicy(chunk_size=8, nan_from_chunk=2)
    runner = AsyncPolicyRunner(loaded(policy), period_s=PERIOD, clock=LockstepClock(PERIOD, delay_ticks=1))
    runner.reset("move")
    sent, position = [], 0.0
    with pytest.raises(NonFiniteActionError, match="non-finite") as caught:
        for _ in range(40):
            sent.append(vector(runner.act(observation(position))))
            position = sent[-1][0]
    assert np.isfinite(np.stack(sent)).all()  # no NaN left the runner
    assert np.array_equal(vector(caught.value.hold_action), sent[-1])  # hold the last target
    with pytest.raises(NonFiniteActionError):  # the episode stays stopped until the next reset
        runner.act(observation(position))
    runner.close()


def test_a_hung_policy_trips_the_watchdog():
    gate = threading.Event()
    runner = AsyncPolicyRunner(loaded(RampPolicy(gate=gate)), period_s=PERIOD,
                               clock=LockstepClock(PERIOD, delay_ticks=2), min_deadline_s=0.2, first_deadline_s=0.2)
    try:
        runner.reset("move")
        runner.act(observation(0.0))
        runner.act(observation(0.0))
        with pytest.raises(InferenceTimeoutError, match="has not arrived"):
            runner.act(observation(0.0))  # tick 2: the chunk is due, the loop waits up to the deadline
    finally:
        gate.set()
        runner.close()


@pytest.mark.parametrize(("merge", "rtc", "crossfade_steps"),
                         [("auto", True, 4), ("rtc", True, 4), ("blend", False, 4), ("naive", False, 0)])
def test_the_chunk_merge_is_selectable(merge, rtc, crossfade_steps):
    from lerobot_vla_plugin.rollout.runners import build_runner

    runner = build_runner(loaded(RampPolicy(rtc=True)), inference="async", period_s=PERIOD, lockstep=True,
                          delay_ticks=1, score_uncertainty=False, merge=merge)
    assert (runner.use_rtc, runner.queue.crossfade_steps) == (rtc, crossfade_steps)
    with pytest.raises(ValueError, match="does not support real-time chunking"):
        build_runner(loaded(RampPolicy(rtc=False)), inference="async", period_s=PERIOD, lockstep=True, merge="rtc")
