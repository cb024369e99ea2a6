"""Start poses where a policy's missed grasp leaves the arm, so demonstrations can show the way back.

A policy that closes its jaws beside the cube carries on as if it held it: no demonstration ever starts from an
empty, closed gripper next to a cube still on the table, so nothing taught it what to do there. Episodes that
start from such poses (the scripted operator then opens, goes back and picks the cube up) are that lesson.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from lerobot_vla_plugin.sim.kinematics import TopDownIK
from lerobot_vla_plugin.sim.operator import facing_reach_seed
from lerobot_vla_plugin.sim.so101 import JOINT_NAMES, PAN_AXIS_XY, SO101Sim

# Jaws closed on nothing: the operator's squeeze targets (sim/operator.py) and a little tighter.
_EMPTY_GRIPPER_RAD = (0.06, 0.14)
_OPEN_GRIPPER_RAD = (0.45, 0.7)
_IK_TOLERANCE_M = 0.004
_ATTEMPTS = 40
MISSED_GRASP_KINDS = ("beside the cube", "on the way to the bowl")


def place_arm_after_missed_grasp(sim: SO101Sim, task_key: str, rng: np.random.Generator) -> str:
    """Put the arm's joints (and their targets) where a missed grasp of the `task_key` cube leaves them, touching
    nothing. Returns the kind of pose (MISSED_GRASP_KINDS); raises RuntimeError when no pose fits the layout.

    Beside the cube: jaws closed 2-4.5 cm from its centre, 1-5 cm above it, the closing line roughly radial as
    the demonstrations hold it. On the way to the bowl: jaws closed (or, over the bowl, opened) at carrying
    height, part of the way from the cube to the bowl."""
    objects = sim.object_positions()
    cube, bowl = objects[f"{task_key}_cube"], objects["bowl"]
    start = sim.joint_positions()
    ik = TopDownIK(sim.model)
    arm_bodies = _moving_arm_bodies(sim.model)
    for _ in range(_ATTEMPTS):
        if rng.random() < 0.6:
            kind = MISSED_GRASP_KINDS[0]
            direction = rng.uniform(-math.pi, math.pi)
            offset = rng.uniform(0.02, 0.045) * np.array([math.cos(direction), math.sin(direction)])
            point = np.r_[cube[:2] + offset, cube[2] + rng.uniform(0.01, 0.05)]
            gripper = rng.uniform(*_EMPTY_GRIPPER_RAD)
        else:
            kind = MISSED_GRASP_KINDS[1]
            share = rng.uniform(0.2, 1.0)
            point = np.r_[cube[:2] + share * (bowl[:2] - cube[:2]), rng.uniform(0.05, 0.075)]
            opened = share > 0.8 and rng.random() < 0.5
            gripper = rng.uniform(*(_OPEN_GRIPPER_RAD if opened else _EMPTY_GRIPPER_RAD))
        rel = point[:2] - PAN_AXIS_XY
        angle = math.atan2(rel[1], rel[0])
        heading = angle + rng.normal(0.0, 0.4)
        arm, error = ik.solve(point, heading, facing_reach_seed(point))
        if error > _IK_TOLERANCE_M:
            continue
        q = np.r_[arm, gripper]
        if _touches_anything(sim, q, arm_bodies):
            continue
        sim.data.ctrl[[sim.model.actuator(name).id for name in JOINT_NAMES]] = q
        return kind
    sim.set_joint_positions(start)
    raise RuntimeError(f"no contact-free pose beside the {task_key} cube at {np.round(cube, 3).tolist()} "
                       f"after {_ATTEMPTS} tries")


def _moving_arm_bodies(model: mujoco.MjModel) -> set[int]:
    """Bodies that move with the arm's joints (not the base, not the free cubes or the bowl)."""
    arm_root = model.body_rootid[model.jnt_bodyid[model.joint(JOINT_NAMES[0]).id]]
    return {body for body in range(model.nbody)
            if model.body_rootid[body] == arm_root and model.body_weldid[body] != model.body_weldid[arm_root]}


def _touches_anything(sim: SO101Sim, q: np.ndarray, arm_bodies: set[int]) -> bool:
    """Set the joints to `q` and say whether a moving arm link then touches something other than the arm."""
    sim.set_joint_positions(q)
    model, data = sim.model, sim.data
    whole_arm = arm_bodies | {model.body_rootid[body] for body in arm_bodies}
    for contact in data.contact[: data.ncon]:
        bodies = {model.geom_bodyid[contact.geom1], model.geom_bodyid[contact.geom2]}
        if bodies & arm_bodies and not bodies <= whole_arm:
            return True
    return False
