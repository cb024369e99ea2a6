"""Stock `lerobot-replay` plays a dataset recorded by `lerobot-vla record` back on the virtual SO-101."""

from __future__ import annotations

import os
import signal
import subprocess

from lerobot_vla_plugin.sim.remote import RemoteVirtualArm

from .conftest import BIN, REPO_ID, load_dataset, virtual_args


def test_stock_lerobot_replay_plays_our_recording_on_the_virtual_arm(tmp_path):
    root = tmp_path / "recorded"
    record = subprocess.run([str(BIN / "lerobot-vla"), "record", *virtual_args(root, "--dataset.num_episodes=1")],
                            capture_output=True, text=True, timeout=300, check=False)
    assert record.returncode == 0, record.stdout[-3000:] + record.stderr[-3000:]
    frames = len(load_dataset(root))

    home = tmp_path / "home"
    calibration = home / "calibration"
    env = {**os.environ, "HF_LEROBOT_HOME": str(home), "HF_LEROBOT_CALIBRATION": str(calibration),
           "HF_HUB_OFFLINE": "1"}
    socket_path = tmp_path / "arm.sock"
    emulator = subprocess.Popen(
        [str(BIN / "lerobot-vla"), "emulate", "--arm", "so101", "--physics", "--lockstep",
         "--camera-socket", str(socket_path),
         "--follower-calibration", str(calibration / "robots" / "vla_so101_follower" / "follower.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        follower_port = emulator.stdout.readline().strip()
        assert follower_port.startswith("/dev/"), emulator.stderr.read()
        replay = subprocess.run(
            [str(BIN / "lerobot-replay"), "--robot.type=vla_so101_follower", f"--robot.port={follower_port}",
             "--robot.id=follower", f"--dataset.repo_id={REPO_ID}", f"--dataset.root={root}",
             "--dataset.episode=0", "--play_sounds=false"],
            capture_output=True, text=True, env=env, timeout=300, check=False)
        assert replay.returncode == 0, replay.stdout[-3000:] + replay.stderr[-3000:]
        # Lockstep: the simulated arm advanced one control period per replayed action (one tick per action).
        sim_time_s = RemoteVirtualArm(str(socket_path)).status()["sim_time_s"]
        assert sim_time_s >= 0.9 * frames / 30
    finally:
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(timeout=30)
