"""The MuJoCo SO-101: a faithful joint interface, a randomized scene, a demonstrator that really grasps."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from lerobot_vla_plugin.sim import joint_to_servo_steps, servo_steps_to_joint
from lerobot_vla_plugin.sim.missed_grasp import MISSED_GRASP_KINDS, place_arm_after_missed_grasp
from lerobot_vla_plugin.sim.operator import ScriptedOperator
from lerobot_vla_plugin.sim.render import SceneRenderer
from lerobot_vla_plugin.sim.so101 import JOINT_NAMES, REST_POSE, TASKS, SO101Sim

CONTROL_PERIOD_S = 1 / 30


def run_demonstration(sim: SO101Sim, task_key: str, operator_seed: int,
                      reach_detour_m: float = 0.0) -> tuple[bool, float]:
    """The follower tracks the operator's leader targets every control period; returns success and lift height."""
    operator = ScriptedOperator(sim, task_key, np.random.default_rng(operator_seed), reach_detour_m=reach_detour_m)
    operator.plan()
    cube = f"{task_key}_cube"
    highest_cube_z = 0.0
    tick = 0
    while not operator.done(tick * CONTROL_PERIOD_S):
        sim.set_joint_targets(operator.target_at(tick * CONTROL_PERIOD_S))
        sim.step(CONTROL_PERIOD_S)
        tick += 1
        highest_cube_z = max(highest_cube_z, sim.object_positions()[cube][2])
    sim.step(0.5)  # let the dropped cube settle
    return sim.is_success(task_key), highest_cube_z


def test_model_has_lerobot_joint_names_and_so101_limits():
    sim = SO101Sim(seed=0)
    assert [sim.model.joint(i).name for i in range(6)] == list(JOINT_NAMES)
    assert [sim.model.actuator(i).name for i in range(sim.model.nu)] == list(JOINT_NAMES)
    limits = sim.joint_limits()
    assert limits.shape == (6, 2)
    np.testing.assert_allclose(limits[0], [-1.91986, 1.91986], atol=1e-4)  # shoulder_pan ±110°
    np.testing.assert_allclose(limits[1], [-1.74533, 1.74533], atol=1e-4)  # shoulder_lift ±100°
    np.testing.assert_allclose(limits[5], [-0.17453, 1.74533], atol=1e-4)  # gripper -10°..100°
    np.testing.assert_allclose(sim.joint_positions(), REST_POSE, atol=1e-9)


def test_position_actuators_reach_a_target_and_report_load():
    sim = SO101Sim(seed=0)
    target = np.array([0.5, 0.3, -0.4, 0.6, 1.0, 0.8])
    sim.set_joint_targets(target)
    sim.step(1.5)
    np.testing.assert_allclose(sim.joint_positions(), target, atol=0.01)
    assert np.all(np.abs(sim.joint_velocities()) < 0.05)
    # Holding the arm out against gravity loads the shoulder servo, within the STS3215 stall torque.
    efforts = sim.joint_efforts()
    assert abs(efforts[1]) > 0.05
    assert np.all(np.abs(efforts) <= 2.94 + 1e-6)


def test_targets_are_clipped_to_the_servo_range_and_shape_is_checked():
    sim = SO101Sim(seed=0)
    sim.set_joint_targets(np.full(6, 10.0))
    np.testing.assert_allclose(sim.data.ctrl, sim.model.actuator_ctrlrange[:, 1])
    with pytest.raises(ValueError, match="expected 6 joint targets"):
        sim.set_joint_targets(np.zeros(5))


def test_step_advances_exactly_the_requested_time_over_many_control_periods():
    sim = SO101Sim(seed=0)
    for _ in range(30):
        sim.step(CONTROL_PERIOD_S)
    assert sim.time_s == pytest.approx(1.0, abs=sim.control_timestep_s)


def test_reset_randomizes_objects_reproducibly_per_seed():
    def layout(seed: int) -> np.ndarray:
        sim = SO101Sim(seed=seed)
        return np.concatenate(list(sim.object_positions().values()))

    np.testing.assert_array_equal(layout(3), layout(3))
    assert np.linalg.norm(layout(3) - layout(4)) > 0.01

    sim = SO101Sim(seed=0)
    first = sim.object_positions()
    sim.reset()
    assert np.linalg.norm(sim.object_positions()["red_cube"] - first["red_cube"]) > 1e-3
    sim.reset(seed=0)
    np.testing.assert_array_equal(sim.object_positions()["red_cube"], first["red_cube"])


def test_reset_places_cubes_apart_and_outside_the_bowl():
    for seed in range(5):
        objects = SO101Sim(seed=seed).object_positions()
        assert np.linalg.norm(objects["red_cube"][:2] - objects["blue_cube"][:2]) >= 0.06
        for cube in ("red_cube", "blue_cube"):
            assert np.linalg.norm(objects[cube][:2] - objects["bowl"][:2]) >= 0.1


@pytest.mark.parametrize("task_key", sorted(TASKS))
def test_scripted_operator_puts_the_cube_in_the_bowl(task_key):
    successes = 0
    for seed in range(5):
        sim = SO101Sim(seed=seed)
        assert not sim.is_success(task_key)
        succeeded, highest_cube_z = run_demonstration(sim, task_key, operator_seed=100 + seed)
        # The cube left the table (clears the bowl rim), so it was carried by a friction grasp, not pushed.
        assert highest_cube_z > 0.04
        successes += succeeded
    assert successes >= 4


def test_a_detour_reach_still_puts_the_cube_in_the_bowl():
    """With reach_detour_m the hand first heads for a point off the cube, then homes in; the task still succeeds."""
    successes, detoured = 0, 0
    for seed in range(6):
        task_key = sorted(TASKS)[seed % 2]
        sim = SO101Sim(seed=seed)
        straight = ScriptedOperator(sim, task_key, np.random.default_rng(seed))
        straight.plan()
        detour = ScriptedOperator(sim, task_key, np.random.default_rng(seed), reach_detour_m=0.06)
        detour.plan()
        moments = np.linspace(0.0, 1.0, 10)
        detoured += max(np.abs(detour.target_at(t) - straight.target_at(t))[:5].max() for t in moments) > 0.05
        succeeded, _ = run_demonstration(sim, task_key, operator_seed=seed, reach_detour_m=0.06)
        successes += succeeded
    assert successes >= 5 and detoured >= 4
    with pytest.raises(ValueError, match="reach_detour_m"):
        ScriptedOperator(SO101Sim(seed=0), "red", np.random.default_rng(0), reach_detour_m=-0.01)


def test_the_operator_goes_back_for_the_cube_from_where_a_missed_grasp_leaves_the_arm():
    """Both kinds of start pose touch nothing and leave the cube where it was, the jaws away from it; from each the
    operator opens, goes back and finishes the task."""
    kinds, successes = [], 0
    for seed in range(8):
        task_key = sorted(TASKS)[seed % 2]
        sim = SO101Sim(seed=seed)
        cube = sim.object_positions()[f"{task_key}_cube"].copy()
        kinds.append(place_arm_after_missed_grasp(sim, task_key, np.random.default_rng(seed)))
        pose = sim.joint_positions()
        limits = sim.joint_limits()
        assert np.all((pose >= limits[:, 0]) & (pose <= limits[:, 1]))
        assert np.abs(pose - REST_POSE)[:5].max() > 0.2
        np.testing.assert_allclose(sim.object_positions()[f"{task_key}_cube"], cube)
        jaws, _ = sim.jaw_pose()
        assert np.linalg.norm(jaws[:2] - cube[:2]) >= 0.02 and jaws[2] >= cube[2] + 0.01
        if kinds[-1] == MISSED_GRASP_KINDS[0]:
            assert pose[5] < 0.15  # closed on nothing
        sim.step(0.3)  # the joint targets are the pose: the arm stays there
        assert np.abs(sim.joint_positions() - pose).max() < 0.05
        succeeded, _ = run_demonstration(sim, task_key, operator_seed=seed)
        successes += succeeded
    assert set(kinds) == set(MISSED_GRASP_KINDS) and successes >= 7


def test_plans_from_different_generators_differ():
    sim = SO101Sim(seed=7)
    plans = []
    for operator_seed in (1, 2):
        operator = ScriptedOperator(sim, "red", np.random.default_rng(operator_seed))
        operator.plan()
        plans.append(operator)
    assert plans[0].duration_s != plans[1].duration_s
    moments = np.linspace(0.0, min(p.duration_s for p in plans), 20)
    difference = [np.abs(plans[0].target_at(t) - plans[1].target_at(t)).max() for t in moments]
    assert max(difference) > 0.05
    same_seed = ScriptedOperator(sim, "red", np.random.default_rng(1))
    same_seed.plan()
    np.testing.assert_array_equal(same_seed.target_at(2.0), plans[0].target_at(2.0))


def test_operator_targets_are_smooth_and_start_at_the_current_pose():
    sim = SO101Sim(seed=2)
    operator = ScriptedOperator(sim, "blue", np.random.default_rng(0))
    with pytest.raises(RuntimeError, match="plan"):
        operator.target_at(0.0)
    operator.plan()
    np.testing.assert_allclose(operator.target_at(0.0)[:5], REST_POSE[:5], atol=0.01)
    targets = np.array([operator.target_at(t) for t in np.arange(0.0, operator.duration_s, CONTROL_PERIOD_S)])
    largest_step_per_period = np.abs(np.diff(targets, axis=0)).max()
    assert largest_step_per_period < 0.15  # under 4.5 rad/s anywhere: no jumps a servo could not follow
    assert operator.done(operator.duration_s) and not operator.done(0.0)


def test_operator_opens_and_closes_the_gripper_at_a_hand_speed():
    """A grasp or release takes longer the wider the gripper moves: no snap that reads as a jump at 30 fps."""
    for seed in range(4):
        sim = SO101Sim(seed=seed)
        operator = ScriptedOperator(sim, sorted(TASKS)[seed % 2], np.random.default_rng(seed))
        operator.plan()
        gripper = [operator.target_at(t)[-1] for t in np.arange(0.0, operator.duration_s, CONTROL_PERIOD_S)]
        assert np.ptp(gripper) > 0.4  # it really opened and closed
        assert np.abs(np.diff(gripper)).max() < 0.055  # under 1.65 rad/s


def test_unknown_task_is_rejected_with_the_valid_choices():
    sim = SO101Sim(seed=0)
    with pytest.raises(KeyError, match="red"):
        sim.is_success("green")
    with pytest.raises(KeyError, match="blue"):
        ScriptedOperator(sim, "green", np.random.default_rng(0))


def red_pixel_count(image: np.ndarray) -> int:
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return int(((r > 120) & (g < 70) & (b < 70)).sum())


def test_front_camera_sees_the_red_cube_and_images_have_the_requested_shape():
    sim = SO101Sim(seed=0)
    with SceneRenderer(sim, width=160, height=120) as renderer:
        front = renderer.render("front")
        assert front.shape == (120, 160, 3) and front.dtype == np.uint8
        assert renderer.render("wrist").shape == (120, 160, 3)
        assert red_pixel_count(front) >= 5

        # The red pixels are the cube: drop it below the table and they are gone.
        cube_qpos = sim.model.jnt_qposadr[sim.model.joint("red_cube").id]
        sim.data.qpos[cube_qpos + 2] = -0.5
        mujoco.mj_forward(sim.model, sim.data)
        assert red_pixel_count(renderer.render("front")) == 0
        with pytest.raises(ValueError, match="unknown camera"):
            renderer.render("top")


def test_servo_step_mapping_is_centered_and_invertible():
    np.testing.assert_array_equal(joint_to_servo_steps(np.array([0.0, np.pi / 2, -np.pi / 2])), [2048, 3072, 1024])
    angles = np.linspace(-2.7, 2.8, 11)
    np.testing.assert_allclose(servo_steps_to_joint(joint_to_servo_steps(angles)), angles, atol=np.pi / 4096)
    assert joint_to_servo_steps(np.array([4.0]))[0] == 4095  # clipped to the 12-bit encoder range


def test_demonstration_ends_open_and_lifted_clear_above_the_bowl_not_back_at_rest():
    """Demonstrations stop once the cube is released: a return to the rest pose would make an episode's end look
    like its start to a policy (arm at rest over the table) and teach it to stay put."""
    sim = SO101Sim(seed=4)
    succeeded, _ = run_demonstration(sim, "red", operator_seed=104)
    assert succeeded
    gripper = sim.data.xpos[sim.model.body("gripper").id]
    bowl = sim.object_positions()["bowl"]
    assert np.linalg.norm(gripper[:2] - bowl[:2]) < 0.06 and gripper[2] > 0.05
    assert np.abs(sim.joint_positions()[:5] - REST_POSE[:5]).max() > 0.3
