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


def run(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("MUJOCO_GL", "egl")
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from lerobot_vla_plugin.sim.so101 import TASKS, SO101Sim
    from lerobot_vla_plugin.workflow.record_session import RecordSession

    if not (args.source / "meta" / "info.json").is_file():
        print(f"error: {args.source} is not a LeRobotDataset (no meta/info.json)")
        return 2
    if args.output.exists():
        print(f"error: {args.output} already exists; choose a new folder for the multiplied dataset")
        return 2
    if args.factor < 2:
        print(f"error: --factor {args.factor}: the output holds factor x the source's episodes, so it must be >= 2")
        return 2
    source = LeRobotDataset(f"local/{args.source.name}", root=args.source)
    if "demonstration" not in source.meta.episodes.column_names:
        print(f"error: the episodes of {args.source} do not say where their demonstration came from (recorded "
              "by an older version); record the source again with lerobot-vla record --virtual so101")
        return 2
    if not source.meta.camera_keys:
        print(f"error: {args.source} has no camera images (recorded with --dataset.video=false, which LeRobot "
              "records without images); a policy needs them, so record the source with video")
        return 2
    try:
        sources = load_sources(source)
    except ValueError as error:
        print(f"error: {error}")
        return 2
    if not sources:
        print(f"error: {args.source} has no successful episode to multiply")
        return 2
    tasks = sorted({s.task_key for s in sources})
    wanted = args.factor * len(sources) - source.meta.total_episodes
    if wanted < 1:
        print(f"error: {args.source} already holds {source.meta.total_episodes} episodes, {len(sources)} of them "
              f"successful: --factor {args.factor} asks for no new one; raise --factor")
        return 2
    repo_id = args.repo_id or f"local/{args.output.name}"
    shutil.copytree(args.source, args.output)
    print(f"Multiplying {len(sources)} successful episodes ({', '.join(tasks)}) of {args.source} into "
          f"{args.output}: {wanted} new episodes on fresh scenes from seed {args.seed}.")
    planner = RetargetingPlanner(sources, np.random.default_rng(args.seed), SO101Sim())
    started = time.perf_counter()
    session = RecordSession(record_config(source, args.output, repo_id, wanted, tasks, args.seed),
                            demonstration_planner=planner, successes_only=True)
    result = session.run()
    minutes = (time.perf_counter() - started) / 60
    # This run's episodes follow the source's (which may itself hold generated ones).
    new_tasks = [t[0] for t in LeRobotDataset(repo_id, root=args.output).meta.episodes["tasks"]]
    kept = Counter(new_tasks[source.meta.total_episodes:])
    print(f"Generated {sum(kept.values())} episodes in {minutes:.1f} min "
          f"({sum(kept.values()) / max(minutes, 1e-9):.1f} per minute); dropped {result.failed_task} failed takes.")
    for task in tasks:
        tried = planner.scenes[task]
        accepted = kept[TASKS[task]]
        print(f"  {task}: {accepted}/{tried} scenes accepted ({100 * accepted / max(tried, 1):.0f} %), "
              f"{planner.unreachable[task]} out of reach of every source")
    if result.exit_code != 0:
        print(f"error: {result.message}")
    return result.exit_code
