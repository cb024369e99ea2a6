"""A LeRobotDataset v3.0 writer that never loses a finished episode, whenever the process dies.

Why not `LeRobotDataset.save_episode`: LeRobot 0.4.4 keeps its data and episode-index parquet writers open for the
whole session (footers are written only by `finalize()`), buffers episode metadata for 10 episodes and rewrites
`info.json`, `stats.json`, `tasks.parquet` and the growing video file in place. A `kill -9` or power loss
therefore leaves every file of the session unreadable. Here each episode goes to its own data, video and
episode-index files (v3.0 addresses files by chunk/file index, so stock readers do not care), every file is
written complete under a temporary name and renamed into place, and `meta/info.json` is renamed last: it is the
commit record. Everything between commits is a torn tail that `repair_torn_tail` removes on the next open.

The content is LeRobot's own: frames are validated, statistics computed and aggregated, tables built, images
embedded and videos encoded by the same LeRobot functions `lerobot-record` uses, so features, names, fps, stats
and codecs are identical; only the file boundaries and the write order differ.

Threads: `add_frame` runs on the caller's (control) thread and only validates and enqueues; camera PNGs are
written by a small thread pool behind a bounded queue; a single saver thread builds, encodes and commits
episodes in order, with video encoding in a spawned process by default.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import queue
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import numpy as np

from lerobot_vla_plugin.recording.atomic_files import (
    atomic_path,
    fsync_file,
    is_temporary_path,
    temporary_path_for,
    write_json_atomic,
)
from lerobot_vla_plugin.recording.image_queue import Backpressure, ImageWriterPool
from lerobot_vla_plugin.recording.repair import (
    INFO_PATH,
    STATS_PATH,
    TASKS_PATH,
    RepairReport,
    committed_episode_table,
    file_location_columns,
    repair_torn_tail,
)
from lerobot_vla_plugin.recording.salvage import with_info_copy
from lerobot_vla_plugin.recording.video_encoding import DEFAULT_ENCODE_TIMEOUT_S, VideoEncoder

logger = logging.getLogger(__name__)

CODEBASE_VERSION = "v3.0"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
IMAGE_PATH = "images/{image_key}/episode-{episode_index:06d}/frame-{frame_index:06d}.png"
_STOCK_EPISODE_COLUMNS = {"episode_index", "tasks", "length", "dataset_from_index", "dataset_to_index"}
_STOCK_EPISODE_PREFIXES = ("stats/", "videos/", "data/", "meta/")

# Stages reported to `stage_listener`, in commit order. Files of an episode appear in this order; the episode
# counts as finished only at "committed".
SAVE_STAGES = ("images_written", "stats_computed", "data_written", "video_written", "tasks_written",
               "episode_index_written", "stats_written", "committed")


class DatasetRootError(ValueError):
    """The dataset root cannot be used (missing for resume, not writable, already holding something else)."""


class DatasetMismatchError(ValueError):
    """Resume was asked with settings that differ from the ones the dataset was recorded with."""


class EpisodeNotSavedError(RuntimeError):
    """A save failed; that episode was rolled back and every earlier finished episode is intact."""


@dataclass
class _Take:
    """One episode being recorded; `take_id` names its staging folders and never repeats within a session."""

    take_id: int
    columns: dict[str, list] = field(default_factory=dict)
    timestamps: list[float] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.timestamps)


@dataclass(frozen=True)
class SaveOutcome:
    """How one `save_episode` ended: committed as `episode_index`, or rolled back (`error` says why; then
    `episode_index` is the index it was to get, which the next save takes over)."""

    episode_index: int
    error: str | None = None

    @property
    def saved(self) -> bool:
        return self.error is None


@dataclass
class _SaveJob:
    take: _Take
    extra_metadata: dict
    done: threading.Event = field(default_factory=threading.Event)
    outcome: SaveOutcome | None = None


@dataclass
class _DiscardJob:
    take: _Take


def _is_torch_tensor(value) -> bool:
    return type(value).__module__.split(".")[0] == "torch"


def normalize_extra_metadata(extra_metadata: dict | None) -> dict[str, float | bool | str | None]:
    """Flatten nested dicts to `a/b` column names and make every value a float, bool or string.

    Numbers become floats so that a column keeps one parquet type whatever the episode (30 and 29.5 alike):
    the episode-index files of a dataset must all share one schema or stock LeRobot refuses to load them.
    """
    from lerobot.datasets.utils import flatten_dict

    normalized: dict[str, float | bool | str | None] = {}
    for key, value in flatten_dict(dict(extra_metadata or {})).items():
        if key in _STOCK_EPISODE_COLUMNS or key.startswith(_STOCK_EPISODE_PREFIXES):
            raise ValueError(f"extra_metadata key {key!r} collides with a LeRobot episode column; rename it "
                             f"(reserved: {sorted(_STOCK_EPISODE_COLUMNS)} and names starting with "
                             f"{', '.join(_STOCK_EPISODE_PREFIXES)}).")
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or isinstance(value, (bool, str)):
            normalized[key] = value
        elif isinstance(value, (int, float)):
            normalized[key] = float(value)
        else:
            raise TypeError(f"extra_metadata[{key!r}] must be a number, bool, string or None (nested dicts are "
                            f"flattened), got {type(value).__name__}.")
    return normalized


def compatibility_problems(info: dict, *, fps: int, robot_type: str | None, features: dict) -> list[str]:
    """Every way the recording settings differ from the dataset's, in words a user can act on."""
    from lerobot.datasets.utils import DEFAULT_FEATURES

    wanted = {**features, **DEFAULT_FEATURES}
    recorded = info["features"]
    problems = []
    if info.get("robot_type") != robot_type:
        problems.append(f"robot type: dataset {info.get('robot_type')!r}, now {robot_type!r}")
    if info["fps"] != fps:
        problems.append(f"fps: dataset {info['fps']}, now {fps}")

    def cameras(fts: dict) -> dict:
        return {k: ft for k, ft in fts.items() if ft["dtype"] in ("image", "video")}

    recorded_cams, wanted_cams = cameras(recorded), cameras(wanted)
    if set(recorded_cams) != set(wanted_cams):
        problems.append(f"cameras: dataset has {sorted(recorded_cams)}, now {sorted(wanted_cams)}")
    for key in sorted(set(recorded_cams) & set(wanted_cams)):
        if recorded_cams[key]["dtype"] != wanted_cams[key]["dtype"]:
            problems.append(f"camera {key}: dataset stores it as {recorded_cams[key]['dtype']}, now as "
                            f"{wanted_cams[key]['dtype']} (video on/off)")
        if tuple(recorded_cams[key]["shape"]) != tuple(wanted_cams[key]["shape"]):
            problems.append(f"camera {key} resolution: dataset {tuple(recorded_cams[key]['shape'])}, "
                            f"now {tuple(wanted_cams[key]['shape'])}")

    recorded_other = {k: ft for k, ft in recorded.items() if k not in recorded_cams}
    wanted_other = {k: ft for k, ft in wanted.items() if k not in wanted_cams}
    if set(recorded_other) != set(wanted_other):
        problems.append(f"features: only in dataset {sorted(set(recorded_other) - set(wanted_other))}, "
                        f"only now {sorted(set(wanted_other) - set(recorded_other))}")
    for key in sorted(set(recorded_other) & set(wanted_other)):
        a, b = recorded_other[key], wanted_other[key]
        for aspect, left, right in (("dtype", a["dtype"], b["dtype"]),
                                    ("shape", tuple(a["shape"]), tuple(b["shape"])),
                                    ("names", _names(a.get("names")), _names(b.get("names")))):
            if left != right:
                problems.append(f"feature {key} {aspect}: dataset {left}, now {right}")
    return problems


def _names(names):
    if isinstance(names, dict):
        return {k: list(v) for k, v in names.items()}
    return None if names is None else list(names)


def _check_root_writable(root: Path) -> None:
    probe = temporary_path_for(root / "write-probe")
    try:
        probe.write_bytes(b"ok")
        fsync_file(probe)
        probe.unlink()
    except OSError as exc:
        raise DatasetRootError(f"The dataset root {root} is not writable ({exc.strerror or exc}). Choose a writable "
                               "--dataset.root or fix its permissions.") from exc


def holds_no_episodes(root: Path) -> bool:
    """A dataset whose info says 0 episodes and that has no episode files: what a failed start leaves."""
    import json

    try:
        info = json.loads((Path(root) / INFO_PATH).read_text())
    except (OSError, ValueError):
        return False
    stored = any(p.is_file() for folder in ("data", "videos", "meta/episodes") for p in (Path(root) / folder).rglob("*"))
    return int(info.get("total_episodes", -1)) == 0 and not stored


def _remove_empty_dataset(root: Path) -> None:
    for name in ("meta", "data", "videos", "images"):
        shutil.rmtree(root / name, ignore_errors=True)


class CrashSafeRecorder:
    """Record episodes into a LeRobotDataset v3.0 so that every finished episode survives any crash.

    Use `create` for a new dataset and `resume` to continue one (it first repairs an interrupted save).
    `save_episode()` returns once the episode is durable; with `wait=False` it returns at once and the episode
    becomes durable in the background: `finished_saves()` then says, save by save and in order, when each one
    committed or failed (see also `num_episodes`, `pending_episodes`, `wait_until_durable`).
    `stage_listener(stage, episode_index)` is called from the saver thread after each step in `SAVE_STAGES`.

    Options: `vcodec` (as lerobot-record's --dataset.vcodec), `encoder_threads`, `encode_in_subprocess` (keep the
    encoder's CPU and GIL off the control process; default on), `image_writer_threads` and `max_queued_images`
    (PNG writers and their bounded queue; `image_backpressure` says how long add_frame ever waited),
    `max_pending_episodes` (saves queued with wait=False before save_episode itself waits; `save_backpressure`),
    `encode_timeout_s` (an episode's video encode that takes longer means a hung encoder: it is killed and that
    episode rolled back).
    """

    def __init__(self, root: Path, repo_id: str, *, vcodec: str = "libsvtav1", image_writer_threads: int = 4,
                 max_queued_images: int = 512, max_pending_episodes: int = 4, encode_in_subprocess: bool = True,
                 encoder_threads: int | None = None, encode_timeout_s: float = DEFAULT_ENCODE_TIMEOUT_S,
                 repair_report: RepairReport | None = None):
        """Open an existing, repaired dataset at `root`; call `create` or `resume` instead of this."""
        from lerobot.datasets.utils import get_hf_features_from_features, load_info, load_stats, load_tasks
        from lerobot.datasets.video_utils import resolve_vcodec

        self._root = Path(root)
        self._repo_id = repo_id
        self.last_repair = repair_report
        self.stage_listener: Callable[[str, int], None] | None = None
        self._info = load_info(self._root)
        self._features = self._info["features"]
        self._hf_features = get_hf_features_from_features(self._features)
        self._stats = load_stats(self._root)
        self._tasks = load_tasks(self._root) if (self._root / TASKS_PATH).exists() else None
        self._episodes_schema = None
        self._last_file = self._load_last_file_locations()
        self._camera_keys = [k for k, ft in self._features.items() if ft["dtype"] in ("image", "video")]
        self._video_keys = [k for k, ft in self._features.items() if ft["dtype"] == "video"]

        self._lock = threading.Lock()
        self._saves_finished = threading.Condition(self._lock)
        self._durable_episodes = int(self._info["total_episodes"])
        self._queued_saves = 0
        self._finished_jobs: list[_SaveJob] = []  # finished saves whose outcome nobody collected yet
        self._next_take_id = self._durable_episodes
        self._current: _Take | None = None
        self._closed = False
        self.save_backpressure = Backpressure()

        self._images = ImageWriterPool(num_threads=image_writer_threads if self._camera_keys else 1,
                                       max_queued_images=max_queued_images)
        self._encoder = (VideoEncoder(self._info["fps"], resolve_vcodec(vcodec), encoder_threads,
                                      in_subprocess=encode_in_subprocess, reply_timeout_s=encode_timeout_s)
                         if self._video_keys else None)
        self._jobs: queue.Queue = queue.Queue(maxsize=max(1, max_pending_episodes))
        self._saver = threading.Thread(target=self._saver_loop, name="episode-saver", daemon=True)
        self._saver.start()

    # ------------------------------------------------------------------ opening

    @classmethod
    def create(cls, repo_id: str, root: str | Path, *, fps: int, robot_type: str | None, features: dict,
               use_videos: bool = True, **options) -> CrashSafeRecorder:
        """Start a new dataset at `root` (created if missing; must be empty). `features` as lerobot-record builds
        them (`hw_to_dataset_features`); `options` are those of `__init__` (vcodec, encode_in_subprocess, ...)."""
        from lerobot.datasets.utils import DEFAULT_FEATURES, _validate_feature_names, create_empty_dataset_info

        root = Path(root)
        cls.check_new_root(root)
        if holds_no_episodes(root):
            _remove_empty_dataset(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatasetRootError(f"Cannot create the dataset root {root} ({exc.strerror or exc}). Choose a "
                                   "writable --dataset.root.") from exc
        _check_root_writable(root)

        features = {**features, **DEFAULT_FEATURES}
        _validate_feature_names(features)
        video_features = [k for k, ft in features.items() if ft["dtype"] == "video"]
        if video_features and not use_videos:
            raise ValueError(f"use_videos=False but features {video_features} have dtype 'video'; build the "
                             "features with use_videos=False (dtype 'image') or keep videos on.")
        info = create_empty_dataset_info(CODEBASE_VERSION, fps, features, use_videos, robot_type)
        write_json_atomic(info, root / INFO_PATH)
        return cls(root, repo_id, **options)

    @staticmethod
    def check_new_root(root: str | Path) -> None:
        """Raise `DatasetRootError` unless a new dataset can start at `root`; nothing is created. A dataset that
        holds no episode (left by a start that failed) is no obstacle: `create` starts it afresh."""
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise DatasetRootError(f"The dataset root {root} exists and is not a folder. Choose another "
                                   "--dataset.root.")
        ancestor = root.absolute()
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
            problem = "is a file, not a folder" if not ancestor.is_dir() else "is not writable"
            raise DatasetRootError(f"Cannot create the dataset root {root}: {ancestor} {problem}. Choose another "
                                   "--dataset.root.")
        if holds_no_episodes(root):
            return
        if (root / INFO_PATH).exists():
            raise DatasetRootError(f"A dataset already exists at {root}. Resume it (--resume) or choose a new "
                                   "--dataset.root.")
        if root.is_dir() and any(not is_temporary_path(p) for p in root.iterdir()):
            raise DatasetRootError(f"The dataset root {root} is not empty and holds no dataset. Choose a new or "
                                   "empty --dataset.root.")

    @classmethod
    def resume(cls, repo_id: str, root: str | Path, *, fps: int, robot_type: str | None, features: dict,
               use_videos: bool = True, **options) -> CrashSafeRecorder:
        """Continue the dataset at `root`: repair an interrupted save, then check that the settings match."""
        from lerobot.datasets.utils import load_info

        root = Path(root)
        if not (root / INFO_PATH).is_file():
            raise DatasetRootError(f"No dataset to resume at {root} ({INFO_PATH} not found). Check --dataset.root, "
                                   "or start a new dataset without --resume.")
        _check_root_writable(root)
        report = repair_torn_tail(root)
        if report.torn_tail_found:
            logger.warning("%s: %s", root, report.summary())
        info = load_info(root)
        problems = compatibility_problems(info, fps=fps, robot_type=robot_type, features=features)
        if info.get("video_path") is None and use_videos and any(
                ft["dtype"] == "video" for ft in features.values()):
            problems.append("videos: the dataset stores camera frames as images, now as videos")
        if problems:
            raise DatasetMismatchError(
                f"Cannot resume the dataset at {root}: it was recorded with different settings:\n  - "
                + "\n  - ".join(problems)
                + "\nRecord into a new dataset (another --dataset.root), or resume with the settings the dataset "
                  "was recorded with.")
        return cls(root, repo_id, repair_report=report, **options)

    def _load_last_file_locations(self) -> dict[str, tuple[int, int]]:
        """Last (chunk, file) used per kind of file, so new episodes never overwrite an existing file."""
        import pyarrow.parquet as pq

        total = int(self._info["total_episodes"])
        episodes = committed_episode_table(self._root, total, columns=file_location_columns(self._root)) \
            if total else None
        if episodes is None:
            return {}
        last_row = episodes.slice(episodes.num_rows - 1).to_pylist()[0]
        self._episodes_schema = pq.read_schema(self._root / EPISODES_PATH.format(
            chunk_index=last_row["meta/episodes/chunk_index"], file_index=last_row["meta/episodes/file_index"]))
        kinds = ["data", "meta/episodes"] + [f"videos/{k}" for k, ft in self._info["features"].items()
                                             if ft["dtype"] == "video"]
        locations = {}
        for kind in kinds:
            pairs = zip(episodes.column(f"{kind}/chunk_index").to_pylist(),
                        episodes.column(f"{kind}/file_index").to_pylist(), strict=True)
            locations[kind] = max(pairs)
        return locations

    # ------------------------------------------------------------------ recording

    @property
    def root(self) -> Path:
        return self._root

    @property
    def repo_id(self) -> str:
        return self._repo_id

    @property
    def fps(self) -> int:
        return self._info["fps"]

    @property
    def features(self) -> dict:
        return self._features

    @property
    def num_episodes(self) -> int:
        """Finished episodes that are durable on disk (survive a crash from now on)."""
        return self._durable_episodes

    @property
    def pending_episodes(self) -> int:
        """Episodes handed to `save_episode(wait=False)` that are not durable yet."""
        return self._queued_saves

    @property
    def current_episode_frames(self) -> int:
        return 0 if self._current is None else self._current.size

    @property
    def image_backpressure(self) -> Backpressure:
        return self._images.backpressure

    @property
    def encoder_process_id(self) -> int | None:
        """The video encoder worker's process id (None: no videos, or encoding in this process)."""
        return None if self._encoder is None else self._encoder.worker_pid

    def add_frame(self, frame: dict) -> None:
        """Buffer one frame (as lerobot-record builds it, with "task"); camera images are written in the background.

        Arrays are kept by reference until written: pass a fresh camera image each frame (cameras do).
        """
        from lerobot.datasets.utils import validate_frame

        self._check_open()
        frame = {k: (v.detach().cpu().numpy() if _is_torch_tensor(v) else v) for k, v in frame.items()}
        timestamp = frame.pop("timestamp", None)
        validate_frame(frame, self._features)
        if self._current is None:
            self._current = _Take(self._next_take_id, {k: [] for k in frame if k != "task"})
            self._next_take_id += 1
        take = self._current
        frame_index = take.size
        for key, value in frame.items():
            if key == "task":
                continue
            if key in self._camera_keys:
                path = self._root / IMAGE_PATH.format(image_key=key, episode_index=take.take_id,
                                                      frame_index=frame_index)
                compress_level = 1 if self._features[key]["dtype"] == "video" else 6
                self._images.submit(take.take_id, value, path, compress_level)
                take.columns[key].append(str(path))
            else:
                take.columns[key].append(np.array(value, copy=True))
        take.tasks.append(frame["task"])
        take.timestamps.append(frame_index / self.fps if timestamp is None else float(np.asarray(timestamp).item()))

    def save_episode(self, extra_metadata: dict | None = None, *, wait: bool = True) -> int:
        """Finish the current episode and return its episode index.

        `extra_metadata` (e.g. {"achieved_hz": 29.6, "camera_fps": {"front": 29.9}}) becomes extra columns of
        the episode index, which stock LeRobot loads as `dataset.meta.episodes[...]`. With `wait=True` the episode
        is durable when this returns (or this raises `EpisodeNotSavedError`); with `wait=False` the control loop
        goes on at once and the returned index is the one the episode gets unless an earlier background save
        fails. A background save's failure never raises here (it belongs to another episode): `finished_saves()`
        reports it, or else `wait_until_durable()` and `close()` raise it.
        """
        self._check_open()
        take = self._current
        if take is None or take.size == 0:
            raise ValueError("save_episode() needs at least one frame: call add_frame() first.")
        job = _SaveJob(take, normalize_extra_metadata(extra_metadata))
        self._current = None
        with self._lock:
            predicted_index = self._durable_episodes + self._queued_saves
            self._queued_saves += 1
        self._enqueue(job)
        if wait:
            job.done.wait()
            self._raise_failed_saves(only=job)
            with self._lock:
                self._finished_jobs.remove(job)  # answered right here
            return job.outcome.episode_index
        return predicted_index

    def finished_saves(self, *, wait: bool = False) -> list[SaveOutcome]:
        """Outcomes of the saves finished since the last call, in save order (`wait`: first wait for all)."""
        with self._saves_finished:
            if wait:
                self._saves_finished.wait_for(lambda: self._queued_saves == 0)
            jobs, self._finished_jobs = self._finished_jobs, []
        return [job.outcome for job in jobs]

    def discard_episode(self) -> None:
        """Drop the episode being recorded (re-record); its staged images are deleted in the background."""
        self._check_open()
        take, self._current = self._current, None
        if take is not None:
            self._enqueue(_DiscardJob(take))

    def wait_until_durable(self, timeout_s: float | None = None) -> int:
        """Block until every saved episode is durable; returns `num_episodes`. Raises if a save failed."""
        with self._saves_finished:
            if not self._saves_finished.wait_for(lambda: self._queued_saves == 0, timeout_s):
                raise TimeoutError(f"{self._queued_saves} episodes still being saved after {timeout_s} s.")
        self._raise_failed_saves()
        return self._durable_episodes

    def close(self) -> None:
        """Finish pending saves and stop the workers; an episode never passed to save_episode is dropped."""
        if self._closed:
            return
        if self._current is not None and self._current.size:
            logger.warning("Closing with an unsaved episode of %d frames: it is discarded.", self._current.size)
        self.discard_episode()
        self._closed = True
        self._jobs.put(None)
        self._saver.join()
        self._images.close()
        if self._encoder is not None:
            self._encoder.close()
        images_dir = self._root / "images"
        if images_dir.is_dir():
            shutil.rmtree(images_dir, ignore_errors=True)
        self._raise_failed_saves()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"The recorder for {self._root} is closed; resume it to record more episodes.")

    def _enqueue(self, job) -> None:
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            import time

            started = time.perf_counter()
            self._jobs.put(job)
            self.save_backpressure.full_queue_waits += 1
            self.save_backpressure.waited_s += time.perf_counter() - started
            logger.warning("Episode saving is behind (%d episodes queued); the caller waited for it.",
                           self._jobs.maxsize)

    def _raise_failed_saves(self, only: _SaveJob | None = None) -> None:
        """Raise for the failed saves nobody collected yet (or only for `only`), each reported once."""
        with self._lock:
            failed = [job for job in self._finished_jobs
                      if not job.outcome.saved and (only is None or job is only)]
            self._finished_jobs = [job for job in self._finished_jobs if job not in failed]
        if failed:
            first = failed[0].outcome.episode_index
            raise EpisodeNotSavedError(
                "; ".join(f"episode {job.outcome.episode_index} could not be saved ({job.outcome.error})"
                          for job in failed)
                + f". The {first} finished episodes before it are intact in {self._root}.")

    # ------------------------------------------------------------------ saver thread

    def _saver_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if isinstance(job, _DiscardJob):
                self._drop_staged_images(job.take)
                continue
            try:
                episode_index = self._commit_episode(job.take, job.extra_metadata)
                job.outcome = SaveOutcome(episode_index)
                with self._lock:
                    self._durable_episodes += 1
            except Exception as exc:  # any failure: reported to the caller, the episode is rolled back
                logger.exception("Saving an episode failed; rolling it back.")
                job.outcome = SaveOutcome(self._durable_episodes, f"{type(exc).__name__}: {exc}")
                self._roll_back()
                self._drop_staged_images(job.take)
            finally:
                with self._saves_finished:
                    self._queued_saves -= 1
                    self._finished_jobs.append(job)
                    self._saves_finished.notify_all()
                job.done.set()

    def _roll_back(self) -> None:
        try:
            repair_torn_tail(self._root, remove_staged_images=False)
        except Exception:  # the next resume repairs it; recording must go on
            logger.exception("Could not remove the files of the failed episode; the next resume will.")

    def _drop_staged_images(self, take: _Take) -> None:
        with contextlib.suppress(Exception):  # the take is being thrown away, failed images included
            self._images.wait_for_take(take.take_id)
        for key in self._camera_keys:
            folder = (self._root / IMAGE_PATH.format(image_key=key, episode_index=take.take_id,
                                                     frame_index=0)).parent
            shutil.rmtree(folder, ignore_errors=True)

    def _stage(self, stage: str, episode_index: int) -> None:
        if self.stage_listener is not None:
            self.stage_listener(stage, episode_index)

    def _next_file(self, kind: str) -> tuple[int, int]:
        from lerobot.datasets.utils import update_chunk_file_indices

        if kind not in self._last_file:
            return 0, 0
        return update_chunk_file_indices(*self._last_file[kind], self._info["chunks_size"])

    def _commit_episode(self, take: _Take, extra_metadata: dict) -> int:
        """Write one episode file by file, `info.json` last; returns its episode index once durable."""
        import datasets
        import pandas as pd
        import pyarrow.parquet as pq
        from lerobot.datasets.compute_stats import aggregate_stats, compute_episode_stats
        from lerobot.datasets.utils import embed_images, flatten_dict, serialize_dict
        from lerobot.datasets.video_utils import get_video_info
        from lerobot.utils.utils import SuppressProgressBars

        info, root, features = self._info, self._root, self._features
        episode_index, first_frame, length = int(info["total_episodes"]), int(info["total_frames"]), take.size

        self._images.wait_for_take(take.take_id)
        self._stage("images_written", episode_index)

        # Tasks and the episode buffer exactly as LeRobotDataset.save_episode prepares them.
        episode_tasks = list(dict.fromkeys(take.tasks))
        if self._tasks is None:
            new_tasks = episode_tasks
            tasks = pd.DataFrame({"task_index": range(len(new_tasks))}, index=new_tasks)
        else:
            tasks = self._tasks.copy()
            new_tasks = [task for task in episode_tasks if task not in tasks.index]
            for task in new_tasks:
                tasks.loc[task] = len(tasks)
        buffer: dict = {
            "timestamp": np.stack(take.timestamps),
            "frame_index": np.arange(length),
            "episode_index": np.full((length,), episode_index),
            "index": np.arange(first_frame, first_frame + length),
            "task_index": np.array([int(tasks.loc[task, "task_index"]) for task in take.tasks]),
        }
        for key, ft in features.items():
            if key not in buffer:
                buffer[key] = take.columns[key] if ft["dtype"] in ("image", "video") else np.stack(take.columns[key])
        episode_stats = compute_episode_stats(buffer, features)
        self._stage("stats_computed", episode_index)

        locations = {"data": self._next_file("data"), "meta/episodes": self._next_file("meta/episodes")}
        data_path = root / info["data_path"].format(chunk_index=locations["data"][0],
                                                    file_index=locations["data"][1])
        episode_dataset = datasets.Dataset.from_dict({key: buffer[key] for key in self._hf_features},
                                                     features=self._hf_features, split="train")
        with SuppressProgressBars():
            table = embed_images(episode_dataset).with_format("arrow")[:]
        table = with_info_copy(table, info)
        with atomic_path(data_path) as temporary:
            pq.write_table(table, temporary, compression="snappy", use_dictionary=True)
        self._stage("data_written", episode_index)

        episode_files = {
            "data/chunk_index": locations["data"][0], "data/file_index": locations["data"][1],
            "dataset_from_index": first_frame, "dataset_to_index": first_frame + length,
        }
        new_info = copy.deepcopy(info)
        for key in self._video_keys:
            locations[f"videos/{key}"] = chunk, file = self._next_file(f"videos/{key}")
            video_path = root / info["video_path"].format(video_key=key, chunk_index=chunk, file_index=file)
            images_dir = (root / IMAGE_PATH.format(image_key=key, episode_index=take.take_id, frame_index=0)).parent
            with atomic_path(video_path, keep_extension=True) as temporary:
                duration_s = self._encoder.encode(images_dir, temporary)
            if not new_info["features"][key].get("info"):
                new_info["features"][key]["info"] = get_video_info(video_path)
            episode_files.update({f"videos/{key}/chunk_index": chunk, f"videos/{key}/file_index": file,
                                  f"videos/{key}/from_timestamp": 0.0, f"videos/{key}/to_timestamp": duration_s})
            self._stage("video_written", episode_index)

        if new_tasks:
            with atomic_path(root / TASKS_PATH) as temporary:
                tasks.to_parquet(temporary)
        self._stage("tasks_written", episode_index)

        row = {"episode_index": episode_index, "tasks": episode_tasks, "length": length, **episode_files,
               **flatten_dict({"stats": episode_stats}),
               "meta/episodes/chunk_index": locations["meta/episodes"][0],
               "meta/episodes/file_index": locations["meta/episodes"][1], **extra_metadata}
        episode_table = self._episode_table(row)
        with atomic_path(root / EPISODES_PATH.format(chunk_index=locations["meta/episodes"][0],
                                                     file_index=locations["meta/episodes"][1])) as temporary:
            pq.write_table(episode_table, temporary, compression="snappy", use_dictionary=True)
        self._stage("episode_index_written", episode_index)

        stats = episode_stats if self._stats is None else aggregate_stats([self._stats, episode_stats])
        write_json_atomic(serialize_dict(stats), root / STATS_PATH)
        self._stage("stats_written", episode_index)

        new_info["total_episodes"] = episode_index + 1
        new_info["total_frames"] = first_frame + length
        new_info["total_tasks"] = len(tasks)
        new_info["splits"] = {"train": f"0:{episode_index + 1}"}
        write_json_atomic(new_info, root / INFO_PATH)
        self._info, self._stats, self._tasks = new_info, stats, tasks
        self._features = new_info["features"]
        self._episodes_schema = episode_table.schema
        self._last_file.update(locations)
        self._stage("committed", episode_index)

        self._drop_staged_images(take)
        return episode_index

    def _episode_table(self, row: dict):
        """One episode-index row, typed like the dataset's existing rows (stock readers need one schema)."""
        import pyarrow as pa

        values = {key: [value.tolist() if isinstance(value, np.ndarray) else value] for key, value in row.items()}
        schema = self._episodes_schema
        if schema is None:
            return pa.Table.from_pydict({k: v for k, v in values.items() if v != [None]})
        dropped = [key for key in values if key not in schema.names]
        if dropped:
            logger.warning("Episode metadata %s not stored: the dataset's first episode had no such columns and "
                           "all episodes of a dataset must share them.", dropped)
        return pa.Table.from_pydict({name: values.get(name, [None]) for name in schema.names}, schema=schema)
