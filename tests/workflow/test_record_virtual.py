"""Hands-free recording from the virtual SO-101 through the real teleop path, read back with stock LeRobot."""

from __future__ import annotations

import numpy as np
import pytest

from lerobot_vla_plugin import cli
from lerobot_vla_plugin.sim.features import (
    OBJECT_NAMED_POSITION_NAMES,
    OBJECT_NAMED_POSITIONS_FEATURE,
    OBJECT_POSITION_NAMES,
    OBJECT_POSITIONS_FEATURE,
    OBJECT_START_POSITIONS_FEATURE,
)
from lerobot_vla_plugin.sim.so101 import SO101Sim
from lerobot_vla_plugin.workflow.record import EXIT_FAULT, EXIT_USAGE, RecordSession
from lerobot_vla_plugin.workflow.record_config import UsageError

from .conftest import JOINTS, load_dataset, total_episodes, virtual_args, virtual_config


def test_one_command_records_a_two_task_dataset_that_stock_lerobot_loads(tmp_path, capsys):
    root = tmp_path / "demo"
    assert cli.main(["record", *virtual_args(root, "--dataset.num_episodes=2", "--tasks", "red,blue")]) == 0
    printed = capsys.readouterr().out
    assert "Episode 0 saved: 'put the red cube in the bowl', 30 frames" in printed
    assert "Episode 1 saved: 'put the blue cube in the bowl', 30 frames" in printed

    dataset = load_dataset(root)
    assert dataset.fps == 30 and dataset.num_episodes == 2 and len(dataset) == 60
    assert dataset.meta.robot_type == "vla_so101_follower"
    features = dataset.meta.features
    assert features["action"]["names"] == [f"{j}.pos" for j in JOINTS]
    assert features["observation.state"]["names"] == [f"{j}.pos" for j in JOINTS]
    for camera in ("front", "wrist"):
        assert features[f"observation.images.{camera}"]["dtype"] == "video"
        assert tuple(features[f"observation.images.{camera}"]["shape"]) == (48, 64, 3)

    episodes = dataset.meta.episodes
    assert [tasks for tasks in episodes["tasks"]] == [["put the red cube in the bowl"],
                                                     ["put the blue cube in the bowl"]]
    # Lockstep: one control tick per frame, so the data is exactly at 30 Hz whatever the machine's speed.
    assert list(episodes["achieved_hz"]) == [30.0, 30.0]
    assert list(episodes["camera_fps/front"]) == [30.0, 30.0]
    assert list(episodes["camera_fps/wrist"]) == [30.0, 30.0]
    assert list(episodes["cadence_clock"]) == ["lockstep", "lockstep"]
    assert all(hz > 0 for hz in episodes["wall_clock_hz"])

    last = dataset[len(dataset) - 1]
    assert last["task"] == "put the blue cube in the bowl"
    assert tuple(last["observation.images.front"].shape) == (3, 48, 64)  # decoded from the video
    # The follower moved: the scripted operator drove it through the leader.
    states = np.stack([np.asarray(s) for s in dataset.hf_dataset["observation.state"]])
    assert np.ptp(states[:30], axis=0).max() > 1.0

    # Each frame says where the objects are, the instructed cube first: the layout of the episode's scene seed.
    assert features[OBJECT_POSITIONS_FEATURE]["names"] == list(OBJECT_POSITION_NAMES)
    positions = np.stack([np.asarray(p) for p in dataset.hf_dataset[OBJECT_POSITIONS_FEATURE]])
    sim = SO101Sim()
    for episode, task in ((0, "red"), (1, "blue")):
        sim.reset(int(episodes["scene_seed"][episode]))
        np.testing.assert_allclose(positions[30 * episode, [0, 1, 3, 4, 6, 7]],
                                   sim.task_object_positions(task)[[0, 1, 3, 4, 6, 7]], atol=2e-3)
    # And where they were when the episode started, in every frame of it (the cube moves, this does not).
    starts = np.stack([np.asarray(p) for p in dataset.hf_dataset[OBJECT_START_POSITIONS_FEATURE]])
    for episode in (0, 1):
        frames = slice(30 * episode, 30 * episode + 30)
        np.testing.assert_array_equal(starts[frames], np.repeat(positions[30 * episode][None], 30, axis=0))
    # The same objects by name, whatever the task: red cube, blue cube, bowl.
    assert features[OBJECT_NAMED_POSITIONS_FEATURE]["names"] == list(OBJECT_NAMED_POSITION_NAMES)
    named = np.stack([np.asarray(p) for p in dataset.hf_dataset[OBJECT_NAMED_POSITIONS_FEATURE]])
    np.testing.assert_array_equal(named[:30], positions[:30])  # the red task names the red cube first
    np.testing.assert_array_equal(named[30:], positions[30:][:, [3, 4, 5, 0, 1, 2, 6, 7, 8]])

    # Resuming with another camera set is refused before anything moves; the dataset is untouched.
    one_camera = RecordSession(virtual_config(root, "--resume", "--virtual_cameras=front"), out=lambda _: None).run()
    assert one_camera.exit_code == EXIT_USAGE
    assert "cameras: dataset has ['observation.images.front', 'observation.images.wrist']" in one_camera.message
    assert total_episodes(root) == 2


def test_resume_continues_the_dataset_and_refuses_different_settings(tmp_path):
    root = tmp_path / "resumable"
    first = RecordSession(virtual_config(root, "--dataset.num_episodes=1", "--dataset.video=false"),
                          out=lambda _: None).run()
    assert first.exit_code == 0 and first.total_episodes == 1

    again = RecordSession(virtual_config(root, "--dataset.num_episodes=1", "--dataset.video=false", "--resume"),
                          out=lambda _: None).run()
    assert again.exit_code == 0 and again.saved == 1 and again.total_episodes == 2
    dataset = load_dataset(root)
    assert [t for t in dataset.meta.episodes["tasks"]] == [["put the red cube in the bowl"],
                                                         ["put the blue cube in the bowl"]]  # alternation goes on

    other_fps = RecordSession(virtual_config(root, "--dataset.video=false", "--resume", "--dataset.fps=15"),
                              out=lambda _: None).run()
    assert other_fps.exit_code == EXIT_USAGE and "fps: dataset 30, now 15" in other_fps.message
    assert total_episodes(root) == 2


def test_a_virtual_dataset_recorded_without_later_position_features_resumes_without_them(tmp_path):
    """Datasets recorded before the episode-start or the by-name positions existed go on as they were recorded."""
    import json

    position_feature = {"dtype": "float32", "shape": [9], "names": list(OBJECT_POSITION_NAMES)}
    every = [OBJECT_POSITIONS_FEATURE, OBJECT_START_POSITIONS_FEATURE, OBJECT_NAMED_POSITIONS_FEATURE]
    oldest, older, newest = tmp_path / "oldest", tmp_path / "older", tmp_path / "newest"
    for root, keys in ((oldest, every[:1]), (older, every[:2]), (newest, every)):
        (root / "meta").mkdir(parents=True)
        (root / "meta" / "info.json").write_text(json.dumps({"features": {k: position_feature for k in keys}}))
    session = RecordSession(virtual_config(older, "--resume"), out=lambda _: None)
    session.features = {key: position_feature for key in every}
    assert set(session._features_to_resume(oldest)) == set(every[:1])
    assert set(session._features_to_resume(older)) == set(every[:2])
    assert set(session._features_to_resume(newest)) == set(every)


def test_min_hz_rejects_takes_below_it_instead_of_stamping_them_at_nominal_fps(tmp_path):
    """A camera delivering 5 fps into a 30 fps recording: every take is re-recorded, then the session stops."""
    root = tmp_path / "slow"
    printed: list[str] = []
    result = RecordSession(virtual_config(root, "--virtual_clock=wall", "--virtual_camera_fps=5", "--min-hz", "20",
                                          "--max_retakes=1", "--virtual_cameras=front"),
                           out=printed.append).run()
    ended_by_min_hz = "2 takes in a row fell below --min-hz 20" in result.message
    assert result.exit_code == EXIT_FAULT and ended_by_min_hz, result.message
    assert result.rejected == 2 and result.saved == 0 and total_episodes(root) == 0
    rejections = [line for line in printed if "take REJECTED" in line]
    assert len(rejections) == 2 and all("camera 'observation.images.front'" not in r for r in rejections)
    assert all("camera 'front' delivered" in r for r in rejections)


def test_a_share_of_missed_grasp_starts_outside_0_to_1_is_refused(tmp_path):
    with pytest.raises(UsageError, match="--virtual_missed_grasp_starts is a share of the episodes, from 0 to 1"):
        RecordSession(virtual_config(tmp_path / "demo", "--virtual_missed_grasp_starts=1.5"))
    assert not (tmp_path / "demo").exists()
