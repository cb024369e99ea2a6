"""`lerobot-vla dataset-repair` keeps every intact episode of a damaged dataset, and stock LeRobot opens the result."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from lerobot_vla_plugin.cli import main

from .conftest import episode_states
from .test_dataset_report import FRAMES, JOINTS, record, smooth_state


def _open(root):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset("local/salvaged", root=root)


def _data_file_of(root, episode: int):
    rows = pq.read_table(root / "meta" / "episodes" / f"chunk-000/file-{episode:03d}.parquet").to_pylist()
    row = next(r for r in rows if r["episode_index"] == episode)
    return root / f"data/chunk-{row['data/chunk_index']:03d}/file-{row['data/file_index']:03d}.parquet"


def _run(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
def six_episodes(tmp_path):
    root = tmp_path / "pick"
    record(root, None, episodes=6)
    return root


def test_a_truncated_data_file_costs_only_its_own_episode(six_episodes, capsys):
    root = six_episodes
    damaged = _data_file_of(root, 2)
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])  # a copy cut short
    (root / "images" / "observation.images.front" / "episode-000006").mkdir(parents=True)
    (root / "images" / "observation.images.front" / "episode-000006" / "frame-000000.png").write_bytes(b"png")

    code, out = _run(capsys, "dataset-report", str(root))
    assert code == 2
    assert damaged.relative_to(root).as_posix() in out and f"lerobot-vla dataset-repair {root}" in out
    assert "Traceback" not in out

    code, out = _run(capsys, "dataset-repair", str(root), "--dry-run")
    assert code == 0
    assert "drop episode 2" in out and "renumber the kept episodes 0..5 as 0..4" in out and "leftover images" in out
    assert damaged.is_file(), "a dry run changes nothing"

    code, out = _run(capsys, "dataset-repair", str(root), "--yes")
    assert code == 0 and "5 episodes kept, 1 dropped" in out
    dataset = _open(root)
    assert dataset.num_episodes == 5 and dataset.num_frames == 5 * FRAMES
    for new, old in enumerate([0, 1, 3, 4, 5]):
        expected = np.stack([smooth_state(old, frame) for frame in range(FRAMES)])
        np.testing.assert_allclose(episode_states(dataset, new), expected, rtol=1e-6)
    assert (root.with_name("pick.damaged") / damaged.relative_to(root)).is_file(), "damaged files are kept aside"
    assert not (root / "images").exists()
    code, out = _run(capsys, "dataset-report", str(root), "--min-tasks", "1")
    assert code == 0, out


def test_a_lost_info_json_is_rebuilt_from_the_episode_files(six_episodes, capsys):
    root = six_episodes
    original = json.loads((root / "meta" / "info.json").read_text())
    (root / "meta" / "info.json").unlink()

    code, out = _run(capsys, "dataset-repair", str(root), "--yes")
    assert code == 0, out
    assert "rebuild meta/info.json" in out
    dataset = _open(root)
    assert dataset.num_episodes == 6 and dataset.fps == original["fps"]
    assert dataset.meta.features["observation.state"]["names"] == JOINTS
    assert dataset.meta.robot_type == original["robot_type"]
    np.testing.assert_allclose(episode_states(dataset, 4), np.stack([smooth_state(4, f) for f in range(FRAMES)]),
                               rtol=1e-6)


def test_info_json_of_a_dataset_without_our_copy_is_rebuilt_from_schema_and_timestamps(six_episodes, capsys):
    """A stock-recorded dataset carries no copy of info.json in its data files: dtypes, shapes and fps are
    recovered from the files themselves; the joint names cannot be."""
    from lerobot_vla_plugin.recording.salvage import INFO_METADATA_KEY

    root = six_episodes
    for path in (root / "data").glob("*/*.parquet"):
        table = pq.read_table(path)
        metadata = {k: v for k, v in table.schema.metadata.items() if k != INFO_METADATA_KEY}
        pq.write_table(table.replace_schema_metadata(metadata), path)
    (root / "meta" / "info.json").unlink()

    code, out = _run(capsys, "dataset-repair", str(root), "--yes")
    assert code == 0, out
    assert "no names for" in out and "observation.state" in out
    dataset = _open(root)
    assert dataset.num_episodes == 6 and dataset.fps == 30
    assert dataset.meta.features["observation.state"]["shape"] == (6,)
