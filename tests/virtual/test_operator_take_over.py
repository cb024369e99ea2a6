"""The scripted operator on call (the person a rollout hands the arm to) takes the leader and does the task from
the scene as the policy left it; where its plan cannot go, it holds the leader still instead of stopping the run."""

from __future__ import annotations

import logging

import mujoco
import numpy as np

from lerobot_vla_plugin.emulator.virtual_arm import VirtualSO101
from lerobot_vla_plugin.sim.missed_grasp import MISSED_GRASP_KINDS
from lerobot_vla_plugin.sim.so101 import JOINT_NAMES, REST_POSE


def move_cube(virtual: VirtualSO101, task: str, xy: tuple[float, float]) -> None:
    sim = virtual.sim
    with virtual.lock:
        address = sim.model.jnt_qposadr[sim.model.joint(f"{task}_cube").id]  # its free joint: x, y, z, quaternion
        sim.data.qpos[address:address + 2] = xy
        mujoco.mj_forward(sim.model, sim.data)


def test_the_operator_takes_over_a_reachable_scene_and_holds_the_leader_in_an_unreachable_one(caplog):
    with VirtualSO101(lockstep=True, camera_socket=None, operator_on_call=True) as virtual:
        virtual.new_episode("red", seed=3)
        virtual.operator_take_over()
        assert virtual.operator is not None  # a plan from this scene

        virtual.new_episode("red", seed=4)
        move_cube(virtual, "red", (0.70, 0.0))  # pushed far beyond the arm's reach
        with caplog.at_level(logging.WARNING):
            virtual.operator_take_over()
        assert virtual.operator is None
        assert "cannot finish this episode" in caplog.text and "operator cannot reach" in caplog.text
        held = virtual.leader_joint_targets()
        virtual.sim.step(0.5)
        np.testing.assert_allclose(virtual.leader_joint_targets(), held)


def test_a_share_of_episodes_starts_where_a_missed_grasp_leaves_the_arm():
    """The follower's servos start at the placed pose and the operator's plan starts there too: no jump when the
    recorder's first goal arrives."""
    with VirtualSO101(lockstep=True, camera_socket=None) as virtual:
        virtual.missed_grasp_start_fraction = 0.5
        starts = []
        for seed in range(8):
            virtual.new_episode("red", seed=seed)
            starts.append(virtual.start_pose)
            pose = virtual.sim.joint_positions()
            np.testing.assert_allclose(virtual.leader_joint_targets()[:5], pose[:5], atol=0.01)
            np.testing.assert_allclose([virtual.arm.actuators[j].goal_rad for j in JOINT_NAMES], pose)
            assert (starts[-1] == "rest") == bool(np.allclose(pose, REST_POSE))
        assert 0 < starts.count("rest") < 8 and set(starts) - {"rest"} <= set(MISSED_GRASP_KINDS)
        virtual.missed_grasp_start_fraction = 0.0
        virtual.new_episode("red", seed=0)
        assert virtual.start_pose == "rest"
