"""Lockstep time: one control period per follower Present_Position sync read, whatever the host's speed."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
from virtual_teleop import connect_follower

from lerobot_vla_plugin.emulator.virtual_arm import VirtualSO101

N_TICKS = 40


def run_commands(*, jitter: bool) -> tuple[list[dict[str, int]], np.ndarray, float]:
    """Drive the same goal sequence; with `jitter`, the host is slow and uneven and adds non-tick traffic."""
    pause = random.Random(7)
    with VirtualSO101(lockstep=True, leader=False, camera_socket=None, seed=3) as virtual:
        bus = connect_follower(virtual.follower_port, virtual.calibration())
        start_s = virtual.sim.time_s
        raw_positions = []
        for k in range(N_TICKS):
            goal = {"shoulder_pan": 30 * np.sin(k / 6), "shoulder_lift": -40 + 20 * np.cos(k / 9),
                    "elbow_flex": 20 * np.sin(k / 5), "wrist_flex": 10.0, "wrist_roll": 0.0,
                    "gripper": 20 + 2 * k}
            bus.sync_write("Goal_Position", goal)
            if jitter:
                time.sleep(pause.uniform(0.0, 0.02))
                bus.read_health()  # monitoring traffic is not a control tick
                bus.read("Present_Temperature", "gripper")
            raw_positions.append(bus.sync_read("Present_Position", normalize=False))
        elapsed_sim_s = virtual.sim.time_s - start_s
        state = virtual.sim.joint_positions()
        bus.disconnect()
    return raw_positions, state, elapsed_sim_s


def test_same_commands_give_the_same_trajectory_regardless_of_host_speed():
    fast_positions, fast_state, fast_elapsed = run_commands(jitter=False)
    slow_positions, slow_state, slow_elapsed = run_commands(jitter=True)
    assert fast_positions == slow_positions
    np.testing.assert_array_equal(fast_state, slow_state)
    # Exactly one period per tick, to within the physics substep (2 ms) that time is integrated in.
    assert fast_elapsed == pytest.approx(N_TICKS / 30, abs=0.002) and slow_elapsed == fast_elapsed
    # The commands really moved the arm (the trajectory is not trivially constant).
    pan = [p["shoulder_pan"] for p in fast_positions]
    assert max(pan) - min(pan) > 300


def test_wall_clock_mode_runs_physics_with_real_time():
    with VirtualSO101(lockstep=False, leader=False, camera_socket=None) as virtual:
        bus = connect_follower(virtual.follower_port, virtual.calibration())
        before_s = virtual.sim.time_s
        bus.sync_write("Goal_Position", {"shoulder_pan": 20.0})
        time.sleep(0.5)  # no bus traffic meanwhile: physics catches up on the next transaction
        position = bus.sync_read("Present_Position")["shoulder_pan"]
        # Physics advances in whole substeps; the remainder of one carries over to the next transaction.
        assert virtual.sim.time_s - before_s >= 0.5 - virtual.sim.model.opt.timestep
        assert position == pytest.approx(20.0, abs=1.0)
        bus.disconnect()
