"""What happened in one evaluated episode, read from the simulation state at every control tick.

A success rate alone does not say what to fix. The monitor keeps the few facts that separate the usual ways a
pick-and-place policy fails, and `failure_mode` names the first that applies:

- `wrong_cube`: the other cube came to rest in the bowl, or the gripper touched only the other cube;
- `never_grasped`: the target cube never left the table;
- `dropped`: the target was lifted, then ended outside the bowl and out of the gripper;
- `timed_out`: anything else (still carrying it, in the bowl but held, rolling) when the time ran out;
- `policy_fault`: the rollout loop stopped the episode (a non-finite action, an inference that failed or never
  returned, a camera whose frames stopped coming); the arm held its last target and `error` says why;
- `servo_fault`: a servo fault stopped the follower (typically overload from pressing into the table or a cube); the
  follower took torque off, `error` names the servo, and the evaluation reconnects it for the next scene.

A failure mode says what went wrong, not by how much. The monitor also keeps where the jaws were aimed when the
gripper first closed for a grasp (`GraspAim`): the scripted operator closes within about 3 mm of the cube's centre
with its jaws square to two faces, so a policy whose median aim is centimetres off needs a more precise reach, not a
firmer grip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lerobot_vla_plugin.sim.so101 import BOWL_INNER_RADIUS_M, CUBE_HALF_SIZE_M, JOINT_NAMES, TASKS, SO101Sim

FAILURE_MODES = ("never_grasped", "dropped", "wrong_cube", "timed_out", "policy_fault", "servo_fault")
# The cube's centre this far above its resting height: clearly off the table, not tipped or nudged.
LIFT_HEIGHT_M = 0.015
# A grasp attempt: the gripper opened wider than GRIPPER_OPENED_RAD, then closed past GRIPPER_CLOSING_RAD (a 2.5 cm
# cube stops the jaws at about 0.2 rad, the rest pose is 0). Where the jaws are at that tick is where it was aimed.
GRIPPER_OPENED_RAD = 0.45
GRIPPER_CLOSING_RAD = 0.3
_GRIPPER_INDEX = JOINT_NAMES.index("gripper")


def other_task(task_key: str) -> str:
    """The task whose cube is the distractor in `task_key`'s scene."""
    others = [key for key in TASKS if key != task_key]
    if task_key not in TASKS or len(others) != 1:
        raise KeyError(f"unknown task {task_key!r}; choose one of {sorted(TASKS)}")
    return others[0]


@dataclass(frozen=True)
class GraspAim:
    """The jaws against the instructed cube when the gripper first closed for a grasp: the horizontal offset of the
    jaws' centre from the cube's along and across the closing direction, its height above the cube's centre (mm),
    and how far the closing direction is turned from the nearest pair of cube faces (degrees, -45..45)."""

    along_mm: float
    across_mm: float
    height_mm: float
    heading_error_deg: float

    @property
    def offset_mm(self) -> float:
        return float(np.hypot(self.along_mm, self.across_mm))

    @classmethod
    def measure(cls, sim: SO101Sim, task_key: str) -> GraspAim:
        jaws, heading = sim.jaw_pose()
        cube = sim.object_positions()[f"{task_key}_cube"]
        offset = jaws[:2] - cube[:2]
        closing = np.array([np.cos(heading), np.sin(heading)])
        across = np.array([-closing[1], closing[0]])
        quarter = np.pi / 2
        turned = (heading - sim.cube_yaw(task_key) + quarter / 2) % quarter - quarter / 2
        return cls(along_mm=round(1000 * float(offset @ closing), 1), across_mm=round(1000 * float(offset @ across), 1),
                   height_mm=round(1000 * float(jaws[2] - cube[2]), 1),
                   heading_error_deg=round(float(np.degrees(turned)), 1))


class EpisodeMonitor:
    """Follows one episode of `task_key` on `sim`; call `update()` once per control tick (under the sim's lock)."""

    def __init__(self, sim: SO101Sim, task_key: str):
        self.sim = sim
        self.task_key = task_key
        self.other_key = other_task(task_key)
        self.target_touched = False
        self.target_lifted = False
        self.other_touched = False
        self.other_in_bowl = False
        self.success = False
        self.first_grasp_aim: GraspAim | None = None
        self._gripper_opened = False

    def update(self) -> bool:
        """Record this tick's facts; True once the task is done (the target cube rests in the bowl, let go)."""
        sim = self.sim
        if self.first_grasp_aim is None:
            gripper = sim.joint_positions()[_GRIPPER_INDEX]
            self._gripper_opened |= bool(gripper > GRIPPER_OPENED_RAD)
            if self._gripper_opened and gripper < GRIPPER_CLOSING_RAD:
                self.first_grasp_aim = GraspAim.measure(sim, self.task_key)
        self.target_touched |= sim.gripper_touches(self.task_key)
        self.target_lifted |= bool(self._cube_position(self.task_key)[2] > CUBE_HALF_SIZE_M + LIFT_HEIGHT_M)
        self.other_touched |= sim.gripper_touches(self.other_key)
        self.other_in_bowl |= sim.is_success(self.other_key)
        self.success |= sim.is_success(self.task_key)
        return self.success

    def failure_mode(self) -> str | None:
        """None for a success, else one of FAILURE_MODES (checked in that order of blame, see the module doc)."""
        if self.success:
            return None
        if self.other_in_bowl or (self.other_touched and not self.target_touched):
            return "wrong_cube"
        if not self.target_lifted:
            return "never_grasped"
        outside = np.linalg.norm(self._cube_position(self.task_key)[:2] - self._bowl_xy()) > BOWL_INNER_RADIUS_M
        if outside and not self.sim.gripper_touches(self.task_key):
            return "dropped"
        return "timed_out"

    def _cube_position(self, key: str) -> np.ndarray:
        return self.sim.object_positions()[f"{key}_cube"]

    def _bowl_xy(self) -> np.ndarray:
        return self.sim.object_positions()["bowl"][:2]


@dataclass
class EpisodeResult:
    """One evaluated episode, as written to the JSON report."""

    episode: int
    task: str
    instruction: str
    scene_seed: int
    success: bool
    failure_mode: str | None
    time_to_success_s: float | None
    simulated_s: float
    wall_s: float
    ticks: int
    target_touched: bool
    target_lifted: bool
    other_touched: bool
    # Why the policy runner stopped the episode (failure_mode "policy_fault"), else None.
    error: str | None = None
    # The asynchronous runner's measurements for this episode (rollout/stats.py), else None.
    rollout: dict | None = None
    # Where the jaws were the first time the gripper closed for a grasp, None if it never did.
    first_grasp_aim: GraspAim | None = None
