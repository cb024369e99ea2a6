"""Stock `lerobot-replay` plays a dataset recorded by `lerobot-vla record` back on the virtual SO-101."""

from __future__ import annotations

import math
import os
import subprocess

import numpy as np

from lerobot_vla_plugin.emulator.virtual_arm import VirtualSO101

from .conftest import BIN, JOINTS, REPO_ID, load_dataset, virtual_args

# Degrees on the virtual arm's calibration are the simulated joint angles; the gripper is in 0..100 instead.
ANGLE_JOINTS = [j for j in JOINTS if j != "gripper"]
TOLERANCE_DEG = 0.3  # a few servo steps (0.088° each) of rounding between the dataset and the goal register


def record_goals_at_every_tick(virtual: VirtualSO101) -> list[np.ndarray]:
    """The goal angles (degrees) the follower's servos hold at each lockstep control tick."""
    goals: list[np.ndarray] = []
    tick = virtual.arm.tick

    def recording_tick() -> None:
        goals.append(np.array([math.degrees(virtual.arm.actuators[j].goal_rad) for j in ANGLE_JOINTS]))
        tick()

    virtual.arm.tick = recording_tick
    return goals


def unmatched_actions(actions: np.ndarray, goals: list[np.ndarray]) -> list[int]:
    """Indices of recorded actions that no later goal (after the previous action's) reproduces."""
    missing, position = [], 0
    for index, action in enumerate(actions):
        match = next((k for k in range(position, len(goals)) if np.abs(goals[k] - action).max() <= TOLERANCE_DEG),
                     None)
        if match is None:
            missing.append(index)
        else:
            position = match
    return missing


def test_stock_lerobot_replay_plays_our_recording_on_the_virtual_arm(tmp_path):
    root = tmp_path / "recorded"
    record = subprocess.run([str(BIN / "lerobot-vla"), "record", *virtual_args(root, "--dataset.num_episodes=1")],
                            capture_output=True, text=True, timeout=300, check=False)
    assert record.returncode == 0, record.stdout[-3000:] + record.stderr[-3000:]
    dataset = load_dataset(root)
    names = dataset.features["action"]["names"]
    columns = [names.index(f"{j}.pos") for j in ANGLE_JOINTS]
    actions = np.stack([dataset[i]["action"].numpy()[columns] for i in range(len(dataset))])
    assert np.ptp(actions, axis=0).max() > 10 * TOLERANCE_DEG  # the episode moves: order and content matter

    home = tmp_path / "home"
    calibration = home / "calibration"
    env = {**os.environ, "HF_LEROBOT_HOME": str(home), "HF_LEROBOT_CALIBRATION": str(calibration),
           "HF_HUB_OFFLINE": "1"}
    with VirtualSO101(lockstep=True, leader=False, camera_socket=None) as virtual:
        virtual.write_calibration_file(calibration / "robots" / "vla_so101_follower" / "follower.json")
        goals = record_goals_at_every_tick(virtual)
        replay = subprocess.run(
            [str(BIN / "lerobot-replay"), "--robot.type=vla_so101_follower", f"--robot.port={virtual.follower_port}",
             "--robot.id=follower", f"--dataset.repo_id={REPO_ID}", f"--dataset.root={root}",
             "--dataset.episode=0", "--play_sounds=false"],
            capture_output=True, text=True, env=env, timeout=300, check=False)
        assert replay.returncode == 0, replay.stdout[-3000:] + replay.stderr[-3000:]
    # Every recorded action reached the servos as their goal, in the recorded order.
    assert len(goals) >= len(actions)
    assert unmatched_actions(actions, goals) == []
