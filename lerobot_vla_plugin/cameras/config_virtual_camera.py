"""Config of the `vla_sim_camera` camera type: a view of the virtual SO-101's MuJoCo scene.

Config only (registered with draccus on import); the camera class lives in `virtual_camera.py` and
loads MuJoCo only when a camera is used in the process that runs the simulation.

    --robot.cameras='{front: {type: vla_sim_camera, camera: front, socket_path: /tmp/.../so101-123.sock,
                      width: 640, height: 480, fps: 30}}'

Leave `socket_path` empty to use the virtual arm running in the same process.
"""

from __future__ import annotations

from dataclasses import dataclass

from lerobot.cameras.configs import CameraConfig

__all__ = ["VirtualCameraConfig"]


@CameraConfig.register_subclass("vla_sim_camera")
@dataclass
class VirtualCameraConfig(CameraConfig):
    camera: str = "front"  # a camera of the scene: "front" or "wrist"
    socket_path: str | None = None  # printed by `lerobot-vla emulate --physics`; None = in-process arm
    fps: int | None = 30  # frames per second the camera is read at
    width: int | None = 640  # image width in pixels
    height: int | None = 480  # image height in pixels
    timeout_ms: float = 10_000.0  # a frame is rendered on request; slow software OpenGL needs headroom

    def __post_init__(self) -> None:
        if not self.camera:
            raise ValueError("`camera` cannot be empty; use 'front' or 'wrist'")
        for name in ("fps", "width", "height"):
            value = getattr(self, name)
            if value is None or int(value) <= 0:
                raise ValueError(f"`{name}` must be a positive integer for a virtual camera, got {value!r}")
        if self.timeout_ms <= 0:
            raise ValueError(f"`timeout_ms` must be positive, got {self.timeout_ms}")
        if self.socket_path == "":
            self.socket_path = None
