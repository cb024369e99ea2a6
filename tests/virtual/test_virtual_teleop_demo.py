"""Hands-free demonstrations through the real teleop path, in-process and with the emulator in another process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lerobot.motors.motors_bus import MotorCalibration
from virtual_teleop import MinimalTeleop, connect_follower, connect_leader, record_demonstration

from lerobot_vla_plugin import cli
from lerobot_vla_plugin.cameras.config_virtual_camera import VirtualCameraConfig
from lerobot_vla_plugin.cameras.virtual_camera import VirtualCamera
from lerobot_vla_plugin.emulator.virtual_arm import VirtualSO101
from lerobot_vla_plugin.sim.remote import RemoteVirtualArm
from lerobot_vla_plugin.workflow.dataset_report import load_episode_data

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(("task", "seed"), [("red", 1), ("blue", 2)])
def test_scripted_pick_and_place_through_leader_and_follower_buses_succeeds(task, seed):
    with VirtualSO101(lockstep=True, camera_socket=None, seed=seed) as virtual:
        teleop = MinimalTeleop(virtual)
        cube = f"{task}_cube"
        highest = 0.0
        virtual.new_episode(task, seed=seed)
        assert not virtual.is_success()
        actions = []
        while not virtual.demonstration_done:
            action, _ = teleop.step()
            actions.append(action["gripper"])
            highest = max(highest, virtual.sim.object_positions()[cube][2])
        for _ in range(15):
            teleop.step()
        assert highest > 0.04  # carried over the bowl rim by a grasp, not pushed
        assert virtual.is_success()
        assert max(actions) - min(actions) > 30  # the leader's gripper really opened and closed
        # The follower's gripper never tripped its overload protection while squeezing the cube.
        assert teleop.follower.status_errors == {}
        teleop.disconnect()


def test_episodes_reset_the_scene_and_vary_the_demonstration():
    with VirtualSO101(lockstep=True, camera_socket=None, seed=4) as virtual:
        teleop = MinimalTeleop(virtual)
        succeeded, first = record_demonstration(virtual, teleop, task="red", seed=4)
        layout = virtual.sim.object_positions()["blue_cube"].copy()
        succeeded_again, second = record_demonstration(virtual, teleop, task="red", seed=5)
        assert succeeded and succeeded_again
        assert np.linalg.norm(virtual.sim.object_positions()["blue_cube"] - layout) > 1e-3  # re-randomized
        assert len(first) != len(second)  # different timing, not one fixed path
        teleop.disconnect()


def test_recorded_scripted_demonstrations_pass_the_dataset_report(tmp_path, capsys):
    """Whole demonstrations through `lerobot-vla record`: the quality gate that guards training accepts them."""
    root = tmp_path / "demo"
    assert cli.main(["record", "--virtual", "so101", "--dataset.repo_id=local/demo", f"--dataset.root={root}",
                     "--dataset.num_episodes=2", "--dataset.video=false", "--virtual_cameras=front",
                     "--camera_width=32", "--camera_height=24", "--keyboard=none", "--report=false"]) == 0
    capsys.readouterr()
    assert cli.main(["dataset-report", str(root), "--strict"]) == 0
    out = capsys.readouterr().out
    assert "[FAIL]" not in out and "all blocking checks passed" in out, out
    episodes, _, names = load_episode_data(root)
    assert min(e.length for e in episodes) > 200  # whole pick-and-place demonstrations, not a clip
    grippers = [e.actions[:, names.index("gripper.pos")] for e in episodes]
    span = np.ptp(np.concatenate(grippers))
    # A hand's open and close, well inside the report's jump limits: under 30% of the range in any 0.1 s.
    # (Three frames, so a frame read a tick late, which happens on a loaded machine, does not count twice.)
    assert max(np.abs(g[3:] - g[:-3]).max() for g in grippers) < 0.3 * span


def test_emulate_physics_serves_follower_leader_and_cameras_to_another_process(tmp_path):
    info_file, follower_json = tmp_path / "info.json", tmp_path / "calibration" / "follower.json"
    leader_json = tmp_path / "calibration" / "leader.json"
    proc = subprocess.Popen(
        [str(BIN / "lerobot-vla"), "emulate", "--arm", "so101", "--physics", "--leader", "--lockstep",
         "--info-file", str(info_file), "--follower-calibration", str(follower_json),
         "--leader-calibration", str(leader_json), "--camera-socket", str(tmp_path / "arm.sock")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        follower_port = proc.stdout.readline().strip()
        assert follower_port.startswith("/dev/"), proc.stderr.read()
        leader_port = proc.stdout.readline().strip().removeprefix("leader_port=")
        socket_path = proc.stdout.readline().strip().removeprefix("camera_socket=")
        info = json.loads(info_file.read_text())
        assert info == {**info, "follower_port": follower_port, "leader_port": leader_port,
                        "camera_socket": socket_path, "lockstep": True}

        def load(path: Path) -> dict[str, MotorCalibration]:
            return {name: MotorCalibration(**values) for name, values in json.loads(path.read_text()).items()}

        leader = connect_leader(leader_port, load(leader_json))
        follower = connect_follower(follower_port, load(follower_json))
        assert follower.is_calibrated and leader.is_calibrated
        camera = VirtualCamera(VirtualCameraConfig(camera="wrist", socket_path=socket_path, width=96, height=72))
        camera.connect()
        with RemoteVirtualArm(socket_path) as client:
            start = client.status()["sim_time_s"]
            for _ in range(10):
                follower.sync_write_read("Goal_Position", leader.sync_read("Present_Position"))
                assert camera.read_latest().shape == (72, 96, 3)
            status = client.status()
            assert status["sim_time_s"] - start == pytest.approx(10 / 30, abs=0.002)  # one period per tick
            assert status["is_success"] is False and status["episode"] == 1
        camera.disconnect()
        follower.disconnect()
        leader.disconnect()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, proc.stderr.read()
    assert not Path(socket_path).exists()
    # (Its ptys are freed too, but another process may get the same /dev/pts number at once: not checkable.)


def test_emulate_rejects_physics_options_it_cannot_serve():
    for args, message in ((["--arm", "koch-follower", "--physics"], "simulates an SO-101"),
                          (["--arm", "so101", "--lockstep"], "need --physics")):
        result = subprocess.run([str(BIN / "lerobot-vla"), "emulate", *args], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 2 and message in result.stderr
