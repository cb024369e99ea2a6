"""SIGKILL at many points of a recording never loses a finished episode, and the dataset always opens.

One dataset lives through every kill: each run resumes what the previous kill left (so repair itself is also
killed sometimes), records three episodes and is killed either right at a save stage (optionally a few
milliseconds later, landing inside the next write or the video encode) or at a random time. After every kill the
stock `LeRobotDataset` must open the dataset as it is on disk, before any repair, and hold every episode the
recorder had reported finished, each with exactly its own frames.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from lerobot_vla_plugin.recording import SAVE_STAGES

from .conftest import committed_episodes, episode_states
from .kill_harness import FRAMES_PER_EPISODE, TASKS

HARNESS = Path(__file__).with_name("kill_harness.py")
EPISODES_PER_RUN = 3
SEED = int(os.environ.get("KILL_TEST_SEED", "4"))


class Harness:
    """The fork server of kill_harness.py, started once (it pays LeRobot's import time once)."""

    def __init__(self):
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
        self.process = subprocess.Popen([sys.executable, str(HARNESS)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env)
        assert json.loads(self.process.stdout.readline()) == {"ready": True}

    def run(self, **request) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=30)


def kill_plan(first_run_s: float) -> list[dict]:
    """Every save stage, once exactly at it and once a random few ms after it; then random wall-clock times."""
    rng = random.Random(SEED)
    plan = []
    for stage in SAVE_STAGES:
        for delay_s in (0.0, rng.uniform(0.001, 0.03)):
            plan.append({"mode": "stage", "stage": stage, "stage_episode": rng.randrange(EPISODES_PER_RUN),
                         "delay_s": delay_s})
    for _ in range(10):
        plan.append({"mode": "time", "stage": None, "stage_episode": 0,
                     "delay_s": rng.uniform(0.0, 2.5 * first_run_s)})
    return plan


def check_stock_load(root: Path, expected: dict[int, tuple[int, int]]) -> None:
    """Open with stock LeRobot, as the files are; every expected episode holds exactly its own frames."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset("local/kill_test", root=root)
    assert dataset.num_episodes == len(expected)
    assert len(dataset) == len(expected) * FRAMES_PER_EPISODE
    for episode_index, (run, take) in expected.items():
        states = episode_states(dataset, episode_index)
        assert states[:, 0].tolist() == [run] * FRAMES_PER_EPISODE, f"episode {episode_index}: wrong run's frames"
        assert states[:, 1].tolist() == [take] * FRAMES_PER_EPISODE, f"episode {episode_index}: wrong take"
        assert states[:, 2].tolist() == list(range(FRAMES_PER_EPISODE))
        assert dataset.meta.episodes[episode_index]["tasks"] == [TASKS[take % 2]]
    last = dataset[len(dataset) - 1]  # decodes a video frame of the newest episode
    assert last["observation.images.front"].shape == (3, 32, 32)


def test_sigkill_at_many_points_loses_no_finished_episode(tmp_path):
    root = tmp_path / "dataset"
    harness = Harness()
    expected: dict[int, tuple[int, int]] = {}
    landed_after: dict[str, int] = {}
    try:
        first = harness.run(root=str(root), run=0, episodes=EPISODES_PER_RUN, frames=FRAMES_PER_EPISODE,
                            mode="none", stage=None, stage_episode=0, delay_s=0.0)
        assert first["exit_code"] == 0 and not first["killed"]
        expected.update({index: (0, take) for take, index in first["finished"]})
        plan = kill_plan(first["elapsed_s"])
        kills = 0
        for run, kill in enumerate(plan, start=1):
            result = harness.run(root=str(root), run=run, episodes=EPISODES_PER_RUN, frames=FRAMES_PER_EPISODE,
                                 **kill)
            assert result["killed"], result
            kills += 1
            if kill["mode"] == "stage":
                assert f"{kill['stage']}:" in " ".join(result["stages"]), f"stage never reached: {kill} {result}"
            finished = {index: (run, take) for take, index in result["finished"]}
            assert set(finished).isdisjoint(expected), "an episode index was reused"
            expected.update(finished)
            on_disk = committed_episodes(root)
            assert on_disk in (len(expected), len(expected) + 1), (on_disk, len(expected), result)
            if on_disk == len(expected) + 1:
                # Killed after the commit of the episode in progress but before it was reported: it is complete.
                done_takes = [take for take, _ in result["finished"]]
                expected[on_disk - 1] = (run, (max(done_takes) + 1) if done_takes else 0)
            if result["closed"]:
                last_stage = "after close"
            elif result["stages"]:
                last_stage = result["stages"][-1].split(":")[0]
            else:
                last_stage = "recording first episode" if result["opened_with"] is not None else "opening/repairing"
            landed_after[last_stage] = landed_after.get(last_stage, 0) + 1
            check_stock_load(root, expected)

        final = harness.run(root=str(root), run=len(plan) + 1, episodes=EPISODES_PER_RUN,
                            frames=FRAMES_PER_EPISODE, mode="none", stage=None, stage_episode=0, delay_s=0.0)
        assert final["exit_code"] == 0
        expected.update({index: (len(plan) + 1, take) for take, index in final["finished"]})
    finally:
        harness.close()

    print(f"\n{kills} SIGKILLs over {len(plan)} runs; kills by last completed stage: {landed_after}; "
          f"{len(expected)} episodes kept")
    assert kills >= 20
    check_stock_load(root, expected)
    # After the last (clean) run nothing of the torn tails is left: one file of each kind per episode.
    assert len(list((root / "data").glob("*/*.parquet"))) == len(expected)
    assert len(list((root / "meta" / "episodes").glob("*/*.parquet"))) == len(expected)
    assert len(list((root / "videos").glob("*/*/*.mp4"))) == len(expected)
    assert not (root / "images").exists()
    assert not [p for p in root.rglob(".*") if p.is_file()]
    _check_every_video_frame(root, expected)


def _check_every_video_frame(root: Path, expected: dict[int, tuple[int, int]]) -> None:
    """Every frame of every kept episode decodes to the image that was recorded for it."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset("local/kill_test", root=root)
    for index in range(len(dataset)):
        item = dataset[index]
        take, frame_index = int(item["observation.state"][1]), int(item["observation.state"][2])
        recorded = ((40 * take + 20 * frame_index) % 256) / 255.0
        assert abs(float(item["observation.images.front"].mean()) - recorded) < 0.03, (index, take, frame_index)


def test_sigkill_right_after_a_saved_message_keeps_every_episode_the_log_called_saved(tmp_path):
    """The real `lerobot-vla record`, killed the moment it prints "Episode 1 saved" while it records episode 2."""
    import re
    import signal

    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = tmp_path / "virtual"
    command = [str(Path(sys.executable).parent / "lerobot-vla"), "record", "--virtual", "so101",
               "--dataset.repo_id=local/kill_saved", f"--dataset.root={root}", "--dataset.num_episodes=6",
               "--dataset.episode_time_s=1", "--camera_width=64", "--camera_height=48", "--report=false",
               "--keyboard=none"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
           "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    said_saved: dict[int, str] = {}
    try:
        for line in process.stdout:
            match = re.match(r"Episode (\d+) saved: '([^']+)'", line)
            if match:
                said_saved[int(match.group(1))] = match.group(2)
                if int(match.group(1)) == 1:
                    process.send_signal(signal.SIGKILL)
                    break
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert sorted(said_saved) == [0, 1], said_saved

    dataset = LeRobotDataset("local/kill_saved", root=root)  # as the kill left it, before any repair
    assert dataset.num_episodes >= len(said_saved)
    for index, task in said_saved.items():
        assert dataset.meta.episodes[index]["tasks"] == [task]
    assert dataset[dataset.meta.episodes[1]["dataset_to_index"] - 1]["observation.images.front"].shape == (3, 48, 64)
