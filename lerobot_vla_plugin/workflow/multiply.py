"""`lerobot-vla multiply`: a few demonstrations recorded on the virtual SO-101 become many (MimicGen-style).

    lerobot-vla multiply SOURCE_ROOT --factor 10 --output ROOT

For each new scene (a fresh seeded layout, sampled like the recorder's), a source episode of the same task is
re-targeted to where the cube and the bowl now are (sim/retarget.py) and played through the real path: the virtual
leader, our follower on the emulated servo bus, physics, rendered cameras, the crash-safe writer. A take whose task
fails is dropped and the next scene is tried. The output holds the source episodes followed by the generated ones;
each episode's metadata says where it came from (`demonstration`: scripted or retargeted, `source_episode`, the
shifts of the cube and bowl, the turn of the jaws, `scene_seed`). Stock `lerobot-train` trains on it unchanged.

Limits: the source must be recorded on the virtual arm (its episodes carry the scene seed that fixes where the
objects were). For a real arm's recordings the object poses are unknown, the simulated images differ from the real
camera, and the arm's calibration must match the twin's: generated episodes can then only serve co-training.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Scene seeds of generated episodes start here: far from the demonstrations' own (seed 0 up) and from the main
# job's held-out recordings (100 000 up); evaluation scenes use a disjoint range anyway (sim/scene_seeds.py).
DEFAULT_GENERATION_SEED = 200_000
_TRIES_PER_SCENE = 5  # other source episodes tried when one cannot reach a new layout


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="dataset recorded with lerobot-vla record --virtual so101")
    parser.add_argument("--output", type=Path, required=True, help="folder of the multiplied dataset (new)")
    parser.add_argument("--factor", type=int, default=10,
                        help="the output holds factor x the source's successful episodes (default 10)")
    parser.add_argument("--repo-id", default=None, help="repo id of the output (default: local/<folder name>)")
    parser.add_argument("--seed", type=int, default=DEFAULT_GENERATION_SEED,
                        help=f"first scene seed of the generated episodes (default {DEFAULT_GENERATION_SEED})")


class RetargetingPlanner:
    """The virtual arm's demonstration planner: a source episode of the task, carried over to the new scene."""

    def __init__(self, sources: list, rng: np.random.Generator, sim):
        from lerobot_vla_plugin.sim.retarget import Retargeter

        self.by_task: dict[str, list] = {}
        for source in sources:
            self.by_task.setdefault(source.task_key, []).append(source)
        self.rng = rng
        self.retargeter = Retargeter(sim)
        self.scenes = Counter()  # per task: scenes a demonstration was generated for
        self.unreachable = Counter()  # per task: scenes no source could be carried over to

    def __call__(self, planning, task: str, _rng):
        from lerobot_vla_plugin.sim.retarget import JointPath, RetargetError

        self.scenes[task] += 1
        places = planning.object_positions()
        cube_xy, bowl_xy, cube_yaw = places[f"{task}_cube"][:2], places["bowl"][:2], planning.cube_yaw(task)
        candidates = self.by_task[task]
        for index in self.rng.permutation(len(candidates))[:_TRIES_PER_SCENE]:
            try:
                return self.retargeter.retarget(candidates[index], cube_xy, cube_yaw, bowl_xy)
            except RetargetError:
                continue
        self.unreachable[task] += 1
        # Nothing reaches this layout: the arm holds still for a moment, the take fails and is dropped.
        start = planning.joint_positions()
        return JointPath(np.array([0.0, 0.5]), np.stack([start, start]), {"demonstration": "unreachable"})


def load_sources(dataset) -> list:
    """The successful episodes of a virtual-arm dataset as re-targetable demonstrations."""
    from lerobot_vla_plugin.arms.virtual_so101 import joint_angles_from_follower_actions
    from lerobot_vla_plugin.sim.retarget import SourceDemonstration
    from lerobot_vla_plugin.sim.so101 import TASKS, SO101Sim

    episodes = dataset.meta.episodes
    if "scene_seed" not in episodes.column_names:
        raise ValueError(f"{dataset.root} has no per-episode scene_seed: the source must be recorded with "
                         "lerobot-vla record --virtual so101, whose episodes carry the seed of their layout")
    task_key_of = {text: key for key, text in TASKS.items()}
    hf = dataset.hf_dataset.with_format(None)
    episode_column = np.asarray(hf["episode_index"])
    actions = np.asarray(hf["action"], dtype=np.float64)
    sim = SO101Sim()
    limits = sim.joint_limits()
    sources = []
    for row in range(len(episodes)):
        if "is_success" in episodes.column_names and not episodes[row]["is_success"]:
            continue
        task = str(episodes[row]["tasks"][0])
        if task not in task_key_of:
            raise ValueError(f"episode {row} of {dataset.root} has task {task!r}, not one of the virtual arm's "
                             f"tasks {sorted(task_key_of)}")
        key, seed = task_key_of[task], int(episodes[row]["scene_seed"])
        sim.reset(seed)
        places = sim.object_positions()
        episode = int(episodes[row]["episode_index"])
        sources.append(SourceDemonstration(
            episode=episode, task_key=key, fps=float(dataset.fps), scene_seed=seed,
            joint_targets=joint_angles_from_follower_actions(actions[episode_column == episode], limits),
            cube_xy=places[f"{key}_cube"][:2].copy(), cube_yaw=sim.cube_yaw(key), bowl_xy=places["bowl"][:2].copy()))
    return sources


def record_config(dataset, output: Path, repo_id: str, episodes: int, tasks: list[str], seed: int):
    """A virtual recording that appends to `output` with the source's fps, cameras and image size."""
    from lerobot_vla_plugin.workflow.record_config import RecordConfig, RecordDatasetConfig

    cameras = [key.removeprefix("observation.images.") for key in dataset.meta.camera_keys]
    height, width = dataset.meta.features[dataset.meta.camera_keys[0]]["shape"][:2]
    longest_s = max(float(length) for length in dataset.meta.episodes["length"]) / dataset.fps
    return RecordConfig(
        dataset=RecordDatasetConfig(repo_id=repo_id, root=str(output), fps=int(dataset.fps),
                                    episode_time_s=longest_s + 10.0, num_episodes=episodes,
                                    video=bool(dataset.meta.video_keys)),
        resume=True, keyboard="none", report=False, virtual="so101", tasks=",".join(tasks),
        virtual_cameras=",".join(cameras), camera_width=int(width), camera_height=int(height), seed=seed)


@dataclass
class MultiplyResult:
    """What one multiply run did; `exit_code` 0 when it generated every episode it was asked for."""

    exit_code: int
    message: str = ""
    kept: Counter = field(default_factory=Counter)  # per task key: generated episodes kept
    tried: Counter = field(default_factory=Counter)  # per task key: scenes a demonstration was generated for
    unreachable: Counter = field(default_factory=Counter)  # per task key: scenes out of reach of every source
    failed_takes: int = 0
    minutes: float = 0.0

    @property
    def per_minute(self) -> float:
        return sum(self.kept.values()) / max(self.minutes, 1e-9)


def multiply_dataset(source_root: Path, output: Path, factor: int, *, seed: int = DEFAULT_GENERATION_SEED,
                     repo_id: str | None = None, log=print) -> MultiplyResult:
    """Copy the source to `output` and append generated episodes until it holds factor x its successful ones."""
    import os

    os.environ.setdefault("MUJOCO_GL", "egl")
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from lerobot_vla_plugin.sim.so101 import TASKS, SO101Sim
    from lerobot_vla_plugin.workflow.record_session import RecordSession

    if not (source_root / "meta" / "info.json").is_file():
        return MultiplyResult(2, f"{source_root} is not a LeRobotDataset (no meta/info.json)")
    if output.exists():
        return MultiplyResult(2, f"{output} already exists; choose a new folder for the multiplied dataset")
    if factor < 2:
        return MultiplyResult(2, f"--factor {factor}: the output holds factor x the source's episodes, so it must "
                                 "be >= 2")
    source = LeRobotDataset(f"local/{source_root.name}", root=source_root)
    if "demonstration" not in source.meta.episodes.column_names:
        return MultiplyResult(2, f"the episodes of {source_root} do not say where their demonstration came from "
                                 "(recorded by an older version); record the source again with lerobot-vla record "
                                 "--virtual so101")
    if not source.meta.camera_keys:
        return MultiplyResult(2, f"{source_root} has no camera images (recorded with --dataset.video=false, which "
                                 "LeRobot records without images); a policy needs them, so record the source with "
                                 "video")
    try:
        sources = load_sources(source)
    except ValueError as error:
        return MultiplyResult(2, str(error))
    if not sources:
        return MultiplyResult(2, f"{source_root} has no successful episode to multiply")
    tasks = sorted({s.task_key for s in sources})
    wanted = factor * len(sources) - source.meta.total_episodes
    if wanted < 1:
        return MultiplyResult(2, f"{source_root} already holds {source.meta.total_episodes} episodes, "
                                 f"{len(sources)} of them successful: --factor {factor} asks for no new one; raise "
                                 "--factor")
    repo_id = repo_id or f"local/{output.name}"
    shutil.copytree(source_root, output)
    log(f"Multiplying {len(sources)} successful episodes ({', '.join(tasks)}) of {source_root} into "
        f"{output}: {wanted} new episodes on fresh scenes from seed {seed}.")
    planner = RetargetingPlanner(sources, np.random.default_rng(seed), SO101Sim())
    started = time.perf_counter()
    session = RecordSession(record_config(source, output, repo_id, wanted, tasks, seed),
                            demonstration_planner=planner, successes_only=True)
    session_result = session.run()
    # This run's episodes follow the source's (which may itself hold generated ones).
    new_tasks = [t[0] for t in LeRobotDataset(repo_id, root=output).meta.episodes["tasks"]]
    kept_by_instruction = Counter(new_tasks[source.meta.total_episodes:])
    return MultiplyResult(
        session_result.exit_code, session_result.message if session_result.exit_code else "",
        kept=Counter({task: kept_by_instruction[TASKS[task]] for task in tasks}), tried=Counter(planner.scenes),
        unreachable=Counter(planner.unreachable), failed_takes=session_result.failed_task,
        minutes=(time.perf_counter() - started) / 60)


def format_result(result: MultiplyResult) -> str:
    """The generation rate and, per task, the acceptance rate."""
    lines = [f"Generated {sum(result.kept.values())} episodes in {result.minutes:.1f} min "
             f"({result.per_minute:.1f} per minute); dropped {result.failed_takes} failed takes."]
    for task in sorted(result.tried):
        tried, accepted = result.tried[task], result.kept[task]
        lines.append(f"  {task}: {accepted}/{tried} scenes accepted ({100 * accepted / max(tried, 1):.0f} %), "
                     f"{result.unreachable[task]} out of reach of every source")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    result = multiply_dataset(args.source, args.output, args.factor, seed=args.seed, repo_id=args.repo_id)
    if result.tried:
        print(format_result(result))
    if result.exit_code != 0:
        print(f"error: {result.message}")
    return result.exit_code
