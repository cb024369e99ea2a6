"""The `vla_sim_camera` type: LeRobot's Camera API over the virtual scene, in-process and over the socket."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import wait_until
from lerobot.cameras.utils import make_cameras_from_configs

from lerobot_vla_plugin.cameras.config_virtual_camera import VirtualCameraConfig
from lerobot_vla_plugin.cameras.virtual_camera import VirtualCamera
from lerobot_vla_plugin.emulator.virtual_arm import VirtualSO101
from lerobot_vla_plugin.sim.remote import RemoteArmError, RemoteVirtualArm


def red_pixels(image: np.ndarray) -> int:
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return int(((r > 120) & (g < 70) & (b < 70)).sum())


def test_registered_type_builds_an_in_process_camera_with_the_requested_size():
    with VirtualSO101(lockstep=True, leader=False, camera_socket=None) as virtual:
        cameras = make_cameras_from_configs({
            "front": VirtualCameraConfig(camera="front", width=128, height=96, fps=30),
            "wrist": VirtualCameraConfig(camera="wrist", width=64, height=48, fps=30),
        })
        assert isinstance(cameras["front"], VirtualCamera)
        for camera in cameras.values():
            camera.connect()
        front = cameras["front"]
        for image in (front.read(), front.async_read(), front.read_latest()):
            assert image.shape == (96, 128, 3) and image.dtype == np.uint8
        assert red_pixels(front.read()) > 0  # the red cube is in view
        assert cameras["wrist"].read_latest().shape == (48, 64, 3)
        assert any(c["camera"] == "wrist" and c["socket_path"] is None for c in VirtualCamera.find_cameras())
        for camera in cameras.values():
            camera.disconnect()
        assert not front.is_connected


def test_socket_camera_renders_the_requested_size_and_the_same_scene():
    with VirtualSO101(lockstep=True, leader=False, camera_socket=True) as virtual:
        camera = VirtualCamera(VirtualCameraConfig(camera="front", socket_path=virtual.camera_socket,
                                                   width=160, height=120))
        camera.connect()
        remote = camera.read()
        assert remote.shape == (120, 160, 3)
        local, _ = virtual.frame("front", 160, 120)
        assert np.abs(remote.astype(int) - local.astype(int)).mean() < 1.0  # same state, same picture
        found = VirtualCamera.find_cameras()
        assert {"front", "wrist"} <= {c["camera"] for c in found if c["socket_path"] == virtual.camera_socket}
        camera.disconnect()


def test_socket_exposes_episode_control_and_task_success():
    with VirtualSO101(lockstep=True, leader=False, camera_socket=True, seed=0) as virtual:
        with RemoteVirtualArm(virtual.camera_socket) as client:
            before = virtual.sim.object_positions()["red_cube"]
            status = client.new_episode(task="blue", seed=5)
            assert status["task"] == "blue" and status["episode"] == 1 and status["is_success"] is False
            assert np.linalg.norm(virtual.sim.object_positions()["red_cube"] - before) > 1e-3
            # Put the blue cube in the bowl by hand: success is visible to the other process.
            with virtual.lock:
                sim = virtual.sim
                bowl = sim.object_positions()["bowl"]
                adr = sim.model.jnt_qposadr[sim.model.joint("blue_cube").id]
                sim.data.qpos[adr:adr + 3] = [bowl[0], bowl[1], 0.03]
                sim.step(1.0)
            assert client.status()["is_success"] is True
            with pytest.raises(RemoteArmError, match="unknown camera 'top'"):
                client.frame("top", 64, 48)


def test_socket_client_reconnects_after_a_timeout_and_never_takes_the_late_reply():
    with VirtualSO101(lockstep=True, leader=False, camera_socket=True) as virtual:
        virtual.frame("front", 64, 48)  # the renderer is up before the stall is timed
        with RemoteVirtualArm(virtual.camera_socket, timeout_s=0.5) as client:
            with virtual.lock:  # the server cannot render while the scene is held
                with pytest.raises(TimeoutError):
                    client.frame("front", 64, 48)
            client.timeout_s = 60.0  # from here on only a hang guard
            # The stalled 64x48 reply may arrive now; it must not be taken for this 160x120 request.
            image, _ = client.frame("front", 160, 120)
            assert image.shape == (120, 160, 3)
            local, _ = virtual.frame("front", 160, 120)
            assert np.abs(image.astype(int) - local.astype(int)).mean() < 1.0
            assert client.info()["lockstep"] is True


def _capture_stalled_message(camera) -> str:
    """The error of a background-capture read once no frame is pending; '' while frames still arrive."""
    try:
        camera.async_read(timeout_ms=50)
    except TimeoutError as exc:
        return str(exc)
    return ""


def test_wall_clock_socket_camera_delivers_frames_again_after_a_stall():
    with VirtualSO101(lockstep=False, leader=False, camera_socket=True) as virtual:
        virtual.frame("front", 64, 48)
        camera = VirtualCamera(VirtualCameraConfig(camera="front", socket_path=virtual.camera_socket,
                                                   width=64, height=48, fps=20, timeout_ms=500))
        camera.connect(warmup=False)
        try:
            with virtual.lock:
                wait_until(lambda: "last capture error: TimeoutError" in _capture_stalled_message(camera),
                           what="the background capture to time out")
            assert camera.async_read(timeout_ms=60_000).shape == (48, 64, 3)
        finally:
            camera.disconnect()


def test_wall_clock_camera_captures_in_the_background_at_its_fps():
    with VirtualSO101(lockstep=False, leader=False, camera_socket=None):
        camera = VirtualCamera(VirtualCameraConfig(camera="front", width=64, height=48, fps=20))
        camera.connect()
        assert camera.async_read(timeout_ms=5000).shape == (48, 64, 3)
        assert camera.read_latest(max_age_ms=5000).shape == (48, 64, 3)
        camera.disconnect()


def test_clear_errors_without_an_arm_or_with_a_wrong_camera(tmp_path):
    with pytest.raises(ConnectionError, match="lerobot-vla emulate --arm so101 --physics"):
        VirtualCamera(VirtualCameraConfig(camera="front")).connect()
    with pytest.raises(ConnectionError, match="no virtual arm is serving"):
        VirtualCamera(VirtualCameraConfig(socket_path=str(tmp_path / "none.sock"))).connect()
    with VirtualSO101(lockstep=True, leader=False, camera_socket=None):
        with pytest.raises(ValueError, match="no camera 'top'.*front"):
            VirtualCamera(VirtualCameraConfig(camera="top")).connect()
    with pytest.raises(ValueError, match="width"):
        VirtualCameraConfig(width=0)
