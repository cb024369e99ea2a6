"""Inverse kinematics for top-down grasps with the 5-DoF SO-101 arm.

A top-down gripper pose is fully described by a point and a heading (yaw), which the five arm joints
can reach exactly inside the workspace, so a plain damped-least-squares solve on a private MjData is
enough; the live simulation state is never touched.
"""

from __future__ import annotations

import mujoco
import numpy as np

ARM_JOINT_NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")
GRASP_SITE = "grasp_center"


def top_down_rotation(yaw_rad: float) -> np.ndarray:
    """Grasp-site orientation pointing the jaws straight down; the jaws close along the heading `yaw_rad`.

    The grasp site's z axis points from the jaw tips back to the wrist and its x axis is the closing
    direction, so pointing down is a pure rotation about world z.
    """
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class TopDownIK:
    """Damped least squares on position + orientation of the grasp site over the five arm joints."""

    def __init__(self, model: mujoco.MjModel, *, damping: float = 0.01, rotation_weight_m: float = 0.15):
        self.model = model
        self.data = mujoco.MjData(model)
        self.damping = damping
        self.rotation_weight_m = rotation_weight_m  # metres of position error worth one radian of tilt
        joint_ids = [model.joint(n).id for n in ARM_JOINT_NAMES]
        self._qpos_adr = np.array([model.jnt_qposadr[j] for j in joint_ids])
        self._dof_adr = np.array([model.jnt_dofadr[j] for j in joint_ids])
        self._lower = model.jnt_range[joint_ids, 0]
        self._upper = model.jnt_range[joint_ids, 1]
        self._site = model.site(GRASP_SITE).id
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def site_pose(self, arm_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Forward kinematics: grasp-site position and rotation matrix for five arm joint angles."""
        self.data.qpos[self._qpos_adr] = arm_q
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self._site].copy(), self.data.site_xmat[self._site].reshape(3, 3).copy()

    def solve(
        self,
        position: np.ndarray,
        yaw_rad: float,
        initial_q: np.ndarray,
        *,
        max_iterations: int = 200,
        rotation_weight_m: float | None = None,
    ) -> tuple[np.ndarray, float]:
        """Joint angles (5,) placing the grasp site at `position` pointing down with heading `yaw_rad`.

        Returns the solution and its residual position error in metres; callers decide what is close enough.
        A smaller `rotation_weight_m` trades pointing straight down for reaching the point.
        """
        target_rot = top_down_rotation(yaw_rad)
        position = np.asarray(position, dtype=np.float64)
        q = np.clip(np.asarray(initial_q, dtype=np.float64).copy(), self._lower, self._upper)
        w = self.rotation_weight_m if rotation_weight_m is None else rotation_weight_m
        for _ in range(max_iterations):
            self.data.qpos[self._qpos_adr] = q
            mujoco.mj_kinematics(self.model, self.data)
            mujoco.mj_comPos(self.model, self.data)
            rot = self.data.site_xmat[self._site].reshape(3, 3)
            pos_err = position - self.data.site_xpos[self._site]
            rot_err = 0.5 * sum(np.cross(rot[:, i], target_rot[:, i]) for i in range(3))
            if np.linalg.norm(pos_err) < 2e-4 and np.linalg.norm(rot_err) < 2e-3:
                break
            mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self._site)
            jac = np.vstack([self._jacp[:, self._dof_adr], w * self._jacr[:, self._dof_adr]])
            err = np.concatenate([pos_err, w * rot_err])
            dq = jac.T @ np.linalg.solve(jac @ jac.T + self.damping**2 * np.eye(6), err)
            scale = max(1.0, np.abs(dq).max() / 0.25)  # small steps keep the solve on one elbow branch
            q = np.clip(q + dq / scale, self._lower, self._upper)
        final_pos, _ = self.site_pose(q)
        return q, float(np.linalg.norm(position - final_pos))
