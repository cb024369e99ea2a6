"""Camera frames of a simulation that other threads keep changing, rendered on one dedicated thread.

An OpenGL (EGL/OSMesa) context may be current in only one thread at a time, and cameras are read from
whatever thread the caller uses (LeRobot's loop, a capture thread, a socket client's handler). So every
renderer lives on the service's own thread; callers hand it a request and wait. The simulation's lock is
held only while the state is copied into the scene, never during rasterization, so physics and bus
transactions do not stall behind a frame.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from lerobot_vla_plugin.sim.render import SceneRenderer, camera_names
from lerobot_vla_plugin.sim.so101 import SO101Sim

_STOP = object()


class FrameService:
    """Thread-safe `render(camera, width, height) -> (image, sim_time_s)` over a shared `SO101Sim`.

    `before_capture` runs under `lock` just before the state is read (a wall-clock arm brings its
    physics up to now there). One renderer (OpenGL context) is kept per image size.
    """

    def __init__(self, sim: SO101Sim, lock: threading.RLock, before_capture: Callable[[], None] | None = None):
        self.sim = sim
        self.lock = lock
        self.before_capture = before_capture
        self.cameras = tuple(camera_names(sim.model))
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._renderers: dict[tuple[int, int], SceneRenderer] = {}
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.frames_rendered = 0

    def render(self, camera: str, width: int, height: int, timeout_s: float = 30.0) -> tuple[np.ndarray, float]:
        if camera not in self.cameras:
            raise ValueError(f"unknown camera {camera!r}; the scene has {list(self.cameras)}")
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got width={width} height={height}")
        self._ensure_thread()
        future: Future = Future()
        self._requests.put((camera, int(width), int(height), future))
        return future.result(timeout=timeout_s)

    def close(self) -> None:
        with self._start_lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._requests.put(_STOP)
            thread.join(timeout=5.0)

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="sim-frames", daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        try:
            while True:
                request = self._requests.get()
                if request is _STOP:
                    return
                camera, width, height, future = request
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(self._render(camera, width, height))
                except BaseException as exc:  # handed to the waiting caller
                    future.set_exception(exc)
        finally:
            for renderer in self._renderers.values():
                renderer.close()
            self._renderers.clear()

    def _render(self, camera: str, width: int, height: int) -> tuple[np.ndarray, float]:
        renderer = self._renderers.get((width, height))
        if renderer is None:
            renderer = self._renderers[(width, height)] = SceneRenderer(self.sim, width=width, height=height)
        with self.lock:
            if self.before_capture is not None:
                self.before_capture()
            sim_time_s = self.sim.time_s
            renderer.capture(camera)
        image = renderer.draw()
        self.frames_rendered += 1
        return image, sim_time_s
