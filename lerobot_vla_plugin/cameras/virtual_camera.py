"""`vla_sim_camera`: LeRobot's Camera API over the virtual SO-101's rendered scene.

Two sources, same behaviour: the virtual arm running in this process (`socket_path` unset), or one running
in another process (`lerobot-vla emulate --physics`) reached through the unix socket it prints.

Timing follows the arm's clock mode:

- lockstep: every read renders the scene as it is at the current control tick, so `read`, `async_read`
  and `read_latest` all return the frame of *this* tick (a recorded frame always matches its state);
- wall clock: a capture thread renders at `fps` like a real camera; `async_read` waits for the next
  frame and `read_latest` returns the newest one, `read` renders a fresh one.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import numpy as np
from lerobot.cameras.camera import Camera
from lerobot.utils.errors import DeviceAlreadyConnectedError, DeviceNotConnectedError

from lerobot_vla_plugin.sim.remote import RemoteVirtualArm, discover_sockets

from .config_virtual_camera import VirtualCameraConfig

__all__ = ["VirtualCamera", "VirtualCameraConfig"]


def _in_process_arm():
    """The virtual arm started in this process, if any; never imports MuJoCo by itself."""
    module = sys.modules.get("lerobot_vla_plugin.emulator.virtual_arm")
    return module.active_virtual_arm() if module is not None else None


class VirtualCamera(Camera):
    def __init__(self, config: VirtualCameraConfig):
        super().__init__(config)
        self.config = config
        self.camera = config.camera
        self._source = None
        self._owns_source = False
        self.lockstep = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._frame_lock = threading.Lock()
        self._new_frame = threading.Event()
        self._latest: np.ndarray | None = None
        self._latest_at: float | None = None
        self._capture_error: BaseException | None = None

    def __str__(self) -> str:
        where = self.config.socket_path or "in-process arm"
        return f"{self.__class__.__name__}({self.camera} @ {where})"

    @property
    def is_connected(self) -> bool:
        return self._source is not None

    @staticmethod
    def find_cameras() -> list[dict[str, Any]]:
        """Cameras of virtual arms in this process and of running emulators (sockets in the discovery dir)."""
        found: list[dict[str, Any]] = []
        arm = _in_process_arm()
        if arm is not None:
            for camera in arm.info()["cameras"]:
                found.append({"name": f"virtual SO-101 {camera} (in-process)", "type": "vla_sim_camera",
                              "id": f"in-process:{camera}", "camera": camera, "socket_path": None})
        for path in discover_sockets():
            try:
                with RemoteVirtualArm(path, timeout_s=2.0) as client:
                    cameras = client.info()["cameras"]
            except (OSError, ValueError, RuntimeError):
                continue  # a stale socket of an emulator that did not exit cleanly
            for camera in cameras:
                found.append({"name": f"virtual SO-101 {camera}", "type": "vla_sim_camera",
                              "id": f"{path}:{camera}", "camera": camera, "socket_path": path})
        return found

    def connect(self, warmup: bool = True) -> None:
        if self.is_connected:
            raise DeviceAlreadyConnectedError(f"{self} is already connected.")
        if self.config.socket_path:
            source = RemoteVirtualArm(self.config.socket_path, timeout_s=self.config.timeout_ms / 1000.0)
            owns = True
        else:
            source = _in_process_arm()
            owns = False
            if source is None:
                raise ConnectionError(
                    f"{self}: no virtual SO-101 runs in this process. Start one (VirtualSO101(...).start()), or "
                    "run `lerobot-vla emulate --arm so101 --physics` and set this camera's socket_path to the "
                    "camera socket it prints."
                )
        try:
            info = source.info()
            if self.camera not in info["cameras"]:
                raise ValueError(f"{self}: the scene has no camera {self.camera!r}; choose one of {info['cameras']}")
            self.lockstep = bool(info["lockstep"])
        except BaseException:
            if owns:
                source.close()
            raise
        self._source, self._owns_source = source, owns
        if not self.lockstep:
            self._start_capture()
        if warmup:
            self.read()

    def _render(self) -> np.ndarray:
        image, _ = self._source.frame(self.camera, self.width, self.height)
        return image

    def read(self, color_mode=None) -> np.ndarray:
        """A frame rendered now: (height, width, 3) uint8 RGB."""
        self._require_connected()
        return self._render()

    def async_read(self, timeout_ms: float = 200) -> np.ndarray:
        self._require_connected()
        if self.lockstep:
            return self._render()
        if not self._new_frame.wait(timeout=timeout_ms / 1000.0):
            raise TimeoutError(f"{self}: no new frame within {timeout_ms} ms{self._capture_hint()}")
        with self._frame_lock:
            self._new_frame.clear()
            return self._latest

    def read_latest(self, max_age_ms: int = 500) -> np.ndarray:
        """The newest frame; stale when older than `max_age_ms` or three of this camera's frame periods, whichever
        is longer: a 5 fps camera's newest frame is up to 200 ms old on time and more on a busy machine, and a
        slow camera is what --min-hz reports, not a fault that ends the session."""
        self._require_connected()
        if self.lockstep:
            return self._render()
        with self._frame_lock:
            frame, captured_at = self._latest, self._latest_at
        if frame is None or captured_at is None:
            raise RuntimeError(f"{self} has not captured any frame yet{self._capture_hint()}")
        age_ms = (time.perf_counter() - captured_at) * 1000.0
        limit_ms = max(float(max_age_ms), 3000.0 / float(self.fps)) if self.fps else float(max_age_ms)
        if age_ms > limit_ms:
            raise TimeoutError(f"{self}: latest frame is {age_ms:.0f} ms old (max {limit_ms:.0f} ms)"
                               f"{self._capture_hint()}")
        return frame

    def disconnect(self) -> None:
        if not self.is_connected:
            raise DeviceNotConnectedError(f"{self} is not connected.")
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(2.0, self.config.timeout_ms / 1000.0))
            self._thread = None
        if self._owns_source:
            self._source.close()
        self._source = None
        with self._frame_lock:
            self._latest = self._latest_at = None
            self._new_frame.clear()

    # -- wall-clock capture ---------------------------------------------------------------------------------
    def _start_capture(self) -> None:
        self._stop.clear()
        self._capture_error = None
        self._thread = threading.Thread(target=self._capture_loop, name=f"{self}-capture", daemon=True)
        self._thread.start()

    def _capture_loop(self) -> None:
        period = 1.0 / float(self.fps)
        next_at = time.perf_counter()
        while not self._stop.is_set():
            try:
                image = self._render()
            except BaseException as exc:  # surfaced by the next read that finds no fresh frame
                self._capture_error = exc
                if self._stop.wait(0.2):
                    return
                continue
            self._capture_error = None  # recovered (the socket client reconnects after a timeout)
            with self._frame_lock:
                self._latest, self._latest_at = image, time.perf_counter()
                self._new_frame.set()
            next_at = max(next_at + period, time.perf_counter())
            self._stop.wait(max(0.0, next_at - time.perf_counter()))

    def _capture_hint(self) -> str:
        error = self._capture_error
        return f"; last capture error: {type(error).__name__}: {error}" if error is not None else ""

    def _require_connected(self) -> None:
        if not self.is_connected:
            raise DeviceNotConnectedError(f"{self} is not connected. Run `.connect()` first.")
