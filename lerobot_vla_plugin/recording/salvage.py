"""Salvage a dataset with damaged files: drop only the episodes whose files cannot be read, keep every other one.

`repair.py` removes the torn tail of an interrupted save; this goes further, into the committed part: a truncated
`data/*.parquet` (a killed stock recorder, a full disk, a broken copy), a missing or unreadable video, or a lost
`meta/info.json` (rebuilt from the episode files still on disk). First `plan_salvage` lists what would change
(the dry run); `apply_salvage` does it. Damaged files are moved into a `<root>.damaged/` folder next to the
dataset, never deleted; the kept episodes are renumbered 0..K-1 so stock `LeRobotDataset` opens the result.
`meta/info.json` is written last: it is the commit record (see `repair.py`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lerobot_vla_plugin.recording.atomic_files import atomic_path, remove_durably, write_json_atomic
from lerobot_vla_plugin.recording.repair import (
    DATA_DIR,
    EPISODES_DIR,
    INFO_PATH,
    STATS_PATH,
    TASKS_PATH,
    DatasetCorruptError,
    chunk_and_file_of,
    leftover_files,
    recompute_dataset_stats,
    remove_leftovers,
)

# Written into every data file by the crash-safe recorder: what `meta/info.json` holds apart from the counts, so
# a lost info.json can be rebuilt exactly (feature names included).
INFO_METADATA_KEY = b"lerobot_vla.info"


_COUNTS = ("total_episodes", "total_frames", "total_tasks", "splits")


def with_info_copy(table: pa.Table, info: dict) -> pa.Table:
    """`table` carrying the dataset's info (minus the counts, which a salvage recomputes) in its schema metadata."""
    copy = {key: value for key, value in info.items() if key not in _COUNTS}
    return table.replace_schema_metadata({**(table.schema.metadata or {}), INFO_METADATA_KEY: json.dumps(copy)})


@dataclass
class SalvagePlan:
    root: Path
    info: dict  # the dataset's info, rebuilt when `info_rebuilt`
    info_rebuilt: bool
    episodes: pa.Table  # readable episode-index rows of committed episodes, by episode_index
    damaged: dict[Path, str] = field(default_factory=dict)  # file -> why it cannot be used
    dropped: dict[int, str] = field(default_factory=dict)  # episode -> the damaged file it needs
    leftovers: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def kept(self) -> list[int]:
        return [i for i in self.episodes.column("episode_index").to_pylist() if i not in self.dropped]

    @property
    def changes_needed(self) -> bool:
        return bool(self.info_rebuilt or self.damaged or self.dropped or self.leftovers)

    @property
    def damaged_folder(self) -> Path:
        return self.root.with_name(self.root.name + ".damaged")

    def damage(self) -> str:
        """One line naming what is damaged and the repair command, or '' when the dataset is readable."""
        if not (self.info_rebuilt or self.damaged):
            return ""
        what = [str(p.relative_to(self.root)) + f" ({why.split(':')[0]})" for p, why in self.damaged.items()]
        if self.info_rebuilt:
            what.insert(0, f"{INFO_PATH} (missing or unreadable)")
        return (f"{self.root} is damaged: {', '.join(what)}. `lerobot-vla dataset-repair {self.root}` keeps the "
                f"{len(self.kept)} intact episodes" + (f" and drops {len(self.dropped)}" if self.dropped else "")
                + " (it lists the changes first).")

    def listing(self) -> str:
        lines = [f"Dataset {self.root}: {len(self.kept)} intact episodes"
                 + (f", {len(self.dropped)} damaged" if self.dropped else "")]
        if self.info_rebuilt:
            lines.append(f"  rebuild {INFO_PATH} from the episode files (it is missing or unreadable)")
        for path, why in self.damaged.items():
            lines.append(f"  move {path.relative_to(self.root)} to {self.damaged_folder}/ ({why})")
        for episode, path in sorted(self.dropped.items()):
            lines.append(f"  drop episode {episode} (needs {path})")
        if self.dropped and self.kept:
            lines.append(f"  renumber the kept episodes {self.kept[0]}..{self.kept[-1]} as 0..{len(self.kept) - 1}")
        for path in self.leftovers:
            lines.append(f"  remove leftover {path.relative_to(self.root)}")
        lines += [f"  note: {note}" for note in self.notes]
        if not self.changes_needed:
            lines.append("  nothing to repair")
        return "\n".join(lines)


def plan_salvage(root: str | Path) -> SalvagePlan:
    """Find what is damaged and which episodes it takes with it; changes nothing."""
    root = Path(root)
    if not (root / DATA_DIR).is_dir() or not (root / EPISODES_DIR).is_dir():
        raise DatasetCorruptError(f"{root} has no {DATA_DIR}/ and {EPISODES_DIR}/ folders: it is not a LeRobot v3 "
                                  "dataset, or its episode files are gone (nothing to salvage).")
    damaged: dict[Path, str] = {}
    episodes = _readable_episode_rows(root, damaged)
    notes: list[str] = []
    info, info_rebuilt = _load_info(root)
    if info is None:
        info = rebuild_info(root, episodes, notes)
    else:
        episodes = episodes.filter(pc.less(episodes.column("episode_index"), int(info["total_episodes"])))
    plan = SalvagePlan(root, info, info_rebuilt, episodes, damaged, leftovers=leftover_files(root), notes=notes)
    _find_damaged_data(plan)
    _find_damaged_videos(plan)
    return plan


def apply_salvage(plan: SalvagePlan) -> int:
    """Carry out `plan`; returns the number of episodes kept. Stock LeRobot opens the dataset afterwards."""
    root = plan.root
    remove_leftovers(root)
    for path in plan.damaged:
        target = plan.damaged_folder / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)
    kept = plan.kept
    new_index = {old: new for new, old in enumerate(kept)}
    rows = plan.episodes.filter(pa.array([i in new_index for i in plan.episodes.column("episode_index").to_pylist()]))
    lengths = dict(zip(rows.column("episode_index").to_pylist(), rows.column("length").to_pylist(), strict=True))
    starts, total = {}, 0
    for old in kept:
        starts[old], total = total, total + int(lengths[old])
    _rewrite_data(root, new_index, starts)
    _rewrite_episode_rows(root, new_index, starts, lengths)
    info = dict(plan.info)
    tasks = pq.read_table(root / TASKS_PATH) if (root / TASKS_PATH).exists() else None
    info.update(total_episodes=len(kept), total_frames=total, total_tasks=0 if tasks is None else tasks.num_rows,
                splits={"train": f"0:{len(kept)}"} if kept else {})
    stats = recompute_dataset_stats(root, len(kept))
    if stats is None:
        remove_durably(root / STATS_PATH)
    else:
        from lerobot.datasets.utils import serialize_dict

        write_json_atomic(serialize_dict(stats), root / STATS_PATH)
    write_json_atomic(info, root / INFO_PATH)
    return len(kept)


# -- finding damage ---------------------------------------------------------------------------------------------

def _readable(path: Path, columns: list[str] | None = None) -> tuple[pa.Table | None, str]:
    try:
        return pq.read_table(path, columns=columns), ""
    except (pa.ArrowInvalid, OSError) as exc:
        return None, f"unreadable: {exc}"


def _readable_episode_rows(root: Path, damaged: dict[Path, str]) -> pa.Table:
    tables = []
    for path in sorted((root / EPISODES_DIR).glob("*/*.parquet")):
        table, why = _readable(path)
        if table is None:
            damaged[path] = why + "; the episodes listed there are dropped"
        elif table.num_rows:
            tables.append(table)
    if not tables:
        raise DatasetCorruptError(f"No readable episode index under {root / EPISODES_DIR}: nothing to salvage.")
    return pa.concat_tables(tables, promote_options="default").sort_by("episode_index")


def _load_info(root: Path) -> tuple[dict | None, bool]:
    try:
        return json.loads((root / INFO_PATH).read_text()), False
    except (OSError, ValueError):
        return None, True


def _find_damaged_data(plan: SalvagePlan) -> None:
    readable: dict[tuple[int, int], bool] = {}
    for path in sorted((plan.root / DATA_DIR).glob("*/*.parquet")):
        table, why = _readable(path, ["episode_index"])
        readable[chunk_and_file_of(path)] = table is not None
        if table is None:
            plan.damaged[path] = why
    for row in plan.episodes.select(["episode_index", "data/chunk_index", "data/file_index"]).to_pylist():
        location = (row["data/chunk_index"], row["data/file_index"])
        if not readable.get(location, False):
            plan.dropped[row["episode_index"]] = plan.info["data_path"].format(chunk_index=location[0],
                                                                             file_index=location[1])


def _find_damaged_videos(plan: SalvagePlan) -> None:
    video_keys = [key for key, ft in plan.info["features"].items() if ft["dtype"] == "video"]
    checked: dict[Path, bool] = {}
    for key in video_keys:
        if f"videos/{key}/chunk_index" not in plan.episodes.column_names:
            continue
        for row in plan.episodes.select(["episode_index", f"videos/{key}/chunk_index",
                                         f"videos/{key}/file_index"]).to_pylist():
            path = plan.root / plan.info["video_path"].format(video_key=key, chunk_index=row[f"videos/{key}/chunk_index"],
                                                              file_index=row[f"videos/{key}/file_index"])
            if path not in checked:
                why = _video_problem(path)
                checked[path] = not why
                if why and path.exists():
                    plan.damaged[path] = why
            if not checked[path]:
                plan.dropped.setdefault(row["episode_index"], str(path.relative_to(plan.root)))


def _video_problem(path: Path) -> str:
    if not path.is_file():
        return "missing"
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return "no video stream"
    except (av.error.FFmpegError, OSError) as exc:
        return f"unreadable video: {exc}"
    return ""


# -- rebuilding meta/info.json ----------------------------------------------------------------------------------

def rebuild_info(root: Path, episodes: pa.Table, notes: list[str]) -> dict:
    """info.json from what the episode files still say: our recorder's copy in the data files when present,
    else the data schema (dtypes, shapes), the videos (sizes, codec, fps) and the timestamps (fps)."""
    from lerobot.datasets.utils import DEFAULT_FEATURES, create_empty_dataset_info

    data_paths = sorted((root / DATA_DIR).glob("*/*.parquet"))
    for path in data_paths:
        try:
            stored = pq.read_schema(path).metadata or {}
        except (pa.ArrowInvalid, OSError):
            continue
        if INFO_METADATA_KEY in stored:
            info = json.loads(stored[INFO_METADATA_KEY])
            for key, ft in info["features"].items():
                if ft["dtype"] == "video" and not ft.get("info"):  # written before the first video existed
                    info["features"][key] = _video_feature(root, key, episodes)[0]
            notes.append(f"rebuilt {INFO_PATH} from the copy the recorder keeps in each data file")
            return info
    schema = None
    for path in data_paths:
        try:
            schema = pq.read_schema(path)
            break
        except (pa.ArrowInvalid, OSError):
            continue
    if schema is None:
        raise DatasetCorruptError(f"No readable data file under {root / DATA_DIR}: {INFO_PATH} cannot be rebuilt.")
    features = _features_from_schema(schema)
    video_keys = sorted({c.split("/")[1] for c in episodes.column_names if c.startswith("videos/")
                         and c.endswith("/chunk_index")})
    fps = None
    for key in video_keys:
        features[key], fps = _video_feature(root, key, episodes)
    if fps is None:
        fps = _fps_from_timestamps(root, data_paths)
    features = {**features, **{k: v for k, v in DEFAULT_FEATURES.items() if k not in features}}
    info = create_empty_dataset_info("v3.0", fps, features, bool(video_keys), robot_type=None)
    unnamed = [k for k, ft in features.items() if ft["names"] is None and k not in DEFAULT_FEATURES
               and ft["dtype"] != "video"]
    notes.append(f"rebuilt {INFO_PATH}: fps {fps}, robot_type unknown (null)"
                 + (f", no names for {', '.join(unnamed)}" if unnamed else ""))
    return info


def _features_from_schema(schema: pa.Schema) -> dict:
    import datasets

    features = {}
    for key, feature in datasets.Features.from_arrow_schema(schema).items():
        if isinstance(feature, datasets.Image):
            features[key] = {"dtype": "image", "shape": None, "names": ["height", "width", "channels"]}
        elif isinstance(feature, datasets.Sequence):
            features[key] = {"dtype": feature.feature.dtype, "shape": (feature.length,), "names": None}
        elif isinstance(feature, datasets.Value):
            features[key] = {"dtype": feature.dtype, "shape": (1,), "names": None}
    return features


def _video_feature(root: Path, key: str, episodes: pa.Table) -> tuple[dict, int | None]:
    from lerobot.datasets.utils import DEFAULT_VIDEO_PATH
    from lerobot.datasets.video_utils import get_video_info

    for row in episodes.select([f"videos/{key}/chunk_index", f"videos/{key}/file_index"]).to_pylist():
        path = root / DEFAULT_VIDEO_PATH.format(video_key=key, chunk_index=row[f"videos/{key}/chunk_index"],
                                                file_index=row[f"videos/{key}/file_index"])
        if not _video_problem(path):
            video = get_video_info(path)
            shape = (video["video.height"], video["video.width"], video["video.channels"])
            return {"dtype": "video", "shape": shape, "names": ["height", "width", "channels"],
                    "info": video}, int(video["video.fps"])
    raise DatasetCorruptError(f"No readable video of {key} under {root / 'videos'}: {INFO_PATH} cannot be rebuilt.")


def _fps_from_timestamps(root: Path, data_paths: list[Path]) -> int:
    for path in data_paths:
        table, _ = _readable(path, ["timestamp", "episode_index"])
        if table is not None and table.num_rows > 1:
            first = table.filter(pc.equal(table.column("episode_index"), table.column("episode_index")[0]))
            steps = pc.subtract(first.column("timestamp").slice(1), first.column("timestamp").slice(0, first.num_rows - 1))
            step = pc.approximate_median(steps).as_py()
            if step and step > 0:
                return round(1.0 / step)
    raise DatasetCorruptError(f"Cannot tell the frame rate of {root}: no readable episode has two frames.")


# -- rewriting --------------------------------------------------------------------------------------------------

def _rewrite_data(root: Path, new_index: dict[int, int], starts: dict[int, int]) -> None:
    """Keep the rows of kept episodes, renumbered: episode_index to 0..K-1, index to the new global frame index."""
    for path in sorted((root / DATA_DIR).glob("*/*.parquet")):
        _keep_and_renumber(path, new_index, lambda table, episode: {
            "episode_index": [new_index[e] for e in episode],
            "index": [starts[e] + f for e, f in zip(episode, table.column("frame_index").to_pylist(), strict=True)]})


def _rewrite_episode_rows(root: Path, new_index: dict[int, int], starts: dict[int, int],
                          lengths: dict[int, int]) -> None:
    for path in sorted((root / EPISODES_DIR).glob("*/*.parquet")):
        _keep_and_renumber(path, new_index, lambda table, episode: {
            "episode_index": [new_index[e] for e in episode],
            "dataset_from_index": [starts[e] for e in episode],
            "dataset_to_index": [starts[e] + int(lengths[e]) for e in episode]})


def _keep_and_renumber(path: Path, new_index: dict[int, int], new_columns) -> None:
    """Rewrite `path` with only the rows of kept episodes and the columns `new_columns(table, episodes)` gives
    (atomically); a file left with no rows is removed."""
    table = pq.read_table(path)
    keep = [e in new_index for e in table.column("episode_index").to_pylist()]
    table = table.filter(pa.array(keep, type=pa.bool_()))
    if not table.num_rows:
        remove_durably(path)
        return
    table = _replace_columns(table, new_columns(table, table.column("episode_index").to_pylist()))
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary, compression="snappy", use_dictionary=True)


def _replace_columns(table: pa.Table, columns: dict[str, list[int]]) -> pa.Table:
    for name, values in columns.items():
        position = table.schema.get_field_index(name)
        table = table.set_column(position, table.schema.field(name), pa.array(values, type=table.schema.field(name).type))
    return table
