"""The delay estimate and the action queue, on their own: what a new chunk replaces and how it joins."""

from __future__ import annotations

import numpy as np
import pytest

from lerobot_vla_plugin.rollout.action_queue import ActionQueue
from lerobot_vla_plugin.rollout.latency import DelayEstimator, latency_to_ticks

PERIOD = 1 / 30


def test_latency_converts_to_whole_ticks_rounding_up():
    assert latency_to_ticks(0.0, PERIOD) == 0
    assert latency_to_ticks(0.010, PERIOD) == 1
    assert latency_to_ticks(2 * PERIOD, PERIOD) == 2
    assert latency_to_ticks(0.101, PERIOD) == 4


def test_delay_follows_recent_latency_after_a_warm_up_spike():
    estimator = DelayEstimator(PERIOD, window=10, percentile=90, initial_delay_ticks=5)
    assert estimator.delay_ticks() == 5 and estimator.latency_s() is None  # the guess, before any measurement
    estimator.record(1.0)  # warm-up: 30 ticks
    assert estimator.delay_ticks() == 30
    for _ in range(9):
        estimator.record(0.02)
    # Still in the window, the spike no longer decides the estimate as a running maximum would (30 ticks).
    assert estimator.delay_ticks() < 30
    assert estimator.latency_s() == pytest.approx(0.9 * 0.02 + 0.1 * 1.0)
    estimator.record(0.02)  # the spike leaves the window
    assert estimator.delay_ticks() == 1
    assert estimator.latency_s(50) == pytest.approx(0.02)
    assert len(estimator.all_latencies_s) == 11


def test_the_first_chunk_runs_from_its_start():
    queue = ActionQueue(crossfade_steps=4)
    assert queue.pop() is None and queue.held  # nothing to hold yet
    chunk = np.arange(8)[:, None] * np.ones((1, 6))
    assert queue.merge(chunk, executed_since_request=0, crossfade=True) == 0
    np.testing.assert_array_equal(queue.pop(), chunk[0])
    assert queue.chunk_start and not queue.held


def test_merge_drops_exactly_the_actions_executed_since_the_request():
    queue = ActionQueue(crossfade_steps=0)
    queue.merge(np.arange(10.0)[:, None], executed_since_request=0, crossfade=False)
    executed_at_request = queue.executed
    popped = [queue.pop()[0] for _ in range(3)]
    assert popped == [0, 1, 2]
    new = 100 + np.arange(10.0)[:, None]
    assert queue.merge(new, executed_since_request=queue.executed - executed_at_request, crossfade=False) == 3
    assert queue.remaining() == 7
    assert [queue.pop()[0] for _ in range(7)] == list(range(103, 110))


def test_crossfade_bounds_the_step_at_a_boundary_and_rtc_chunks_join_unchanged():
    steps = 4
    for crossfade, largest_step in ((True, 10 / (steps + 1)), (False, 10.0)):
        queue = ActionQueue(crossfade_steps=steps)
        queue.merge(np.zeros((8, 6)), executed_since_request=0, crossfade=crossfade)
        sent = [queue.pop() for _ in range(2)]
        queue.merge(np.full((8, 6), 10.0), executed_since_request=2, crossfade=crossfade)
        sent += [queue.pop() for _ in range(6)]
        jumps = np.abs(np.diff(np.stack(sent), axis=0)).max(axis=1)
        assert jumps.max() == pytest.approx(largest_step)
        assert sent[-1][0] == 10.0  # the crossfade ends on the new chunk


def test_a_dry_queue_holds_the_last_target_and_crossfades_from_it():
    queue = ActionQueue(crossfade_steps=3)
    queue.merge(np.array([[1.0], [2.0]]), executed_since_request=0, crossfade=True)
    assert [queue.pop()[0] for _ in range(2)] == [1.0, 2.0]
    held = [queue.pop()[0] for _ in range(3)]
    assert held == [2.0, 2.0, 2.0] and queue.held and queue.executed == 2
    # Held ticks did not move the arm along the plan: nothing of the new chunk is dropped for them.
    assert queue.merge(np.full((5, 1), 6.0), executed_since_request=0, crossfade=True) == 0
    assert [queue.pop()[0] for _ in range(5)] == pytest.approx([3.0, 4.0, 5.0, 6.0, 6.0])


def test_a_non_finite_chunk_never_joins_the_queue():
    queue = ActionQueue()
    queue.merge(np.zeros((3, 2)), executed_since_request=0, crossfade=False)
    with pytest.raises(ValueError, match="non-finite"):
        queue.merge(np.array([[0.0, np.nan]] * 3), executed_since_request=0, crossfade=False)
    assert queue.remaining() == 3 and np.isfinite(queue.pop()).all()


def test_inference_leaves_one_core_to_the_control_loop_unless_omp_num_threads_says_otherwise(monkeypatch):
    """torch's default (every core) oversubscribes a small CPU the loop, bus and cameras share; OMP_NUM_THREADS,
    the variable users already know for this, wins."""
    from lerobot_vla_plugin.rollout.loaded_policy import inference_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert [inference_threads(cores) for cores in (1, 2, 8)] == [1, 1, 7]
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert inference_threads(2) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "")
    assert inference_threads(4) == 3
