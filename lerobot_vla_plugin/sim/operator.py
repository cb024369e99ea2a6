"""A simulated human teleoperator that solves the pick-and-place task by moving the leader arm.

Demonstrations for imitation learning must vary like a person's do, or a policy learns one path by
heart. So each plan draws its own waypoint offsets, grasp heading, speeds, pauses and a slight hand
tremor from the given generator, while staying inside the motions that reliably work: a top-down
grasp, a lift above the bowl rim, a gentle drop.
"""

from __future__ import annotations

import math

import numpy as np

from lerobot_vla_plugin.sim.kinematics import TopDownIK
from lerobot_vla_plugin.sim.so101 import (
    BOWL_FLOOR_Z_M,
    CUBE_HALF_SIZE_M,
    JOINT_NAMES,
    PAN_AXIS_XY,
    TASKS,
    SO101Sim,
)

_SAMPLE_PERIOD_S = 0.01  # plan resolution; targets in between are interpolated linearly
# A 2.5 cm cube stops the jaws at about 0.2 rad; the operator closes the leader a little further, enough
# to hold the cube firmly but well short of crushing it (which would trip the gripper's overload protection).
_GRIPPER_SQUEEZE_RAD = (0.1, 0.14)
# Peak speed of the hand opening or closing the leader's gripper. A person squeezes the trigger at a steady
# speed, so a wider opening takes longer; a fixed-duration close of a wide opening would be a snap that reads
# as a discontinuity at 30 fps (and outruns the follower's max_relative_target).
_GRIPPER_PEAK_SPEED_RAD_S = (0.9, 1.2)
_MIN_JERK_PEAK_SPEED = 1.875  # peak / mean speed of a minimum-jerk move
_BOWL_OUTER_RADIUS_M = 0.0615
_IK_TOLERANCE_M = 0.003
_ARM_JOINTS = 5


def _min_jerk(s: np.ndarray | float) -> np.ndarray | float:
    """Minimum-jerk time scaling: the bell-shaped speed profile of human point-to-point reaching."""
    return 10 * s**3 - 15 * s**4 + 6 * s**5


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def _cylindrical(pos: np.ndarray) -> tuple[float, float, float]:
    rel = pos[:2] - PAN_AXIS_XY
    return float(np.hypot(*rel)), float(math.atan2(rel[1], rel[0])), float(pos[2])


def facing_reach_seed(position: np.ndarray) -> np.ndarray:
    """A forward-reaching, elbow-up arm posture (5,) facing `position` from the pan axis: top-down IK solves
    started here settle on the branch the demonstrations use."""
    _, angle, _ = _cylindrical(position)
    return np.array([-angle, 0.0, 0.4, 1.3, 0.0])


class ScriptedOperator:
    """Plans one pick-and-place demonstration for `task_key` and replays it as joint targets over time.

    The plan starts where the arm is and ends with the gripper open, lifted clear above the bowl."""

    def __init__(self, sim: SO101Sim, task_key: str, rng: np.random.Generator, *, reach_detour_m: float = 0.0):
        if task_key not in TASKS:
            raise KeyError(f"unknown task {task_key!r}; choose one of {sorted(TASKS)}")
        if reach_detour_m < 0:
            raise ValueError(f"reach_detour_m must be >= 0, got {reach_detour_m}")
        self.sim = sim
        self.task_key = task_key
        self.rng = rng
        self.reach_detour_m = reach_detour_m
        self._ik = TopDownIK(sim.model)
        self._times: np.ndarray | None = None
        self._targets: np.ndarray | None = None

    # -- public ----------------------------------------------------------------------------------------
    @property
    def duration_s(self) -> float:
        return float(self._require_plan()[0][-1])

    def done(self, t_s: float) -> bool:
        return t_s >= self.duration_s

    def target_at(self, t_s: float) -> np.ndarray:
        """Joint targets (6,) in radians, `t_s` seconds after the plan starts; holds the last pose after the end."""
        times, targets = self._require_plan()
        t = float(np.clip(t_s, 0.0, times[-1]))
        index = min(int(np.searchsorted(times, t, side="right")) - 1, len(times) - 2)
        frac = (t - times[index]) / (times[index + 1] - times[index])
        q = targets[index] + frac * (targets[index + 1] - targets[index])
        q[:_ARM_JOINTS] += self._tremor(t)
        return q

    def plan(self) -> None:
        """Build the whole motion from where the cubes and bowl are now and where the arm is now."""
        rng = self.rng
        objects = self.sim.object_positions()
        cube = objects[f"{self.task_key}_cube"]
        other = objects["blue_cube" if self.task_key == "red" else "red_cube"]
        bowl = objects["bowl"]
        pace = rng.uniform(0.8, 1.25)  # some people are simply faster than others

        def duration(low: float, high: float) -> float:
            return rng.uniform(low, high) * pace

        # Tremor: two small sines per joint, like an unsteady hand on the leader arm.
        self._tremor_amp = rng.uniform(0.0005, 0.003, size=(2, _ARM_JOINTS))
        self._tremor_freq = rng.uniform(1.0, 5.0, size=(2, _ARM_JOINTS))
        self._tremor_phase = rng.uniform(0, 2 * np.pi, size=(2, _ARM_JOINTS))

        grasp_yaw = self._grasp_heading(cube, other, bowl) + rng.normal(0.0, 0.03)
        # Along the closing direction the operator aims carefully (the fixed jaw must clear the cube);
        # across it a few millimetres do not matter.
        closing = np.array([math.cos(grasp_yaw), math.sin(grasp_yaw)])
        across = np.array([-closing[1], closing[0]])
        grasp_xy = cube[:2] + closing * rng.uniform(-0.0015, 0.0015) + across * rng.uniform(-0.003, 0.003)
        grasp_z = cube[2] + rng.uniform(0.002, 0.005)
        above_z = cube[2] + rng.uniform(0.04, 0.055)
        carry_z = rng.uniform(0.058, 0.068)
        gripper_open = rng.uniform(0.5, 0.75)
        gripper_squeeze = rng.uniform(*_GRIPPER_SQUEEZE_RAD)
        gripper_speed = rng.uniform(*_GRIPPER_PEAK_SPEED_RAD_S) / pace

        drop_direction = rng.uniform(-np.pi, np.pi)
        drop_xy = bowl[:2] + rng.uniform(0, 0.012) * np.array([math.cos(drop_direction), math.sin(drop_direction)])
        drop_z = BOWL_FLOOR_Z_M + CUBE_HALF_SIZE_M + rng.uniform(0.012, 0.022)
        _, cube_angle, _ = _cylindrical(cube)
        _, drop_angle, _ = _cylindrical(np.r_[drop_xy, 0.0])
        # The operator keeps the wrist still while swinging over, so the heading turns with the pan.
        drop_yaw = grasp_yaw + (drop_angle - cube_angle) + rng.normal(0.0, 0.05)

        start = self.sim.joint_positions()
        self._samples_t = [0.0]
        self._samples_q = [start.copy()]
        self._pose: tuple[np.ndarray, float] | None = None

        start_site, start_heading = self.sim.jaw_pose()
        if start_site[2] < above_z - 0.01:
            # Jaws low (a grasp that missed, a policy handed over mid-reach): straight up first, the gripper as it
            # is, so neither the swing over nor the opening jaw knocks the cube.
            self._move_joints_to_pose((np.r_[start_site[:2], above_z], start_heading), start[-1], duration(1.0, 1.4))
        pre_grasp = (np.r_[grasp_xy, above_z], grasp_yaw)
        if not (self.reach_detour_m > 0 and self._reach_via_detour(pre_grasp, gripper_open, duration)):
            self._move_joints_to_pose(pre_grasp, gripper_open, duration(1.2, 1.9))
        self._hold(duration(0.1, 0.4))
        self._move_cartesian((np.r_[grasp_xy, grasp_z], grasp_yaw), gripper_open, duration(0.7, 1.1))
        self._hold(duration(0.05, 0.3))
        self._move_gripper(gripper_squeeze, gripper_speed, duration(0.35, 0.6))
        self._hold(duration(0.15, 0.35))
        self._move_cartesian((np.r_[grasp_xy, carry_z], grasp_yaw), gripper_squeeze, duration(0.7, 1.1))
        self._move_cartesian((np.r_[drop_xy, carry_z], drop_yaw), gripper_squeeze, duration(1.1, 1.9))
        self._hold(duration(0.0, 0.25))
        self._move_cartesian((np.r_[drop_xy, drop_z], drop_yaw), gripper_squeeze, duration(0.5, 0.9))
        self._move_gripper(rng.uniform(0.45, 0.7), gripper_speed, duration(0.3, 0.6))
        self._hold(duration(0.1, 0.4))
        self._move_cartesian((np.r_[drop_xy, carry_z], drop_yaw), None, duration(0.5, 0.9))
        # The demonstration ends clear above the bowl, once the cube has settled: no return to the rest pose.
        # A return to rest would make the start of every episode (arm at rest, cube on the table) look like its
        # end (arm at rest, task done) except for a few pixels, and a policy trained on both learns to stay put.
        self._hold(duration(0.3, 0.5))

        self._times = np.array(self._samples_t)
        self._targets = np.array(self._samples_q)
        del self._samples_t, self._samples_q, self._pose

    # -- planning helpers ------------------------------------------------------------------------------
    def _reach_via_detour(self, pose: tuple[np.ndarray, float], gripper: float, duration) -> bool:
        """Plan the reach to `pose` through a detour; False (nothing planned) when the via point is out of reach."""
        planned = len(self._samples_t)
        try:
            self._move_joints_to_pose(self._detour(pose), gripper, duration(0.8, 1.2))
            self._move_cartesian(pose, gripper, duration(0.7, 1.1))
        except RuntimeError:
            del self._samples_t[planned:], self._samples_q[planned:]
            return False
        return True

    def _detour(self, pose: tuple[np.ndarray, float]) -> tuple[np.ndarray, float]:
        """A via point up to reach_detour_m off `pose` across the table and 0-4 cm higher: the hand first goes
        roughly toward the cube, then homes in on it. The arm then passes through states from which only the
        cube's position, not the path so far, says where to go."""
        position, yaw = pose
        for _ in range(20):
            offset = self.rng.uniform(-1.0, 1.0, size=2)
            if np.linalg.norm(offset) <= 1.0:
                break
        via = position + np.r_[offset * self.reach_detour_m, self.rng.uniform(0.0, 0.04)]
        radius, _, _ = _cylindrical(via)
        if radius < 0.12:  # never fold in over the base
            via[:2] = position[:2]
        return via, yaw + self.rng.normal(0.0, 0.15)

    def _grasp_heading(self, cube: np.ndarray, other: np.ndarray, bowl: np.ndarray) -> float:
        """Jaw closing heading aligned with two cube faces, reachable with little wrist roll, and with the
        swinging moving jaw kept away from the bowl rim and the other cube."""
        _, cube_angle, _ = _cylindrical(cube)
        cube_yaw = self.sim.cube_yaw(self.task_key)
        candidates = []
        for k in range(4):
            heading = cube_angle + _wrap(cube_yaw + k * math.pi / 2 - cube_angle)
            direction = np.array([math.cos(heading), math.sin(heading)])
            moving_jaw_xy = cube[:2] + 0.045 * direction
            blocked = (
                np.linalg.norm(moving_jaw_xy - bowl[:2]) < _BOWL_OUTER_RADIUS_M + 0.012
                or np.linalg.norm(moving_jaw_xy - other[:2]) < 0.035
            )
            candidates.append((blocked, abs(heading - cube_angle), heading))
        return min(candidates)[2]

    def _solve(self, pose: tuple[np.ndarray, float], initial_q: np.ndarray) -> np.ndarray:
        position, yaw = pose
        q, error = self._ik.solve(position, yaw, initial_q)
        if error > _IK_TOLERANCE_M:
            # Out of reach pointing straight down: let the gripper tilt rather than miss the point.
            q, error = self._ik.solve(position, yaw, q, rotation_weight_m=0.01)
        if error > _IK_TOLERANCE_M:
            raise RuntimeError(
                f"operator cannot reach {np.round(position, 3).tolist()} (IK error {error * 1000:.1f} mm); "
                "objects must lie inside the arm's workspace"
            )
        return q

    def _append(self, duration_s: float, targets: list[np.ndarray]) -> None:
        for q in targets:
            self._samples_t.append(self._samples_t[-1] + duration_s / len(targets))
            self._samples_q.append(q)

    def _steps(self, duration_s: float) -> np.ndarray:
        n = max(1, math.ceil(duration_s / _SAMPLE_PERIOD_S))
        return np.arange(1, n + 1) / n

    def _hold(self, duration_s: float, gripper: float | None = None) -> None:
        start = self._samples_q[-1]
        end = start.copy()
        if gripper is not None:
            end[-1] = gripper
        self._append(duration_s, [start + (end - start) * _min_jerk(s) for s in self._steps(duration_s)])

    def _move_gripper(self, target: float, peak_speed_rad_s: float, min_duration_s: float) -> None:
        """Open or close with the arm still, never faster than `peak_speed_rad_s`."""
        travel = abs(target - self._samples_q[-1][-1])
        self._hold(max(min_duration_s, _MIN_JERK_PEAK_SPEED * travel / peak_speed_rad_s), gripper=target)

    def _move_joints(self, end: np.ndarray, duration_s: float) -> None:
        start = self._samples_q[-1]
        self._append(duration_s, [start + (end - start) * _min_jerk(s) for s in self._steps(duration_s)])
        self._pose = None

    def _move_joints_to_pose(self, pose: tuple[np.ndarray, float], gripper: float, duration_s: float) -> None:
        position, _ = pose
        end = np.r_[self._solve(pose, facing_reach_seed(position)), gripper]
        self._move_joints(end, duration_s)
        self._pose = (np.asarray(position, dtype=np.float64), float(pose[1]))

    def _move_cartesian(self, pose: tuple[np.ndarray, float], gripper: float | None, duration_s: float) -> None:
        """Straight in height and radius, arc-shaped around the base, so carries never cut past the base."""
        if self._pose is None:
            raise RuntimeError("a Cartesian move needs a known start pose; move to a pose first")
        (start_pos, start_yaw), (end_pos, end_yaw) = self._pose, pose
        r0, a0, z0 = _cylindrical(start_pos)
        r1, a1, z1 = _cylindrical(end_pos)
        a1 = a0 + _wrap(a1 - a0)
        q = self._samples_q[-1].copy()
        g0 = q[-1]
        g1 = g0 if gripper is None else gripper
        targets = []
        for s in self._steps(duration_s):
            m = _min_jerk(s)
            r, a, z = r0 + (r1 - r0) * m, a0 + (a1 - a0) * m, z0 + (z1 - z0) * m
            position = np.array([PAN_AXIS_XY[0] + r * math.cos(a), PAN_AXIS_XY[1] + r * math.sin(a), z])
            arm = self._solve((position, start_yaw + (end_yaw - start_yaw) * m), q[:_ARM_JOINTS])
            q = np.r_[arm, g0 + (g1 - g0) * m]
            targets.append(q)
        self._append(duration_s, targets)
        self._pose = (np.asarray(end_pos, dtype=np.float64), float(end_yaw))

    def _tremor(self, t_s: float) -> np.ndarray:
        return (self._tremor_amp * np.sin(2 * np.pi * self._tremor_freq * t_s + self._tremor_phase)).sum(axis=0)

    def _require_plan(self) -> tuple[np.ndarray, np.ndarray]:
        if self._times is None or self._targets is None:
            raise RuntimeError("ScriptedOperator.plan() must be called before asking for targets")
        return self._times, self._targets


# While one joint travels its whole range, a person holds the rest of the arm where the moving links clear the
# table: the forearm folded back for the shoulder, the upper arm tilted back for the elbow (joint radians).
_SWEEP_SUPPORT = {"shoulder_lift": {"elbow_flex": -1.6}, "elbow_flex": {"shoulder_lift": -1.0}}


class RangeSweep:
    """What a person does while LeRobot's calibration records ranges of motion: from the middle pose, each joint
    in turn to one end of its range, to the other, and back, then the next joint; over and over until told to stop.

    `joint_limits_rad` is (6, 2) as `SO101Sim.joint_limits()`; every pass takes `duration_s`. Full-turn joints
    are left out, as LeRobot's prompt says (it records them as the whole encoder turn).
    """

    def __init__(self, joint_limits_rad: np.ndarray, *, full_turn: tuple[str, ...] = ("wrist_roll",),
                 move_s: float = 0.25, travel_s: float = 0.45):
        self.full_turn = tuple(full_turn)
        limits = np.asarray(joint_limits_rad, dtype=np.float64)
        if limits.shape != (len(JOINT_NAMES), 2):
            raise ValueError(f"joint_limits_rad must be ({len(JOINT_NAMES)}, 2), got {limits.shape}")
        middle = np.zeros(len(JOINT_NAMES))
        poses, times = [middle], [0.0]

        def go(pose: np.ndarray, duration_s: float) -> None:
            poses.append(pose)
            times.append(times[-1] + duration_s)

        for index, joint in enumerate(JOINT_NAMES):
            if joint in full_turn:
                continue
            support = middle.copy()
            for other, angle in _SWEEP_SUPPORT.get(joint, {}).items():
                support[JOINT_NAMES.index(other)] = angle
            if not np.array_equal(support, poses[-1]):
                go(support, move_s)
            low, high = support.copy(), support.copy()
            low[index], high[index] = limits[index]
            go(low, move_s)
            go(high, travel_s)
            go(support, move_s)
            if not np.array_equal(support, middle):
                go(middle, move_s)
        self._poses = np.array(poses)
        self._times = np.array(times)

    @property
    def duration_s(self) -> float:
        """One pass through every joint's range."""
        return float(self._times[-1])

    def target_at(self, t_s: float) -> np.ndarray:
        """Joint targets (6,) in radians `t_s` seconds into the sweep; passes repeat."""
        t = float(t_s) % self.duration_s
        index = min(int(np.searchsorted(self._times, t, side="right")) - 1, len(self._times) - 2)
        start, end = self._poses[index], self._poses[index + 1]
        s = (t - self._times[index]) / (self._times[index + 1] - self._times[index])
        return start + (end - start) * _min_jerk(s)
