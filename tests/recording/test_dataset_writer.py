"""The crash-safe recorder writes what LeRobot's own writer writes, stock LeRobot reads it, and bad input fails clearly."""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from lerobot_vla_plugin.recording import (
    CrashSafeRecorder,
    DatasetMismatchError,
    DatasetRootError,
    EpisodeNotSavedError,
    SaveOutcome,
    repair_torn_tail,
)

from .conftest import FEATURES, FPS, REPO_ID, TASKS, committed_episodes, episode_states, frame_for, record_takes

IMAGE_FEATURES = {**FEATURES, "observation.images.front": {**FEATURES["observation.images.front"], "dtype": "image"}}
ROBOT = "vla_so101_follower"


def open_new(root, features=FEATURES, **options):
    options.setdefault("encode_in_subprocess", False)
    return CrashSafeRecorder.create(REPO_ID, root, fps=FPS, robot_type=ROBOT, features=features,
                                    use_videos=features is FEATURES, **options)


def resume(root, features=FEATURES, fps=FPS, robot_type=ROBOT, **options):
    options.setdefault("encode_in_subprocess", False)
    return CrashSafeRecorder.resume(REPO_ID, root, fps=fps, robot_type=robot_type, features=features,
                                    use_videos=features is FEATURES, **options)


def write_with_stock_lerobot(root, features, takes):
    dataset = LeRobotDataset.create(REPO_ID, fps=FPS, features=features, root=root, robot_type=ROBOT,
                                    use_videos=features is FEATURES)
    for take in takes:
        for frame_index in range(3):
            dataset.add_frame(frame_for(0, take, frame_index))
        dataset.save_episode()
    dataset.finalize()


@pytest.mark.parametrize("features", [FEATURES, IMAGE_FEATURES], ids=["video", "image"])
def test_round_trip_matches_lerobots_own_writer(tmp_path, features):
    video = features is FEATURES
    # The default (encoder in a separate process) for videos: what the recorder uses.
    with open_new(tmp_path / "ours", features, encode_in_subprocess=video) as recorder:
        assert record_takes(recorder, 0, range(3), extra_metadata={"achieved_hz": 29.5}) == [0, 1, 2]
        assert recorder.num_episodes == 3
    write_with_stock_lerobot(tmp_path / "stock", features, range(3))

    ours = LeRobotDataset(REPO_ID, root=tmp_path / "ours")
    stock = LeRobotDataset(REPO_ID, root=tmp_path / "stock")
    ours_info = json.loads((tmp_path / "ours/meta/info.json").read_text())
    stock_info = json.loads((tmp_path / "stock/meta/info.json").read_text())
    assert ours_info == stock_info  # features (with video info), names, fps, totals, paths, robot type
    assert ours.meta.tasks.equals(stock.meta.tasks)
    for key in ours.meta.stats:
        for stat, value in ours.meta.stats[key].items():
            np.testing.assert_allclose(value, stock.meta.stats[key][stat], rtol=1e-6, atol=1e-6,
                                       err_msg=f"{key}/{stat}")
    assert set(stock.meta.episodes.column_names) | {"achieved_hz"} == set(ours.meta.episodes.column_names)
    assert ours.meta.episodes["achieved_hz"] == [29.5] * 3
    assert len(ours) == len(stock) == 9
    for index in range(len(ours)):
        a, b = ours[index], stock[index]
        assert a.keys() == b.keys()
        for key in a:
            if key == "task":
                assert a[key] == b[key]
            else:
                assert a[key].shape == b[key].shape, key
                assert np.allclose(a[key].numpy(), b[key].numpy(), atol=1e-6), key


def test_resume_appends_to_a_dataset_written_by_stock_lerobot(tmp_path):
    """Stock files hold several episodes each; new episodes go to the next files and everything still loads."""
    root = tmp_path / "ds"
    write_with_stock_lerobot(root, FEATURES, range(2))
    with resume(root) as recorder:
        assert recorder.last_repair is not None and not recorder.last_repair.torn_tail_found
        assert record_takes(recorder, 1, range(2, 4)) == [2, 3]
    dataset = LeRobotDataset(REPO_ID, root=root)
    assert dataset.num_episodes == 4 and len(dataset) == 12
    for episode_index, (run, take) in enumerate([(0, 0), (0, 1), (1, 2), (1, 3)]):
        assert episode_states(dataset, episode_index)[:, :2].tolist() == [[run, take]] * 3
    assert dataset[len(dataset) - 1]["observation.images.front"].shape == (3, 32, 32)


def test_repair_filters_torn_rows_out_of_shared_files(tmp_path):
    """A torn tail inside a file that also holds finished episodes (stock layout) is cut off row by row."""
    root = tmp_path / "ds"
    write_with_stock_lerobot(root, IMAGE_FEATURES, range(2))
    info_path = root / "meta/info.json"
    info = json.loads(info_path.read_text())
    info.update(total_episodes=1, total_frames=3, total_tasks=1, splits={"train": "0:1"})
    info_path.write_text(json.dumps(info))  # as if the process died before committing episode 1

    report = repair_torn_tail(root)
    assert sorted(p.relative_to(root).as_posix() for p in report.rewritten) == [
        "data/chunk-000/file-000.parquet", "meta/episodes/chunk-000/file-000.parquet", "meta/tasks.parquet"]
    dataset = LeRobotDataset(REPO_ID, root=root)
    assert dataset.num_episodes == 1 and len(dataset.hf_dataset) == 3
    assert dataset.meta.stats["observation.state"]["max"].tolist()[1] == 0  # episode 1 (take 1) left the stats
    assert not repair_torn_tail(root).torn_tail_found  # idempotent


def test_discard_background_save_and_extra_metadata(tmp_path):
    with open_new(tmp_path) as recorder:
        for frame_index in range(3):
            recorder.add_frame(frame_for(0, 7, frame_index))
        recorder.discard_episode()  # re-record: this take must leave no trace
        indices = record_takes(recorder, 0, range(2), wait=False,
                               extra_metadata={"achieved_hz": 29.9, "camera_fps": {"front": 30}})
        assert indices == [0, 1]
        assert recorder.wait_until_durable() == 2
        assert recorder.pending_episodes == 0
    dataset = LeRobotDataset(REPO_ID, root=tmp_path)
    assert [episode_states(dataset, i)[0, 1] for i in range(2)] == [0, 1]
    assert dataset.meta.episodes["camera_fps/front"] == [30.0, 30.0]
    assert not (tmp_path / "images").exists()


def test_a_failed_save_is_rolled_back_and_recording_goes_on(tmp_path):
    recorder = open_new(tmp_path)
    record_takes(recorder, 0, range(1))

    def fail_once(stage, episode_index):
        if stage == "episode_index_written" and episode_index == 1:
            recorder.stage_listener = None
            raise OSError(28, "No space left on device")

    recorder.stage_listener = fail_once
    with pytest.raises(EpisodeNotSavedError, match="No space left on device.*1 finished episodes before it"):
        record_takes(recorder, 0, range(1, 2))
    assert LeRobotDataset(REPO_ID, root=tmp_path).num_episodes == 1
    assert record_takes(recorder, 0, range(2, 3)) == [1]  # the next take gets the freed index
    recorder.close()
    dataset = LeRobotDataset(REPO_ID, root=tmp_path)
    assert [episode_states(dataset, i)[0, 1] for i in range(2)] == [0, 2]
    assert len(list((tmp_path / "data").glob("*/*.parquet"))) == 2


def _block_image_staging(root, take_id: int) -> None:
    """A file where the take's image folder must go: its camera images cannot be written, a real save failure."""
    blocker = root / "images" / "observation.images.front" / f"episode-{take_id:06d}"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("in the way")


def test_a_failed_background_save_is_reported_against_its_own_episode(tmp_path):
    recorder = open_new(tmp_path)
    record_takes(recorder, 0, range(1), wait=False)
    _block_image_staging(tmp_path, take_id=1)
    record_takes(recorder, 0, range(1, 2), wait=False)
    while recorder.pending_episodes:  # take 1's save has failed before take 2 is saved
        time.sleep(0.01)
    assert record_takes(recorder, 0, range(2, 3), wait=False) == [1]  # not lost to take 1's failure
    outcomes = recorder.finished_saves(wait=True)
    assert [(o.episode_index, o.saved) for o in outcomes] == [(0, True), (1, False), (1, True)]
    assert "could not write camera image" in outcomes[1].error
    assert outcomes[0] == SaveOutcome(0)
    recorder.close()  # the failure was collected: nothing left to raise
    dataset = LeRobotDataset(REPO_ID, root=tmp_path)
    assert [episode_states(dataset, i)[0, 1] for i in range(2)] == [0, 2]


def test_a_hung_video_encoder_is_killed_and_fails_only_its_episode(tmp_path):
    recorder = open_new(tmp_path, encode_in_subprocess=True, encode_timeout_s=5)
    record_takes(recorder, 0, range(1))
    hung = recorder.encoder_process_id
    os.kill(hung, signal.SIGSTOP)
    with pytest.raises(EpisodeNotSavedError, match="encoder process gave no answer within 5 s"):
        record_takes(recorder, 0, range(1, 2))
    with pytest.raises(ProcessLookupError):
        os.kill(hung, 0)  # killed and reaped
    assert record_takes(recorder, 0, range(2, 3)) == [1]  # a fresh encoder serves the next episode
    assert recorder.encoder_process_id != hung
    recorder.close()
    dataset = LeRobotDataset(REPO_ID, root=tmp_path)
    assert [episode_states(dataset, i)[0, 1] for i in range(2)] == [0, 2]
    assert dataset[len(dataset) - 1]["observation.images.front"].shape == (3, 32, 32)


def test_small_image_queue_keeps_every_frame(tmp_path):
    """With a one-slot queue add_frame must wait (backpressure) rather than drop or reorder images."""
    with open_new(tmp_path, IMAGE_FEATURES, max_queued_images=1, image_writer_threads=1) as recorder:
        record_takes(recorder, 0, range(2), frames=6)
        backpressure = recorder.image_backpressure
    assert backpressure.max_queue_depth <= 1
    dataset = LeRobotDataset(REPO_ID, root=tmp_path)
    for index in range(len(dataset)):
        item = dataset[index]
        take, frame_index = int(item["observation.state"][1]), int(item["observation.state"][2])
        assert abs(float(item["observation.images.front"].mean()) * 255 - (40 * take + 20 * frame_index)) < 0.5


@pytest.mark.parametrize("change, expected", [
    ({"fps": 15}, "fps: dataset 10, now 15"),
    ({"robot_type": "vla_koch_follower"}, "robot type: dataset 'vla_so101_follower', now 'vla_koch_follower'"),
    ({"features": {k: v for k, v in FEATURES.items() if k != "observation.images.front"}},
     "cameras: dataset has ['observation.images.front'], now []"),
    ({"features": {**FEATURES, "observation.state": {**FEATURES["observation.state"],
                                                      "names": [f"joint_{i}" for i in range(6)]}}},
     "feature observation.state names"),
], ids=["fps", "robot", "cameras", "joint-names"])
def test_resume_refuses_different_settings(tmp_path, change, expected):
    with open_new(tmp_path) as recorder:
        record_takes(recorder, 0, range(1))
    with pytest.raises(DatasetMismatchError) as error:
        resume(tmp_path, **change)
    message = str(error.value)
    assert expected in message and "--dataset.root" in message
    assert message.count("\n  - ") == 1  # exactly the one difference, nothing else reported
    assert committed_episodes(tmp_path) == 1


def test_resume_lists_every_difference_in_one_error(tmp_path):
    with open_new(tmp_path) as recorder:
        record_takes(recorder, 0, range(1))
    with pytest.raises(DatasetMismatchError) as error:
        resume(tmp_path, fps=30, robot_type="other", features=IMAGE_FEATURES)
    assert error.value.args[0].count("\n  - ") == 3  # fps, robot type, camera stored as image


def test_unusable_roots_fail_before_recording(tmp_path):
    a_file = tmp_path / "not_a_folder"
    a_file.write_text("x")
    with pytest.raises(DatasetRootError, match="Cannot create the dataset root .*not_a_folder/dataset"):
        open_new(a_file / "dataset")
    with pytest.raises(DatasetRootError, match="exists and is not a folder"):
        open_new(a_file)
    with pytest.raises(DatasetRootError, match="No dataset to resume at .*missing.*without --resume"):
        resume(tmp_path / "missing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetRootError, match="not empty and holds no dataset"):
        open_new(tmp_path / "other")
    with open_new(tmp_path / "ds") as recorder:
        record_takes(recorder, 0, range(1))
    with pytest.raises(DatasetRootError, match="already exists .*--resume"):
        open_new(tmp_path / "ds")


def test_episode_index_files_share_one_schema(tmp_path):
    """Stock LeRobot refuses episode-index files with differing columns, whatever extra metadata is given."""
    with open_new(tmp_path, IMAGE_FEATURES) as recorder:
        for take, extra in enumerate([{"achieved_hz": 30}, {"achieved_hz": 29.5}, {}]):
            for frame_index in range(3):
                recorder.add_frame(frame_for(0, take, frame_index))
            recorder.save_episode(extra)
    schemas = {pq.read_schema(p) for p in (tmp_path / "meta/episodes").glob("*/*.parquet")}
    assert len(schemas) == 1
    assert LeRobotDataset(REPO_ID, root=tmp_path).meta.episodes["achieved_hz"] == [30.0, 29.5, None]
    assert TASKS[0] in LeRobotDataset(REPO_ID, root=tmp_path).meta.tasks.index
