"""The virtual SO-101 under commands that do not know about it: a pause in control traffic ends an episode (its
outcome reported, the next scene and demonstration set up), and LeRobot's calibration flow finds joints that move."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from virtual_teleop import MinimalTeleop, so101_motors

from lerobot_vla_plugin.emulator.episode_cycle import EpisodeCycle
from lerobot_vla_plugin.emulator.virtual_arm import VirtualSO101
from lerobot_vla_plugin.motors.feetech.bus import FeetechBus
from lerobot_vla_plugin.sim.scene_seeds import EVALUATION_SEED_START

PAUSE_S = 0.3


def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_each_paused_episode_is_reported_and_the_next_starts_a_new_scene_and_demonstration(tmp_path):
    results = tmp_path / "episodes.jsonl"
    said = []
    with VirtualSO101(lockstep=True, camera_socket=None) as virtual:
        cycle = EpisodeCycle(virtual, pause_s=PAUSE_S, seed=5, results_path=results, say=said.append).start()
        teleop = MinimalTeleop(virtual)
        layouts, actions = [], []
        for _ in range(2):
            layouts.append(virtual.sim.object_positions()["bowl"])
            episode = [teleop.step()[0] for _ in range(25)]
            actions.append(np.array([list(a.values()) for a in episode]))
            # The command saves its episode: meanwhile the outcome is reported and the next scene planned.
            wait_for(lambda: results.exists() and len(results.read_text().splitlines()) == len(actions))
            wait_for(lambda: virtual.operator is not None
                     and not np.allclose(virtual.sim.object_positions()["bowl"], layouts[-1]))
        teleop.disconnect()
        cycle.stop()

    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(r["episode"], r["scene_seed"], r["task"]) for r in lines] == [(0, 5, "red"), (1, 6, "red")]
    assert all(r["success"] is False and r["failure_mode"] == "never_grasped" and r["ticks"] >= 25 for r in lines), lines
    assert said[0].startswith("episode 0: 'put the red cube in the bowl', scene seed 5: failure (never_grasped)")
    assert not np.allclose(layouts[0], layouts[1])  # a new scene
    for episode in actions:  # each starts its own demonstration from the rest pose, and moves
        assert np.abs(episode[-1] - episode[0]).max() > 5.0
    np.testing.assert_allclose(actions[0][0], actions[1][0], atol=1.0)


def test_connect_traffic_alone_is_no_episode_and_evaluation_scenes_come_from_their_range(tmp_path):
    results = tmp_path / "episodes.jsonl"
    with VirtualSO101(lockstep=True, leader=False, camera_socket=None) as virtual:
        cycle = EpisodeCycle(virtual, pause_s=PAUSE_S, scenes="evaluation", results_path=results,
                             say=lambda text: None).start()
        bus = FeetechBus(virtual.follower_port, so101_motors(), virtual.calibration())
        bus.connect()
        bus.sync_write("Goal_Position", bus.sync_read("Present_Position"))  # goal := present, before torque on
        time.sleep(PAUSE_S + 0.2)
        assert not results.exists() and cycle.episode == 0
        for _ in range(3):  # a control loop's frames
            bus.sync_write_read("Goal_Position", bus.sync_read("Present_Position"))
        bus.disconnect()
        cycle.stop()  # an episode still open when the emulator stops is reported
    (line,) = results.read_text().splitlines()
    assert json.loads(line)["scene_seed"] == EVALUATION_SEED_START


def test_the_episode_pause_must_be_longer_than_a_control_period(tmp_path):
    with VirtualSO101(lockstep=True, leader=False, camera_socket=None, control_hz=5) as virtual:
        with pytest.raises(ValueError, match="longer than one control period"):
            EpisodeCycle(virtual, pause_s=0.1, results_path=tmp_path / "x.jsonl")


def test_lerobot_calibration_flow_records_each_joints_range_on_the_virtual_leader():
    """The leader's shafts follow the hand exactly; the follower's physics joints are covered by stock
    lerobot-calibrate (tests/workflow/test_stock_calibrate.py)."""
    role = "leader"
    said = []
    with VirtualSO101(lockstep=True, camera_socket=None, say=said.append) as virtual:
        bus = FeetechBus(virtual.leader_port, so101_motors())
        bus.connect()
        bus.disable_torque()
        # LeRobot's flow: the person puts the arm at mid-range and presses ENTER; homing; ranges while they move it.
        homings = bus.set_half_turn_homings()
        middle = bus.sync_read("Present_Position", normalize=False)
        assert all(abs(steps - 2047) <= 3 for steps in middle.values()), middle
        assert virtual.calibrating and "every joint" not in " ".join(said)
        swept = [m for m in bus.motors if m != "wrist_roll"]
        seen = []
        deadline = time.monotonic() + virtual.calibration_hands[role].sweep.duration_s + 0.3
        while time.monotonic() < deadline:
            seen.append(bus.sync_read("Present_Position", swept, normalize=False))
            time.sleep(0.005)
        assert any("every joint has been through its range" in text for text in said)
        expected = virtual.calibration(role)
        for motor in swept:
            low, high = min(s[motor] for s in seen), max(s[motor] for s in seen)
            full = expected[motor].range_max - expected[motor].range_min
            assert high - low > 0.85 * full, (motor, low, high, full)
        assert all(abs(homings[m] - c.homing_offset) <= 3 for m, c in expected.items()), homings
        bus.write("Min_Position_Limit", "shoulder_pan", 1000, normalize=False)  # LeRobot writes the calibration
        assert not virtual.calibrating
        bus.disconnect()
