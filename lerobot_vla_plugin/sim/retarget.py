"""Re-target a recorded pick-and-place demonstration to a new scene (MimicGen-style, Mandlekar et al. 2023).

A demonstration is split at its gripper signal into object-centric phases, and the gripper's path in each phase
moves with the object it is relative to:

- reach (rest pose to above the cube): joint space, the source's own motion plus a growing joint offset that ends
  at the new pre-grasp pose (interpolation between the start and the first object-centric segment);
- descend and grasp: relative to the cube (shifted with it; the jaw heading turns with the cube's faces);
- carry: blends from cube-relative to bowl-relative;
- release and retreat: relative to the bowl.

Each gripper pose is solved with the arm's top-down inverse kinematics (its real joint limits); the gripper joint
keeps the source's signal, so the timing and the hand's tremor are a person's. The result is a joint path that the
virtual arm's leader plays like the scripted operator's, so a generated episode goes through the same servo bus,
physics, cameras and writer as any recorded one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lerobot_vla_plugin.sim.kinematics import TopDownIK
from lerobot_vla_plugin.sim.so101 import PAN_AXIS_XY, SO101Sim

_ARM_JOINTS = 5
_IK_TOLERANCE_M = 0.003
_NEAR_M = 0.01  # horizontal distance at which the gripper counts as above a grasp or release point
_QUARTER_TURN = math.pi / 2
_OPENED, _CLOSED = 0.6, 0.35  # gripper levels, as fractions of the widest opening, that mark open and closed


class RetargetError(ValueError):
    """A demonstration cannot be split or carried over to the new scene (no grasp in it, pose out of reach)."""


@dataclass
class SourceDemonstration:
    """One recorded episode, in the simulation's terms."""

    episode: int
    task_key: str
    joint_targets: np.ndarray  # (T, 6) radians: what the leader commanded each frame
    fps: float
    cube_xy: np.ndarray  # where the instructed cube, its heading and the bowl were at the start
    cube_yaw: float
    bowl_xy: np.ndarray
    scene_seed: int | None = None


@dataclass
class Phases:
    """Frame indices of the phase boundaries of a pick-and-place."""

    above_cube: int  # end of the free reach: the gripper is above where it will grasp
    grasp: int  # the gripper starts closing on the cube
    above_bowl: int  # end of the carry: the gripper is above where it will release
    release: int  # the gripper starts opening over the bowl


@dataclass
class JointPath:
    """Joint targets over time, played like the scripted operator's plan (`target_at`, `duration_s`, `done`)."""

    times_s: np.ndarray
    targets: np.ndarray  # (T, 6) radians
    provenance: dict = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return float(self.times_s[-1])

    def done(self, t_s: float) -> bool:
        return t_s >= self.duration_s

    def target_at(self, t_s: float) -> np.ndarray:
        t = float(np.clip(t_s, 0.0, self.times_s[-1]))
        return np.array([np.interp(t, self.times_s, self.targets[:, j]) for j in range(self.targets.shape[1])])


def _min_jerk(s: np.ndarray) -> np.ndarray:
    s = np.clip(s, 0.0, 1.0)
    return s**3 * (10 - 15 * s + 6 * s**2)


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def _azimuth(xy: np.ndarray) -> float:
    return math.atan2(xy[1] - PAN_AXIS_XY[1], xy[0] - PAN_AXIS_XY[0])


def split_phases(joint_targets: np.ndarray, gripper_positions: np.ndarray) -> Phases:
    """Phase boundaries from the gripper signal (open, close on the cube, open over the bowl) and the gripper's
    path (`gripper_positions` (T, 3), the grasp site's forward kinematics)."""
    gripper = joint_targets[:, -1]
    # Hysteresis between two levels of the widest opening: the jaws open for the reach, close on the cube (well
    # below the low level, as the hand squeezes), and open again over the bowl.
    opened_level, closed_level = _OPENED * gripper.max(), _CLOSED * gripper.max()
    opened = np.flatnonzero(gripper > opened_level)
    if gripper.max() <= 0 or opened.size == 0:
        raise RetargetError("the gripper never opens: not a pick-and-place demonstration")
    closing = opened[0] + np.flatnonzero(gripper[opened[0]:] < closed_level)
    if closing.size == 0:
        raise RetargetError("the gripper never closes after opening: no grasp to re-target")
    grasp = int(closing[0])
    reopening = grasp + np.flatnonzero(gripper[grasp:] > opened_level)
    if reopening.size == 0:
        raise RetargetError("the gripper never opens again after the grasp: no release to re-target")
    release = int(reopening[0])

    def first_near(point: np.ndarray, start: int, stop: int) -> int:
        near = np.flatnonzero(np.linalg.norm(gripper_positions[start:stop, :2] - point[:2], axis=1) < _NEAR_M)
        return start + int(near[0]) if near.size else stop

    above_cube = first_near(gripper_positions[grasp], 0, grasp)
    above_bowl = first_near(gripper_positions[release], grasp + 1, release)
    return Phases(above_cube=above_cube, grasp=grasp, above_bowl=above_bowl, release=release)


class Retargeter:
    """Carries source demonstrations over to new scenes of one simulated arm."""

    def __init__(self, sim: SO101Sim):
        self.ik = TopDownIK(sim.model)
        self.joint_limits = sim.joint_limits()

    def gripper_poses(self, joint_targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions (T, 3), headings (T,)) of the grasp site along a joint path."""
        positions, headings = [], []
        for q in joint_targets:
            position, rotation = self.ik.site_pose(q[:_ARM_JOINTS])
            positions.append(position)
            headings.append(math.atan2(rotation[1, 0], rotation[0, 0]))
        return np.array(positions), np.unwrap(np.array(headings))

    def heading_shift(self, source: SourceDemonstration, grasp_heading: float, cube_xy: np.ndarray,
                      cube_yaw: float) -> float:
        """How far the jaws turn: onto the new cube's faces, keeping the source's heading relative to the arm's
        reach direction as closely as the faces allow (as the operator picks the face pair)."""
        relative = _wrap(grasp_heading - _azimuth(source.cube_xy))
        face_turn = _wrap(cube_yaw - source.cube_yaw)
        best = min((abs(_wrap(grasp_heading + face_turn + k * _QUARTER_TURN - _azimuth(cube_xy) - relative)), k)
                   for k in range(4))[1]
        return _wrap(face_turn + best * _QUARTER_TURN)

    def _solve(self, position: np.ndarray, heading: float, seed: np.ndarray) -> np.ndarray:
        q, error = self.ik.solve(position, heading, seed)
        if error > _IK_TOLERANCE_M:
            q, error = self.ik.solve(position, heading, q, rotation_weight_m=0.01)
        if error > _IK_TOLERANCE_M:
            raise RetargetError(f"gripper pose {np.round(position, 3).tolist()} is out of the arm's reach "
                                f"(IK error {error * 1000:.1f} mm)")
        return q

    def retarget(self, source: SourceDemonstration, cube_xy: np.ndarray, cube_yaw: float,
                 bowl_xy: np.ndarray) -> JointPath:
        """The source's motion carried over to a scene with the instructed cube at `cube_xy` (heading
        `cube_yaw`) and the bowl at `bowl_xy`."""
        targets = np.asarray(source.joint_targets, dtype=np.float64)
        positions, headings = self.gripper_poses(targets)
        phases = split_phases(targets, positions)
        cube_shift = np.r_[np.asarray(cube_xy) - source.cube_xy, 0.0]
        bowl_shift = np.r_[np.asarray(bowl_xy) - source.bowl_xy, 0.0]
        turn = self.heading_shift(source, headings[phases.grasp], np.asarray(cube_xy), cube_yaw)

        out = targets.copy()
        frames = len(targets)
        q = targets[phases.above_cube, :_ARM_JOINTS]
        for k in range(phases.above_cube, frames):
            if k < phases.grasp:
                shift = cube_shift
            elif k < phases.above_bowl:
                blend = _min_jerk(np.array((k - phases.grasp) / max(1, phases.above_bowl - phases.grasp)))
                shift = cube_shift + float(blend) * (bowl_shift - cube_shift)
            else:
                shift = bowl_shift
            q = self._solve(positions[k] + shift, headings[k] + turn, q)
            out[k, :_ARM_JOINTS] = q
        # The free reach keeps the source's joint motion and grows into the new pre-grasp pose.
        ramp = _min_jerk(np.arange(phases.above_cube + 1) / max(1, phases.above_cube))[:, None]
        offset = out[phases.above_cube, :_ARM_JOINTS] - targets[phases.above_cube, :_ARM_JOINTS]
        out[: phases.above_cube + 1, :_ARM_JOINTS] = targets[: phases.above_cube + 1, :_ARM_JOINTS] + ramp * offset
        out[:, :_ARM_JOINTS] = np.clip(out[:, :_ARM_JOINTS], self.joint_limits[:_ARM_JOINTS, 0],
                                       self.joint_limits[:_ARM_JOINTS, 1])
        provenance = {
            "demonstration": "retargeted",
            "source_episode": float(source.episode),
            "source_scene_seed": float(-1 if source.scene_seed is None else source.scene_seed),
            "cube_shift_x_m": float(cube_shift[0]), "cube_shift_y_m": float(cube_shift[1]),
            "bowl_shift_x_m": float(bowl_shift[0]), "bowl_shift_y_m": float(bowl_shift[1]),
            "heading_turn_rad": float(turn),
        }
        return JointPath(np.arange(frames) / source.fps, out, provenance)


# What a demonstration the scripted operator planned records in the same columns (one schema per dataset).
SCRIPTED_PROVENANCE = {
    "demonstration": "scripted", "source_episode": -1.0, "source_scene_seed": -1.0,
    "cube_shift_x_m": 0.0, "cube_shift_y_m": 0.0, "bowl_shift_x_m": 0.0, "bowl_shift_y_m": 0.0,
    "heading_turn_rad": 0.0,
}
