"""Joint-space keyposes: the joint angles that hover the gripper over each object the policy has located.

The action expert has to turn a few table positions into a reach in joint angles. Learned from a hundred layouts,
that map stays biased toward the average layout: on the virtual SO-101 the first chunk followed the cube's distance
at about 60 % of the shoulder and elbow motion the geometry needs, and the jaws closed 2-3 cm beside the cube. For
an arm whose kinematics the package knows, inverse kinematics gives the map exactly, so the expert can be handed
the answer: for each object, the pan, shoulder, elbow and wrist-flex angles that hover the gripper over it,
pointing down, in the policy's normalised action units. The expert decides per chunk step how much of each to use.
A second height (the grasp's) gives the descent's end as well: the shoulder and elbow angles of a top-down reach
change with the height as much as with the distance, so a hover keypose alone leaves the last centimetres learned.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor, nn

from lerobot_vla_plugin.policies.flow_vla.configuration_flow_vla import KEYPOSE_ARMS

KEYPOSE_JOINTS = 4  # pan, shoulder lift, elbow flex, wrist flex: what a hover point fixes (the roll follows the yaw)
_TABLE_RADII_M = np.linspace(0.06, 0.36, 61)
_IK_TOLERANCE_M = 0.002


@functools.cache
def so101_hover_table(height_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The virtual SO-101's top-down inverse kinematics, tabulated along one ray from the pan axis.

    Returns (pan axis x/y in metres, radii (n,), joint angles (n, 4) in radians at pan angle 0, the pan joint's
    angle per radian of heading about the axis). The arm turns about its pan axis as a rigid whole, so any point
    at that height is a radius lookup plus a pan turn. Radii the gripper cannot reach pointing down are left out.
    """
    from lerobot_vla_plugin.sim.kinematics import TopDownIK
    from lerobot_vla_plugin.sim.so101 import PAN_AXIS_XY, SO101Sim

    ik = TopDownIK(SO101Sim().model)
    seed = np.array([0.0, -0.5, 0.8, 1.2, 0.0])
    radii, joints = [], []
    for radius in _TABLE_RADII_M:
        q, error = ik.solve(np.r_[PAN_AXIS_XY + [radius, 0.0], height_m], 0.0, seed)
        if error <= _IK_TOLERANCE_M:
            radii.append(radius)
            joints.append(q[:KEYPOSE_JOINTS])
            seed = q
    turned, error = ik.solve(np.r_[PAN_AXIS_XY + 0.2 * np.array([np.cos(0.5), np.sin(0.5)]), height_m], 0.5,
                             np.r_[joints[len(joints) // 2], 0.0])
    if error > _IK_TOLERANCE_M:
        raise RuntimeError("the SO-101 model cannot hover 20 cm from its pan axis: its kinematics changed")
    at_zero = np.interp(0.2, radii, np.asarray(joints)[:, 0])
    return PAN_AXIS_XY.copy(), np.asarray(radii), np.asarray(joints), float((turned[0] - at_zero) / 0.5)


class ObjectKeyposes(nn.Module):
    """(B, objects, 2) table x/y in decimetres -> (B, heights x objects, 4) joint angles in normalised action units:
    the keyposes at the first height for every object, then at the next height, and so on.

    The action statistics (mean, std of the first four action dimensions, in the dataset's degrees) are stored in
    the checkpoint: they turn the angles into the units the expert predicts, the ones the pre-processor makes.
    """

    def __init__(self, arm: str, heights_m: tuple[float, ...], position_scale: float,
                 action_stats: dict | None = None):
        super().__init__()
        if arm not in KEYPOSE_ARMS:
            raise ValueError(f"object_keyposes knows the kinematics of {list(KEYPOSE_ARMS)}, not '{arm}'")
        self.position_scale = position_scale
        self.heights = len(heights_m)
        for index, height in enumerate(heights_m):
            origin, radii, joints, pan_per_heading = so101_hover_table(float(height))
            self.register_buffer(f"radii_{index}", torch.tensor(radii, dtype=torch.float32), persistent=False)
            self.register_buffer(f"joints_{index}", torch.tensor(joints, dtype=torch.float32), persistent=False)
        self.pan_per_heading = pan_per_heading  # the arm turns as a whole about its pan axis: the same at any height
        self.register_buffer("origin", torch.tensor(origin, dtype=torch.float32), persistent=False)
        mean, std = torch.zeros(KEYPOSE_JOINTS), torch.ones(KEYPOSE_JOINTS)
        if action_stats is not None:
            mean = torch.as_tensor(np.asarray(action_stats["mean"], dtype=np.float32)).flatten()[:KEYPOSE_JOINTS]
            std = torch.as_tensor(np.asarray(action_stats["std"], dtype=np.float32)).flatten()[:KEYPOSE_JOINTS]
        self.register_buffer("action_mean", mean.clone())
        self.register_buffer("action_std", std.clone())
        self.register_buffer("has_action_stats", torch.tensor(action_stats is not None))

    def radians(self, positions: Tensor, height_index: int = 0) -> Tensor:
        """(..., 2) decimetres -> (..., 4) joint angles in radians at one of the heights, by linear interpolation
        between table radii."""
        radii, joints = getattr(self, f"radii_{height_index}"), getattr(self, f"joints_{height_index}")
        relative = positions.float() / self.position_scale - self.origin
        radius = relative.norm(dim=-1).clamp(float(radii[0]), float(radii[-1]))
        heading = torch.atan2(relative[..., 1], relative[..., 0])
        upper = torch.searchsorted(radii, radius.contiguous()).clamp(1, len(radii) - 1)
        low_r, high_r = radii[upper - 1], radii[upper]
        share = ((radius - low_r) / (high_r - low_r))[..., None]
        angles = joints[upper - 1] * (1 - share) + joints[upper] * share
        pan = angles[..., 0] + self.pan_per_heading * heading
        return torch.cat([pan[..., None], angles[..., 1:]], dim=-1)

    def forward(self, positions: Tensor) -> Tensor:
        if not bool(self.has_action_stats):
            raise ValueError(
                "object_keyposes needs the dataset's action statistics to put the keyposes in the policy's units: "
                "build the policy with the dataset's stats (lerobot-train and make_policy(cfg, ds_meta=...) pass "
                "them) or load a checkpoint trained with object_keyposes.")
        degrees = torch.rad2deg(torch.cat([self.radians(positions, i) for i in range(self.heights)], dim=-2))
        return (degrees - self.action_mean) / (self.action_std + 1e-8)
