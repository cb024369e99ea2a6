"""Stock `lerobot-record` with our registered arms and cameras on the virtual SO-101 served by another process."""

from __future__ import annotations

import os
import signal
import subprocess

import numpy as np

from .conftest import BIN, JOINTS, load_dataset


def test_stock_lerobot_record_with_our_arms_on_the_emulated_virtual_arm(tmp_path):
    home = tmp_path / "home"
    calibration = home / "calibration"
    env = {**os.environ, "HF_LEROBOT_HOME": str(home), "HF_LEROBOT_CALIBRATION": str(calibration),
           "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    socket_path = tmp_path / "arm.sock"
    emulator = subprocess.Popen(
        [str(BIN / "lerobot-vla"), "emulate", "--arm", "so101", "--physics", "--leader", "--lockstep",
         "--camera-socket", str(socket_path),
         "--follower-calibration", str(calibration / "robots" / "vla_so101_follower" / "follower.json"),
         "--leader-calibration", str(calibration / "teleoperators" / "vla_so101_leader" / "leader.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        follower_port = emulator.stdout.readline().strip()
        assert follower_port.startswith("/dev/"), emulator.stderr.read()
        leader_port = emulator.stdout.readline().strip().removeprefix("leader_port=")
        root = tmp_path / "stock"
        camera = (f"{{front: {{type: vla_sim_camera, camera: front, socket_path: {socket_path}, width: 64, "
                  "height: 48, fps: 30}}")
        record = subprocess.run(
            [str(BIN / "lerobot-record"), "--robot.type=vla_so101_follower", f"--robot.port={follower_port}",
             "--robot.id=follower", f"--robot.cameras={camera}",
             # Lockstep: observations reuse the tick's read, so each frame is exactly one control period.
             "--robot.observation_reuse_ms=1000",
             "--teleop.type=vla_so101_leader", f"--teleop.port={leader_port}", "--teleop.id=leader",
             "--dataset.repo_id=local/stock", f"--dataset.root={root}",
             "--dataset.single_task=put the red cube in the bowl", "--dataset.num_episodes=1",
             "--dataset.episode_time_s=1.5", "--dataset.reset_time_s=0", "--dataset.push_to_hub=false",
             "--display_data=false", "--play_sounds=false"],
            capture_output=True, text=True, env=env, timeout=300, check=False)
        assert record.returncode == 0, record.stdout[-3000:] + record.stderr[-3000:]
    finally:
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(timeout=30)

    dataset = load_dataset(root, "local/stock")
    assert dataset.num_episodes == 1 and dataset.fps == 30 and len(dataset) >= 10
    assert dataset.meta.robot_type == "vla_so101_follower"
    assert dataset.meta.features["observation.state"]["names"] == [f"{j}.pos" for j in JOINTS]
    assert tuple(dataset.meta.features["observation.images.front"]["shape"]) == (48, 64, 3)
    assert dataset[0]["task"] == "put the red cube in the bowl"
    assert tuple(dataset[len(dataset) - 1]["observation.images.front"].shape) == (3, 48, 64)
    actions = np.stack([np.asarray(a) for a in dataset.hf_dataset["action"]])
    assert np.all(np.isfinite(actions))
