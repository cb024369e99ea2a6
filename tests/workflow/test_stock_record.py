"""Stock `lerobot-record` with our registered arms and cameras on the virtual SO-101 served by another process:
each episode it records is a new scene and a new scripted demonstration, and the emulator reports its outcome."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import numpy as np

from .conftest import BIN, JOINTS, load_dataset, start_virtual_arm, stock_env

EPISODES = 3
# Saving a 1 s episode from two 64x48 cameras takes lerobot-record about 0.3 s, no servo touched meanwhile, while
# frames come every 33 ms; a real recording's save takes seconds (the default pause is 0.5 s).
EPISODE_PAUSE_S = "0.15"


def test_stock_lerobot_record_with_our_arms_on_the_emulated_virtual_arm(tmp_path):
    env = stock_env(tmp_path)
    calibration = Path(env["HF_LEROBOT_CALIBRATION"])
    socket_path = tmp_path / "arm.sock"
    episodes_file = tmp_path / "episodes.jsonl"
    emulator, follower_port, leader_port = start_virtual_arm(
        env, "--camera-socket", str(socket_path), "--episode-seed", "3", "--episode-pause-s", EPISODE_PAUSE_S,
        "--episodes-file", str(episodes_file),
        "--follower-calibration", str(calibration / "robots" / "vla_so101_follower" / "follower.json"),
        "--leader-calibration", str(calibration / "teleoperators" / "vla_so101_leader" / "leader.json"))
    try:
        root = tmp_path / "stock"
        cameras = ", ".join(f"{name}: {{type: vla_sim_camera, camera: {name}, socket_path: {socket_path}, "
                            "width: 64, height: 48, fps: 30}" for name in ("front", "wrist"))
        record = subprocess.run(
            [str(BIN / "lerobot-record"), "--robot.type=vla_so101_follower", f"--robot.port={follower_port}",
             "--robot.id=follower", f"--robot.cameras={{{cameras}}}",
             # Lockstep: observations reuse the tick's read, so each frame is exactly one control period.
             "--robot.observation_reuse_ms=1000",
             "--teleop.type=vla_so101_leader", f"--teleop.port={leader_port}", "--teleop.id=leader",
             "--dataset.repo_id=local/stock", f"--dataset.root={root}",
             "--dataset.single_task=put the red cube in the bowl", f"--dataset.num_episodes={EPISODES}",
             "--dataset.episode_time_s=1", "--dataset.reset_time_s=0", "--dataset.push_to_hub=false",
             "--display_data=false", "--play_sounds=false"],
            capture_output=True, text=True, env=env, timeout=300, check=False)
        assert record.returncode == 0, record.stdout[-3000:] + record.stderr[-3000:]
    finally:
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(timeout=30)
    log = emulator.stderr.read()

    dataset = load_dataset(root, "local/stock")
    assert dataset.num_episodes == EPISODES and dataset.fps == 30 and len(dataset) >= 10 * EPISODES
    assert dataset.meta.robot_type == "vla_so101_follower"
    assert dataset.meta.features["observation.state"]["names"] == [f"{j}.pos" for j in JOINTS]
    assert tuple(dataset.meta.features["observation.images.front"]["shape"]) == (48, 64, 3)
    assert dataset[0]["task"] == "put the red cube in the bowl"
    assert tuple(dataset[len(dataset) - 1]["observation.images.front"].shape) == (3, 48, 64)
    actions = np.stack([np.asarray(a) for a in dataset.hf_dataset["action"]])
    states = np.stack([np.asarray(s) for s in dataset.hf_dataset["observation.state"]])
    assert np.all(np.isfinite(actions))
    episode_of = np.asarray(dataset.hf_dataset["episode_index"])
    per_episode = [(actions[episode_of == e], states[episode_of == e]) for e in range(EPISODES)]
    for episode_actions, episode_states in per_episode:  # every episode is a demonstration that moves the arm
        assert np.abs(episode_actions - episode_actions[0]).max() > 5.0
        assert np.abs(episode_states - episode_states[0]).max() > 5.0
    for (a, _), (b, _) in zip(per_episode, per_episode[1:]):  # each its own: new scene, new demonstration
        n = min(len(a), len(b))
        assert np.abs(a[:n] - b[:n]).max() > 2.0

    # One outcome per recorded episode, each on its own seeded scene, in the JSON-lines file and on the console.
    results = [json.loads(line) for line in episodes_file.read_text().splitlines()]
    assert [(r["episode"], r["scene_seed"], r["task"]) for r in results] == [(e, 3 + e, "red") for e in range(3)], log
    assert all(isinstance(r["success"], bool) and r["ticks"] >= 10 for r in results)
    assert all(r["success"] or r["failure_mode"] == "never_grasped" for r in results)  # 1 s: not yet grasped
    assert f"outcomes are appended to {episodes_file}" in log
    assert "episode 2: 'put the red cube in the bowl', scene seed 5: failure (never_grasped)" in log
