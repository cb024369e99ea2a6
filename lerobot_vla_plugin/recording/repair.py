"""Bring a dataset on disk back to exactly its committed episodes after a crash.

`meta/info.json` is the commit record: the crash-safe writer renames it into place last, after every other file
of an episode is complete, so `total_episodes` counts exactly the finished episodes. Anything belonging to a later
episode is a torn tail — data, video and episode-index files of the episode being saved when the process died,
task rows it added, statistics that already included it, half-written temporaries and staged camera PNGs — and is
removed here. Finished episodes are never touched; in a dataset where several episodes share a file (as stock
`lerobot-record` writes them) only the torn rows are filtered out of that file.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lerobot_vla_plugin.recording.atomic_files import (
    atomic_path,
    is_temporary_path,
    remove_durably,
    write_json_atomic,
)

INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
DATA_DIR = "data"
VIDEO_DIR = "videos"
IMAGES_DIR = "images"
_CHUNK_FILE = re.compile(r"chunk-(\d+)/file-(\d+)\.\w+$")


class DatasetCorruptError(RuntimeError):
    """The committed part of the dataset itself is damaged; repair cannot recover it."""


@dataclass
class RepairReport:
    committed_episodes: int
    removed: list[Path] = field(default_factory=list)
    rewritten: list[Path] = field(default_factory=list)

    @property
    def torn_tail_found(self) -> bool:
        return bool(self.removed or self.rewritten)

    def summary(self) -> str:
        if not self.torn_tail_found:
            return f"dataset intact: {self.committed_episodes} finished episodes"
        return (f"repaired an interrupted save: kept {self.committed_episodes} finished episodes, "
                f"removed {len(self.removed)} and rewrote {len(self.rewritten)} leftover files")


def read_parquet_or_explain(path: Path, columns: list[str] | None = None) -> pa.Table:
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetCorruptError(
            f"{path} cannot be read ({exc}). A finished file is damaged; this happens when a recorder that keeps "
            "files open until the end (stock lerobot-record 0.4.x) is killed, or on a full disk or a broken copy. "
            f"`lerobot-vla dataset-repair {dataset_root_of(path)}` drops the episodes in that file and keeps the "
            "others.") from exc


def dataset_root_of(path: Path) -> Path:
    """The dataset folder a file under data/, videos/ or meta/ belongs to."""
    path = Path(path)
    for parent in path.parents:
        if (parent / "meta").is_dir() or (parent / DATA_DIR).is_dir():
            return parent
    return path.parent


def chunk_and_file_of(path: Path) -> tuple[int, int] | None:
    match = _CHUNK_FILE.search(path.as_posix())
    return (int(match.group(1)), int(match.group(2))) if match else None


def file_location_columns(root: Path) -> list[str] | None:
    """The episode-index columns that say where an episode's files are (all but the statistics), or None."""
    paths = sorted((root / EPISODES_DIR).glob("*/*.parquet"))
    if not paths:
        return None
    try:
        names = pq.read_schema(paths[-1]).names
    except (pa.ArrowInvalid, OSError):
        return None  # the full read below explains what is wrong with the file
    return [name for name in names if not name.startswith("stats/")]


def committed_episode_table(root: Path, total_episodes: int, columns: list[str] | None = None,
                            report: RepairReport | None = None) -> pa.Table | None:
    """The episode-index rows of committed episodes; with `report`, torn rows/files are also removed from disk.

    `columns` limits what is read (the episode_index column is always needed)."""
    tables = []
    for path in sorted((root / EPISODES_DIR).glob("*/*.parquet")):
        table = read_parquet_or_explain(path, columns=columns)
        keep = table.column("episode_index").to_numpy() < total_episodes
        if not keep.all() and report is not None:
            if keep.any():
                with atomic_path(path) as temporary:
                    pq.write_table(read_parquet_or_explain(path).filter(pa.array(keep)), temporary,
                                   compression="snappy", use_dictionary=True)
                report.rewritten.append(path)
            else:
                remove_durably(path)
                report.removed.append(path)
        table = table.filter(pa.array(keep))
        if table.num_rows:
            tables.append(table)
    if not tables:
        return None
    return pa.concat_tables(tables).sort_by("episode_index")


def _drop_torn_data_rows(root: Path, total_episodes: int, report: RepairReport) -> None:
    for path in sorted((root / DATA_DIR).glob("*/*.parquet")):
        episode_index = read_parquet_or_explain(path, columns=["episode_index"]).column("episode_index").to_numpy()
        keep = episode_index < total_episodes
        if keep.all():
            continue
        if not keep.any():
            remove_durably(path)
            report.removed.append(path)
            continue
        table = read_parquet_or_explain(path).filter(pa.array(keep))
        with atomic_path(path) as temporary:
            pq.write_table(table, temporary, compression="snappy", use_dictionary=True)
        report.rewritten.append(path)


def _drop_unreferenced_videos(root: Path, info: dict, episodes: pa.Table | None, report: RepairReport) -> None:
    video_keys = [key for key, ft in info["features"].items() if ft["dtype"] == "video"]
    for key in video_keys:
        referenced: set[tuple[int, int]] = set()
        if episodes is not None and f"videos/{key}/chunk_index" in episodes.column_names:
            referenced = set(zip(episodes.column(f"videos/{key}/chunk_index").to_pylist(),
                                 episodes.column(f"videos/{key}/file_index").to_pylist(), strict=True))
        for path in sorted((root / VIDEO_DIR / key).glob("*/*.mp4")):
            if chunk_and_file_of(path) not in referenced:
                remove_durably(path)
                report.removed.append(path)


def _drop_torn_tasks(root: Path, total_tasks: int, report: RepairReport) -> None:
    path = root / TASKS_PATH
    if not path.exists():
        return
    tasks = pd.read_parquet(path)
    if (tasks["task_index"] < total_tasks).all():
        return
    if total_tasks == 0:
        remove_durably(path)
        report.removed.append(path)
        return
    with atomic_path(path) as temporary:
        tasks[tasks["task_index"] < total_tasks].to_parquet(temporary)
    report.rewritten.append(path)


def episode_stats_from_row(row: dict) -> dict[str, dict[str, np.ndarray]]:
    """Per-episode statistics as LeRobot computed them, from the `stats/<feature>/<stat>` columns."""
    stats: dict[str, dict[str, np.ndarray]] = {}
    for column, value in row.items():
        if column.startswith("stats/") and value is not None:
            feature, stat = column.removeprefix("stats/").rsplit("/", 1)
            stats.setdefault(feature, {})[stat] = np.asarray(value)
    return stats


def recompute_dataset_stats(root: Path, total_episodes: int) -> dict | None:
    """Aggregate the committed episodes' own statistics exactly as LeRobot aggregates them."""
    from lerobot.datasets.compute_stats import aggregate_stats

    episodes = committed_episode_table(root, total_episodes)
    if episodes is None:
        return None
    return aggregate_stats([episode_stats_from_row(row) for row in episodes.to_pylist()])


def leftover_files(root: Path, staged_images: bool = True) -> list[Path]:
    """Half-written temporaries, and (with `staged_images`) the camera PNGs staged for an episode that never
    became a video: nothing a finished episode needs."""
    found = [path for path in sorted(root.rglob("*")) if is_temporary_path(path) and path.is_file()]
    if staged_images and any(p.is_file() for p in (root / IMAGES_DIR).rglob("*")):
        found.append(root / IMAGES_DIR)
    return found


def remove_leftovers(root: Path, staged_images: bool = True) -> list[Path]:
    """Remove what `leftover_files` lists; returns it. An empty `images/` folder (stock lerobot-record leaves
    one behind) goes too, silently: it is no torn tail."""
    found = leftover_files(root, staged_images)
    for path in found:
        if path.is_file():
            remove_durably(path)
    if staged_images and (root / IMAGES_DIR).exists():
        shutil.rmtree(root / IMAGES_DIR)
    return found


def repair_torn_tail(root: Path, remove_staged_images: bool = True) -> RepairReport:
    """Remove everything that belongs to no committed episode. Idempotent, and itself safe to interrupt.

    `remove_staged_images=False` keeps `images/`, for a repair inside a running recorder whose next episode
    is already being staged there.
    """
    import json

    from lerobot.datasets.utils import serialize_dict

    root = Path(root)
    try:
        info = json.loads((root / INFO_PATH).read_text())
    except FileNotFoundError as exc:
        raise DatasetCorruptError(f"{root / INFO_PATH} is missing: {root} is not a LeRobot dataset (if its data/ "
                                  f"and meta/episodes/ are there, `lerobot-vla dataset-repair {root}` rebuilds "
                                  "it).") from exc
    except json.JSONDecodeError as exc:
        raise DatasetCorruptError(
            f"{root / INFO_PATH} is not valid JSON ({exc}); it was cut off by a crash of a recorder that does not "
            f"write it atomically. `lerobot-vla dataset-repair {root}` rebuilds it from the episode files.") from exc
    total_episodes = int(info["total_episodes"])
    report = RepairReport(committed_episodes=total_episodes)
    report.removed += remove_leftovers(root, remove_staged_images)

    leftovers_before_episode_files = len(report.removed)
    episodes = committed_episode_table(root, total_episodes, columns=file_location_columns(root), report=report)
    found = [] if episodes is None else episodes.column("episode_index").to_pylist()
    if found != list(range(total_episodes)):
        missing = sorted(set(range(total_episodes)) - set(found))
        raise DatasetCorruptError(
            f"{root}: meta/info.json counts {total_episodes} finished episodes but the episode index under "
            f"{EPISODES_DIR}/ lacks episodes {missing[:10]}{'...' if len(missing) > 10 else ''}. The dataset was "
            "damaged outside a save; restore it from a copy or record into a new --dataset.root.")
    _drop_torn_data_rows(root, total_episodes, report)
    _drop_unreferenced_videos(root, info, episodes, report)
    _drop_torn_tasks(root, int(info["total_tasks"]), report)

    if len(report.removed) > leftovers_before_episode_files or report.rewritten:
        stats = recompute_dataset_stats(root, total_episodes)
        if stats is None:
            remove_durably(root / STATS_PATH)
        else:
            write_json_atomic(serialize_dict(stats), root / STATS_PATH)
    return report
