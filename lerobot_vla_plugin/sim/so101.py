"""A virtual SO-101 on a table with two cubes and a bowl, simulated with MuJoCo.

The servo emulator, the simulated robot and camera and the recorder all drive this one object, so its
interface speaks the arm's language: six joint targets in, joint positions/velocities/efforts out, in
radians with zero at the middle of each joint's range (LeRobot "new calib").
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np

from lerobot_vla_plugin.sim.features import NAMED_OBJECTS
from lerobot_vla_plugin.sim.kinematics import GRASP_SITE
from lerobot_vla_plugin.sim.servo_mapping import joint_to_servo_steps, servo_steps_to_joint

__all__ = [
    "JOINT_NAMES",
    "TASKS",
    "REST_POSE",
    "SO101Sim",
    "default_scene_path",
    "joint_to_servo_steps",
    "servo_steps_to_joint",
]

JOINT_NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
TASKS = {"red": "put the red cube in the bowl", "blue": "put the blue cube in the bowl"}

# Folded pose the arm starts from and returns to: upper arm tilted back, forearm folded forward, gripper
# held about 12 cm above the table so it never touches a cube placed at reset.
REST_POSE = np.array([0.0, -1.72, 1.65, 0.2, 0.0, 0.0])

CUBE_HALF_SIZE_M = 0.0125
BOWL_INNER_RADIUS_M = 0.0545
BOWL_FLOOR_Z_M = 0.004
PAN_AXIS_XY = np.array([0.0388353, 0.0])

# Where objects may be placed at reset, in polar coordinates around the shoulder-pan axis: inside the
# region where the arm can grasp from straight above, away from the base and the table edge.
_PLACEMENT_RADIUS_M = (0.15, 0.235)
_PLACEMENT_ANGLE_RAD = (-1.05, 1.05)
_MIN_CUBE_GAP_M = 0.06
_MIN_CUBE_BOWL_GAP_M = 0.105

_SUCCESS_MAX_SPEED_M_S = 0.05
_GRIPPER_BODIES = ("gripper", "moving_jaw")


def _heading(xmat: np.ndarray) -> float:
    """Heading in the table plane of a body's or site's x axis, from MuJoCo's flattened rotation matrix."""
    return float(np.arctan2(xmat[3], xmat[0]))


def default_scene_path() -> Path:
    """The tabletop scene shipped with the package, or the repository copy when running from source."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "assets" / "scene.xml", here.parents[1] / "hardware" / "so101" / "scene.xml"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "SO-101 scene not found; expected lerobot_vla_plugin/sim/assets/scene.xml or hardware/so101/scene.xml. "
        "Pass scene_path= explicitly or reinstall the package with its data files."
    )


class SO101Sim:
    """MuJoCo model + state of the arm and its props, advanced in fixed physics substeps."""

    def __init__(self, scene_path: Path | None = None, *, seed: int | None = None, timestep_s: float = 0.002):
        if timestep_s <= 0:
            raise ValueError(f"timestep_s must be positive, got {timestep_s}")
        self.scene_path = Path(scene_path) if scene_path is not None else default_scene_path()
        self.model = mujoco.MjModel.from_xml_path(str(self.scene_path))
        self.model.opt.timestep = timestep_s
        self.data = mujoco.MjData(self.model)
        self._rng = np.random.default_rng(seed)
        self._carry_s = 0.0  # simulated time owed to step() callers, below one substep

        missing = [n for n in JOINT_NAMES if mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, n) < 0]
        if missing:
            raise ValueError(f"scene {self.scene_path} lacks SO-101 joints {missing}; load an SO-101 scene")
        joint_ids = [self.model.joint(n).id for n in JOINT_NAMES]
        self._qpos_adr = np.array([self.model.jnt_qposadr[j] for j in joint_ids])
        self._qvel_adr = np.array([self.model.jnt_dofadr[j] for j in joint_ids])
        self._actuator_ids = np.array([self.model.actuator(n).id for n in JOINT_NAMES])
        self._ctrl_range = self.model.actuator_ctrlrange[self._actuator_ids].copy()
        self._cube_geoms = {k: self.model.geom(f"{k}_cube").id for k in TASKS}
        self._cube_bodies = {k: self.model.body(f"{k}_cube").id for k in TASKS}
        self._bowl_mocap = self.model.body_mocapid[self.model.body("bowl").id]
        self._gripper_body_ids = {self.model.body(n).id for n in _GRIPPER_BODIES}
        self._grasp_site = self.model.site(GRASP_SITE).id
        self.reset()

    # -- time ----------------------------------------------------------------------------------------
    @property
    def control_timestep_s(self) -> float:
        """Physics substep: the finest resolution at which joint targets take effect."""
        return float(self.model.opt.timestep)

    @property
    def time_s(self) -> float:
        return float(self.data.time)

    # -- episode -------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        """Arm to REST_POSE; bowl and cubes placed at random, reachable, non-overlapping spots."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        mujoco.mj_resetData(self.model, self.data)
        self._carry_s = 0.0
        self.data.qpos[self._qpos_adr] = REST_POSE
        self.data.ctrl[self._actuator_ids] = REST_POSE

        bowl_xy, red_xy, blue_xy = self._sample_layout()
        self.data.mocap_pos[self._bowl_mocap] = [bowl_xy[0], bowl_xy[1], 0.0]
        for key, xy in (("red", red_xy), ("blue", blue_xy)):
            adr = self.model.jnt_qposadr[self.model.body_jntadr[self._cube_bodies[key]]]
            yaw = self._rng.uniform(-np.pi, np.pi)
            self.data.qpos[adr : adr + 3] = [xy[0], xy[1], CUBE_HALF_SIZE_M]
            self.data.qpos[adr + 3 : adr + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        mujoco.mj_forward(self.model, self.data)

    def _sample_layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        def sample_xy() -> np.ndarray:
            radius = self._rng.uniform(*_PLACEMENT_RADIUS_M)
            angle = self._rng.uniform(*_PLACEMENT_ANGLE_RAD)
            return PAN_AXIS_XY + radius * np.array([np.cos(angle), np.sin(angle)])

        for _ in range(1000):
            bowl, red, blue = sample_xy(), sample_xy(), sample_xy()
            if (
                np.linalg.norm(red - blue) >= _MIN_CUBE_GAP_M
                and np.linalg.norm(red - bowl) >= _MIN_CUBE_BOWL_GAP_M
                and np.linalg.norm(blue - bowl) >= _MIN_CUBE_BOWL_GAP_M
            ):
                return bowl, red, blue
        raise RuntimeError("could not place the bowl and cubes without overlap; the placement region is too small")

    # -- control -------------------------------------------------------------------------------------
    def set_joint_targets(self, targets_rad: np.ndarray) -> None:
        """Position goals for the six servos, clipped to each actuator's range like a servo's angle limits."""
        targets = np.asarray(targets_rad, dtype=np.float64).reshape(-1)
        if targets.shape != (len(JOINT_NAMES),):
            raise ValueError(f"expected {len(JOINT_NAMES)} joint targets {JOINT_NAMES}, got shape {targets.shape}")
        self.data.ctrl[self._actuator_ids] = np.clip(targets, self._ctrl_range[:, 0], self._ctrl_range[:, 1])

    def step(self, duration_s: float) -> None:
        """Advance physics by `duration_s`, in whole substeps; remainders carry over so time never drifts."""
        if duration_s < 0:
            raise ValueError(f"duration_s must be >= 0, got {duration_s}")
        self._carry_s += duration_s
        substeps = int(np.floor(self._carry_s / self.model.opt.timestep + 1e-9))
        if substeps > 0:
            self._carry_s -= substeps * self.model.opt.timestep
            mujoco.mj_step(self.model, self.data, nstep=substeps)

    # -- readings ------------------------------------------------------------------------------------
    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self._qpos_adr].copy()

    def set_joint_positions(self, q_rad: np.ndarray) -> None:
        """Put the arm's joints at `q_rad` (a planning snapshot's pose; the physics would not move there)."""
        self.data.qpos[self._qpos_adr] = np.asarray(q_rad, dtype=np.float64).reshape(len(JOINT_NAMES))
        mujoco.mj_forward(self.model, self.data)

    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self._qvel_adr].copy()

    def joint_efforts(self) -> np.ndarray:
        """Actuator torque in N·m (negative pushes toward lower angles): the servo's 'Present_Load'."""
        return self.data.actuator_force[self._actuator_ids].copy()

    def joint_limits(self) -> np.ndarray:
        joint_ids = [self.model.joint(n).id for n in JOINT_NAMES]
        return self.model.jnt_range[joint_ids].copy()

    def object_positions(self) -> dict[str, np.ndarray]:
        return {
            "red_cube": self.data.xpos[self._cube_bodies["red"]].copy(),
            "blue_cube": self.data.xpos[self._cube_bodies["blue"]].copy(),
            "bowl": self.data.mocap_pos[self._bowl_mocap].copy(),
        }

    def task_object_positions(self, task_key: str) -> np.ndarray:
        """(9,) float32 in sim/features.OBJECT_POSITION_NAMES order: the instructed cube, the other cube, the bowl."""
        places = self.object_positions()
        other = "blue" if self._check_task(task_key) == "red" else "red"
        return np.concatenate([places[f"{task_key}_cube"], places[f"{other}_cube"], places["bowl"]]).astype(np.float32)

    def named_object_positions(self) -> np.ndarray:
        """(9,) float32 in sim/features.OBJECT_NAMED_POSITION_NAMES order: red cube, blue cube, bowl."""
        places = self.object_positions()
        return np.concatenate([places[name] for name in NAMED_OBJECTS]).astype(np.float32)

    def cube_yaw(self, task_key: str) -> float:
        """Heading of the cube's x face normal, used to line the jaws up with two faces."""
        return _heading(self.data.xmat[self._cube_bodies[self._check_task(task_key)]])

    def jaw_pose(self) -> tuple[np.ndarray, float]:
        """Where the jaws would close now: the grasp site's position (3,) and the heading of its closing axis."""
        return self.data.site_xpos[self._grasp_site].copy(), _heading(self.data.site_xmat[self._grasp_site])

    def gripper_touches(self, task_key: str) -> bool:
        cube_geom = self._cube_geoms[self._check_task(task_key)]
        for contact in self.data.contact[: self.data.ncon]:
            pair = (contact.geom1, contact.geom2)
            if cube_geom in pair:
                other = pair[1] if pair[0] == cube_geom else pair[0]
                if self.model.geom_bodyid[other] in self._gripper_body_ids:
                    return True
        return False

    def is_success(self, task_key: str) -> bool:
        """The task's cube rests inside the bowl and the gripper has let go of it."""
        key = self._check_task(task_key)
        body = self._cube_bodies[key]
        cube = self.data.xpos[body]
        bowl = self.data.mocap_pos[self._bowl_mocap]
        inside = np.linalg.norm(cube[:2] - bowl[:2]) <= BOWL_INNER_RADIUS_M - CUBE_HALF_SIZE_M * 0.5
        resting_low = cube[2] <= BOWL_FLOOR_Z_M + CUBE_HALF_SIZE_M * 1.8
        dof = self.model.jnt_dofadr[self.model.body_jntadr[body]]
        speed = np.linalg.norm(self.data.qvel[dof : dof + 3])
        return bool(inside and resting_low and speed < _SUCCESS_MAX_SPEED_M_S and not self.gripper_touches(key))

    @staticmethod
    def _check_task(task_key: str) -> str:
        if task_key not in TASKS:
            raise KeyError(f"unknown task {task_key!r}; choose one of {sorted(TASKS)}")
        return task_key
