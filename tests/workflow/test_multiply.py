"""Data multiplication on the virtual SO-101: recorded demonstrations split at the gripper, re-targeted to new
layouts within the arm's reach and joint limits, replayed through the real recording path, failures dropped."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lerobot_vla_plugin import cli
from lerobot_vla_plugin.sim.retarget import RetargetError, Retargeter, split_phases
from lerobot_vla_plugin.sim.so101 import SO101Sim

from .conftest import load_dataset

SOURCE_REPO = "local/multiply_source"
FAST = ["--virtual_cameras=front", "--camera_width=32", "--camera_height=32", "--report=false", "--keyboard=none"]


@pytest.fixture(scope="module")
def source_root(tmp_path_factory):
    """Two whole demonstrations (red, then blue) recorded hands-free."""
    root = tmp_path_factory.mktemp("multiply") / "source"
    assert cli.main(["record", "--virtual", "so101", f"--dataset.repo_id={SOURCE_REPO}", f"--dataset.root={root}",
                     "--dataset.num_episodes=2", "--dataset.episode_time_s=20", *FAST]) == 0
    return root


@pytest.fixture(scope="module")
def sources(source_root):
    from lerobot_vla_plugin.workflow.multiply import load_sources

    return load_sources(load_dataset(source_root, SOURCE_REPO))


def test_a_recorded_episode_splits_at_the_grasp_and_the_release(sources):
    red = sources[0]
    retargeter = Retargeter(SO101Sim())
    positions, _ = retargeter.gripper_poses(red.joint_targets)
    phases = split_phases(red.joint_targets, positions)
    assert 0 < phases.above_cube < phases.grasp < phases.above_bowl < phases.release < len(red.joint_targets)
    assert np.linalg.norm(positions[phases.grasp, :2] - red.cube_xy) < 0.015  # the jaws close around the cube
    assert np.linalg.norm(positions[phases.release, :2] - red.bowl_xy) < 0.04  # and open over the bowl


def test_retargeting_follows_the_cube_and_the_bowl_within_the_joint_limits(sources):
    red = sources[0]
    sim = SO101Sim()
    retargeter = Retargeter(sim)
    positions, _ = retargeter.gripper_poses(red.joint_targets)
    phases = split_phases(red.joint_targets, positions)

    same = retargeter.retarget(red, red.cube_xy, red.cube_yaw, red.bowl_xy)
    moved_same, _ = retargeter.gripper_poses(same.targets)
    assert np.abs(moved_same[phases.above_cube:] - positions[phases.above_cube:]).max() < 0.004

    cube_xy, bowl_xy = red.cube_xy + np.array([0.03, 0.05]), red.bowl_xy + np.array([-0.02, 0.03])
    path = retargeter.retarget(red, cube_xy, red.cube_yaw + 0.3, bowl_xy)
    moved, _ = retargeter.gripper_poses(path.targets)
    grasp_offset = positions[phases.grasp, :2] - red.cube_xy  # where on the cube the source gripped
    np.testing.assert_allclose(moved[phases.grasp, :2], cube_xy + grasp_offset, atol=0.004)
    np.testing.assert_allclose(moved[phases.release, :2] - bowl_xy, positions[phases.release, :2] - red.bowl_xy,
                               atol=0.004)
    limits = sim.joint_limits()
    assert (path.targets >= limits[:, 0] - 1e-9).all() and (path.targets <= limits[:, 1] + 1e-9).all()
    np.testing.assert_array_equal(path.targets[:, -1], red.joint_targets[:, -1])  # the hand's own gripper signal
    assert path.provenance["source_episode"] == red.episode
    assert path.provenance["cube_shift_x_m"] == pytest.approx(0.03)


def test_a_layout_out_of_reach_or_a_demonstration_without_a_grasp_is_refused(sources):
    red = sources[0]
    retargeter = Retargeter(SO101Sim())
    with pytest.raises(RetargetError, match="out of the arm's reach"):
        retargeter.retarget(red, np.array([0.7, 0.5]), red.cube_yaw, red.bowl_xy)
    never_closes = red.joint_targets.copy()
    never_closes[:, -1] = np.linspace(0.0, 0.6, len(never_closes))
    with pytest.raises(RetargetError, match="never closes"):
        split_phases(never_closes, retargeter.gripper_poses(never_closes)[0])


def test_failed_replays_are_dropped_and_the_next_scene_is_tried(source_root, sources, tmp_path):
    """The first take cannot succeed (the arm holds still) and the second ends in a servo overload: both are
    dropped (the follower power-cycled after the fault, as an operator would), and the saved episode is the third
    scene's, a success with its provenance."""
    import shutil

    from lerobot_vla_plugin.sim.retarget import JointPath
    from lerobot_vla_plugin.workflow.multiply import RetargetingPlanner, record_config
    from lerobot_vla_plugin.workflow.record_session import RecordSession

    planner = RetargetingPlanner(sources, np.random.default_rng(0), SO101Sim())
    calls = []

    def first_one_fails(planning, task, rng):
        calls.append(task)
        if len(calls) == 1:
            start = planning.joint_positions()
            return JointPath(np.array([0.0, 0.5]), np.stack([start, start]), {"demonstration": "unreachable"})
        return planner(planning, task, rng)

    output = tmp_path / "multiplied"
    shutil.copytree(source_root, output)
    source = load_dataset(source_root, SOURCE_REPO)
    def overload_in_second_take(session, frame):
        if len(calls) == 2 and frame == 5:
            session.virtual.follower_bus.servo(1).latched_status |= 0x20  # the overload protection tripped

    printed = []
    result = RecordSession(record_config(source, output, "local/multiplied", 1, ["red", "blue"], 7),
                           demonstration_planner=first_one_fails, successes_only=True, out=printed.append,
                           on_frame=overload_in_second_take).run()
    assert result.exit_code == 0, result.message
    assert result.failed_task == 2 and result.saved == 1 and len(calls) == 3
    assert any("the task failed" in line for line in printed) and any("servo fault" in line for line in printed)
    episodes = load_dataset(output, "local/multiplied").meta.episodes
    assert list(episodes["demonstration"]) == ["scripted", "scripted", "retargeted"]
    assert list(episodes["is_success"]) == [True, True, True]
    assert int(episodes["scene_seed"][2]) not in {int(seed) for seed in episodes["scene_seed"][:2]}


def test_multiply_command_writes_a_dataset_stock_lerobot_trains_on(source_root, tmp_path, capsys):
    from policy.conftest import TINY_POLICY_FLAGS
    from policy.test_lerobot_train import TRAIN_LOG_LINE, run_lerobot_train

    output = tmp_path / "times2"
    assert cli.main(["multiply", str(source_root), "--factor", "2", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "Generated 2 episodes" in printed and "scenes accepted" in printed
    dataset = load_dataset(output, "local/times2")
    episodes = dataset.meta.episodes
    assert dataset.num_episodes == 4 and list(episodes["demonstration"]) == ["scripted"] * 2 + ["retargeted"] * 2
    tasks = [t[0] for t in episodes["tasks"]]
    for generated in (2, 3):  # each re-targets a source episode of its own task
        assert tasks[int(episodes["source_episode"][generated])] == tasks[generated]
    assert sorted(tasks[2:]) == sorted(tasks[:2])
    assert all(episodes["is_success"])
    assert cli.main(["multiply", str(source_root), "--factor", "2", "--output", str(output)]) == 2  # never overwrites

    result = run_lerobot_train(
        ["--policy.type=flow_vla", *TINY_POLICY_FLAGS, "--dataset.repo_id=local/times2", f"--dataset.root={output}",
         "--policy.device=cpu", "--policy.push_to_hub=false", "--steps=2", "--batch_size=2", "--num_workers=0",
         "--log_freq=1", "--save_freq=2", "--eval_freq=0", "--wandb.enable=false",
         "--policy.object_position_loss_weight=1", f"--output_dir={tmp_path / 'train'}"], tmp_path)
    assert [int(step) for step, _ in TRAIN_LOG_LINE.findall(result.stdout + result.stderr)] == [1, 2]

    # The payoff benchmark's plumbing at smoke size, reusing this output (the multiplied set stands in for the
    # larger recording too): three policies, trained on 2, 2 + 2 and 4 demonstrations, evaluated on the same scenes.
    bench = tmp_path / "bench"
    assert cli.main(["bench", "multiply", "--quick", "--source", str(source_root), "--recorded", str(output),
                     "--multiplied", str(output), "--factor", "2", "--steps", "2", "--batch-size", "2",
                     "--chunk-size", "8", "--eval-episodes", "2", "--episode-time-s", "0.3",
                     "--output-dir", str(bench)]) == 0
    printed = capsys.readouterr().out
    rows = json.loads((bench / "multiply.json").read_text())
    assert [(r["policy"], r["demos"]) for r in rows] == [("2 recorded", 2), ("2 rec + 2 generated", 4),
                                                         ("4 recorded", 4)]
    scenes = {json.dumps([e["scene_seed"] for e in json.loads(p.read_text())["episodes"]])
              for p in bench.glob("eval_*/eval_episodes.json")}
    assert len(scenes) == 1 and all(r["summary"]["all"]["episodes"] == 2 for r in rows)
    assert "vs recorded" in printed and "Reusing the multiplied dataset" in printed


def test_generation_that_never_succeeds_stops_with_the_cause(source_root, tmp_path, monkeypatch):
    import shutil

    from lerobot_vla_plugin.sim.retarget import JointPath
    from lerobot_vla_plugin.workflow import record_session
    from lerobot_vla_plugin.workflow.multiply import record_config
    from lerobot_vla_plugin.workflow.record_session import EXIT_FAULT, RecordSession

    monkeypatch.setattr(record_session, "_MAX_FAILED_GENERATIONS_IN_ROW", 2)

    def holds_still(planning, task, rng):
        start = planning.joint_positions()
        return JointPath(np.array([0.0, 0.5]), np.stack([start, start]), {"demonstration": "unreachable"})

    output = tmp_path / "never"
    shutil.copytree(source_root, output)
    result = RecordSession(record_config(load_dataset(source_root, SOURCE_REPO), output, "local/never", 3,
                                         ["red", "blue"], 9),
                           demonstration_planner=holds_still, successes_only=True, out=lambda _: None).run()
    assert result.exit_code == EXIT_FAULT and result.failed_task == 2 and result.saved == 0
    assert "2 generated takes in a row failed" in result.message
    assert load_dataset(output, "local/never").num_episodes == 2  # the source episodes are untouched
