"""`lerobot-vla dataset-report` passes a clean recording and flags each planted defect (exit 1 with --strict)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from lerobot_vla_plugin.cli import main
from lerobot_vla_plugin.recording import CrashSafeRecorder
from lerobot_vla_plugin.recording.quality import dtw_distance

from .conftest import TASKS

FPS = 30
FRAMES = 20
CHUNK = 10
JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
STATE_ONLY = {
    "observation.state": {"dtype": "float32", "shape": (6,), "names": JOINTS},
    "action": {"dtype": "float32", "shape": (6,), "names": JOINTS},
}


def smooth_state(episode: int, frame: int) -> np.ndarray:
    """Slow sinusoids (a quarter period per episode), a different phase per episode: a clean demonstration."""
    return np.array([20 * math.sin(2 * math.pi * frame / (4 * FRAMES) + 0.7 * episode + j) + 5 * j
                     for j in range(6)], dtype=np.float32)


def record(root, defect: str | None) -> None:
    with CrashSafeRecorder.create("local/report", root, fps=FPS, robot_type="vla_so101_follower",
                                  features=STATE_ONLY, use_videos=False) as recorder:
        for episode in range(4):
            frames = 5 if (defect == "short" and episode == 0) else FRAMES
            task = TASKS[0] if defect == "single-task" else TASKS[episode % 2]
            for frame in range(frames):
                state = smooth_state(episode, frame)
                if defect == "frozen" and episode == 2:
                    state[3] = 7.0
                if defect == "jump" and episode == 1 and frame >= 6:
                    state[0] += 30.0
                timestamp = frame / FPS
                if defect == "dropped" and episode == 3 and frame > 5:
                    timestamp = (frame + 3) / FPS  # three frames never reached the dataset
                recorder.add_frame({"observation.state": state, "action": smooth_state(episode, frame + 1),
                                    "task": task, "timestamp": timestamp})
            achieved_hz = 21.0 if (defect == "slow" and episode == 1) else 29.8
            recorder.save_episode({"achieved_hz": achieved_hz})


def report(root, capsys, *extra) -> tuple[int, str]:
    code = main(["dataset-report", str(root), "--chunk-size", str(CHUNK), "--strict", *extra])
    return code, capsys.readouterr().out


def test_clean_dataset_passes_and_plots(tmp_path, capsys):
    record(tmp_path / "ds", None)
    code, out = report(tmp_path / "ds", capsys, "--plot", str(tmp_path / "summary.png"))
    assert code == 0, out
    assert "[FAIL]" not in out and "[warn]" not in out
    assert "4 episodes, 80 frames at 30 fps; task entropy 1.00 bits" in out
    assert "     2 episodes      40 frames  put the red cube in the bowl" in out
    with Image.open(tmp_path / "summary.png") as plot:
        assert plot.format == "PNG" and plot.size == (1200, 800)
        assert len(plot.getcolors(1 << 16) or []) > 5  # something was drawn


@pytest.mark.parametrize("defect, check, detail", [
    ("frozen", "frozen joints", "episode 2: state wrist_flex constant for all 20 frames"),
    ("jump", "jumps", "episode 1 frame 6: state shoulder_pan jumps +3"),
    ("dropped", "dropped frames", "episode 3: 3 frame(s) missing"),
    ("slow", "dropped frames", "episode 1: recorded at 21.0 Hz"),
    ("short", "episode length", "episode 0: 5 frames"),
    ("single-task", "tasks", "1 task(s), entropy 0.00 bits"),
])
def test_planted_defect_is_flagged(tmp_path, capsys, defect, check, detail):
    record(tmp_path / "ds", defect)
    code, out = report(tmp_path / "ds", capsys)
    assert code == 1, out
    failed = [line for line in out.splitlines() if line.startswith("  [FAIL]")]
    assert failed == [next(line for line in out.splitlines() if line.startswith(f"  [FAIL] {check}:"))], out
    assert detail in out
    assert main(["dataset-report", str(tmp_path / "ds"), "--chunk-size", str(CHUNK)]) == 0  # only --strict fails


def test_missing_dataset_is_a_clear_error(tmp_path, capsys):
    assert main(["dataset-report", str(tmp_path / "nothing")]) == 2
    assert "No LeRobot dataset at" in capsys.readouterr().err


def test_dtw_is_zero_for_a_path_and_its_time_warped_copy():
    path = np.stack([np.linspace(0, 1, 10), np.linspace(0, 2, 10)], axis=1)
    slower = np.repeat(path, 2, axis=0)
    assert dtw_distance(path, slower) == pytest.approx(0.0)
    assert dtw_distance(path, path + 1.0) > 0.5
