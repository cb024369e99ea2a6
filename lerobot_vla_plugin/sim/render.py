"""Offscreen camera images of the simulated scene, for the simulated camera and the recorder."""

from __future__ import annotations

import importlib
import os
import platform

import mujoco
import numpy as np
from mujoco.rendering.classic import gl_context

from lerobot_vla_plugin.sim.so101 import SO101Sim

__all__ = ["SceneRenderer", "camera_names"]


def _headless_linux() -> bool:
    return platform.system() == "Linux" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _context_backend() -> str:
    """Which OpenGL backend MuJoCo will use: 'glfw', 'egl', 'osmesa', ..."""
    return getattr(gl_context.GLContext, "__module__", "").rsplit(".", 1)[-1]


def _install_backend(name: str) -> bool:
    """Point MuJoCo's renderer at another offscreen backend; False when its libraries are missing.

    MuJoCo picks the backend once, when first imported; if that happened before MUJOCO_GL was set on a
    machine without a display it chose GLFW, which cannot open a window there.
    """
    try:
        module = importlib.import_module(f"mujoco.{name}")
    except (ImportError, OSError, AttributeError):
        return False
    gl_context.GLContext = module.GLContext
    return True


def _open_renderer(model: mujoco.MjModel, width: int, height: int) -> mujoco.Renderer:
    if _headless_linux() and _context_backend() not in ("egl", "osmesa"):
        _install_backend("egl") or _install_backend("osmesa")
    try:
        return mujoco.Renderer(model, height=height, width=width)
    except Exception as first_error:  # EGL without a usable device or driver
        if _context_backend() == "egl" and _install_backend("osmesa"):
            return mujoco.Renderer(model, height=height, width=width)
        raise RuntimeError(
            f"MuJoCo could not open an offscreen OpenGL context ({_context_backend()} backend): {first_error}. "
            "On Linux install libegl1 (or libosmesa6 and set MUJOCO_GL=osmesa before starting Python); "
            "with a desktop session set MUJOCO_GL=glfw."
        ) from first_error


def camera_names(model: mujoco.MjModel) -> list[str]:
    return [model.camera(i).name for i in range(model.ncam)]


class SceneRenderer:
    """One OpenGL context and framebuffer of a fixed size, created on first use and reused per frame.

    Creating a context costs far more than rendering a frame, so keep one renderer per image size.
    """

    def __init__(self, sim: SO101Sim, width: int, height: int):
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got width={width} height={height}")
        self.sim = sim
        self.width = int(width)
        self.height = int(height)
        self._renderer: mujoco.Renderer | None = None

    def render(self, camera: str) -> np.ndarray:
        """An RGB image (height, width, 3) uint8 of the current simulation state seen from `camera`."""
        self.capture(camera)
        return self.draw()

    def capture(self, camera: str) -> None:
        """Copy the simulation state into the scene (cheap, CPU only): the only step that reads `sim.data`,
        so a caller sharing the simulation with other threads holds its lock for this step alone."""
        if mujoco.mj_name2id(self.sim.model, mujoco.mjtObj.mjOBJ_CAMERA, camera) < 0:
            raise ValueError(f"unknown camera {camera!r}; the scene has {camera_names(self.sim.model)}")
        self._ensure_renderer().update_scene(self.sim.data, camera=camera)

    def draw(self) -> np.ndarray:
        """Rasterize the last captured scene (the expensive OpenGL part)."""
        return self._ensure_renderer().render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> SceneRenderer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _ensure_renderer(self) -> mujoco.Renderer:
        if self._renderer is None:
            model = self.sim.model
            # The offscreen framebuffer must hold the image; grow it rather than refuse large sizes.
            model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
            model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
            self._renderer = _open_renderer(model, self.width, self.height)
        return self._renderer
