"""Our registered robot on the virtual SO-101: the `vla_so101_follower` on its follower port, `vla_sim_camera`s.

Recording and evaluation drive the same robot class a real arm uses, through the emulated servo bus, so what is
recorded or measured includes the follower's safety clamps, its calibration and the bus; only the world behind the
servos is simulated.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lerobot_vla_plugin.sim.so101 import JOINT_NAMES

IMAGE_PREFIX = "observation.images."
# Lockstep: get_observation must reuse the positions the control tick just read; a second read would be a
# second tick and move simulated time twice per step.
LOCKSTEP_OBSERVATION_REUSE_MS = 3_600_000.0


def cameras_for_image_features(image_shapes: dict[str, tuple[int, ...]], fps: int) -> dict:
    """One `vla_sim_camera` per policy image feature (`observation.images.<camera>`, shape (3, H, W))."""
    from lerobot_vla_plugin.cameras.config_virtual_camera import VirtualCameraConfig

    cameras = {}
    for key, shape in image_shapes.items():
        if not key.startswith(IMAGE_PREFIX) or len(shape) != 3:
            raise ValueError(f"image feature {key!r} with shape {shape} is not a camera image "
                             f"({IMAGE_PREFIX}<camera>, shape (3, height, width))")
        name = key.removeprefix(IMAGE_PREFIX)
        cameras[name] = VirtualCameraConfig(camera=name, width=int(shape[2]), height=int(shape[1]), fps=fps)
    return cameras


def virtual_follower_config(virtual, calibration_dir: Path, cameras: dict):
    """A `vla_so101_follower` config on `virtual`'s follower port, calibrated as the virtual arm's servos are."""
    from lerobot_vla_plugin.robots.so_follower.config_so_follower import VlaSO101FollowerConfig

    robot_id = "virtual_follower"
    virtual.write_calibration_file(Path(calibration_dir) / f"{robot_id}.json", "follower")
    return VlaSO101FollowerConfig(
        port=virtual.follower_port, id=robot_id, calibration_dir=Path(calibration_dir), cameras=cameras,
        observation_reuse_ms=LOCKSTEP_OBSERVATION_REUSE_MS if virtual.lockstep else 2.0)


def virtual_leader_config(virtual, calibration_dir: Path):
    """A `vla_so101_leader` config on `virtual`'s leader port, calibrated as the virtual leader's servos are."""
    from lerobot_vla_plugin.teleoperators.so_leader.config_so_leader import VlaSO101LeaderConfig

    leader_id = "virtual_leader"
    virtual.write_calibration_file(Path(calibration_dir) / f"{leader_id}.json", "leader")
    return VlaSO101LeaderConfig(port=virtual.leader_port, id=leader_id, calibration_dir=Path(calibration_dir))


def follower_action_from_joint_angles(q_rad: np.ndarray, joint_limits_rad: np.ndarray) -> dict[str, float]:
    """Joint radians -> the follower's action units: degrees for the arm joints (the virtual arm's calibration
    reads the simulated angle), 0..100 of the calibrated range for the gripper."""
    q = np.asarray(q_rad, dtype=np.float64)
    action = {f"{joint}.pos": float(np.degrees(q[i])) for i, joint in enumerate(JOINT_NAMES[:-1])}
    low, high = joint_limits_rad[-1]
    action[f"{JOINT_NAMES[-1]}.pos"] = float(100.0 * (q[-1] - low) / (high - low))
    return action


def joint_angles_from_follower_actions(actions: np.ndarray, joint_limits_rad: np.ndarray) -> np.ndarray:
    """The inverse of `follower_action_from_joint_angles` for recorded action rows (..., 6) in JOINT_NAMES order."""
    values = np.asarray(actions, dtype=np.float64)
    q = np.radians(values).copy()
    low, high = joint_limits_rad[-1]
    q[..., -1] = low + values[..., -1] / 100.0 * (high - low)
    return q
