"""MuJoCo simulation of an SO-101 on a table: physics, camera rendering and a scripted demonstrator.

Headless Linux machines (CI, servers) have no display for MuJoCo's default GLFW backend, so unless
the user chose one, offscreen EGL is selected here, before anything in this package imports MuJoCo.
The renderer falls back to OSMesa when EGL cannot start.
"""

import os
import platform

if platform.system() == "Linux" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    os.environ.setdefault("MUJOCO_GL", "egl")

from lerobot_vla_plugin.sim.servo_mapping import joint_to_servo_steps, servo_steps_to_joint  # noqa: E402

__all__ = ["joint_to_servo_steps", "servo_steps_to_joint"]
