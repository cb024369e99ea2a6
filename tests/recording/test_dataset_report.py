"""`lerobot-vla dataset-report` passes a clean recording and flags each planted defect (exit 1 with --strict)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from lerobot_vla_plugin.cli import main
from lerobot_vla_plugin.recording import CrashSafeRecorder
from lerobot_vla_plugin.recording.quality import EpisodeData, analyze, dtw_distance

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


def record(root, defect: str | None, episodes: int = 4) -> None:
    with CrashSafeRecorder.create("local/report", root, fps=FPS, robot_type="vla_so101_follower",
                                  features=STATE_ONLY, use_videos=False) as recorder:
        for episode in range(episodes):
            frames = 5 if (defect == "short" and episode == 0) else FRAMES
            task = TASKS[0] if defect == "single-task" else TASKS[episode % 2]
            for frame in range(frames):
                state = smooth_state(episode, frame)
                if defect == "frozen" and episode == 2:
                    state[3] = 7.0
                if defect == "jump" and episode == 1 and frame >= 6:
                    state[0] += 30.0
                if defect == "nan" and episode == 2 and frame == 4:
                    state[2] = np.nan
                timestamp = frame / FPS
                if defect == "dropped" and episode == 3 and frame > 5:
                    timestamp = (frame + 3) / FPS  # three frames never reached the dataset
                recorder.add_frame({"observation.state": state, "action": smooth_state(episode, frame + 1),
                                    "task": task, "timestamp": timestamp})
            achieved_hz = 21.0 if (defect == "slow" and episode == 1) else 29.8
            recorder.save_episode({"achieved_hz": achieved_hz})


def report(root, capsys, *extra) -> tuple[int, str]:
    code = main(["dataset-report", str(root), "--chunk-size", str(CHUNK), "--strict", *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


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
    ("nan", "finite values", "episode 2: state elbow_flex has 1 NaN/inf value(s) (first at frame 4)"),
])
def test_planted_defect_is_flagged(tmp_path, capsys, defect, check, detail):
    record(tmp_path / "ds", defect)
    code, out = report(tmp_path / "ds", capsys)
    assert code == 1, out
    failed = [line for line in out.splitlines() if line.startswith("  [FAIL]")]
    assert failed == [next(line for line in out.splitlines() if line.startswith(f"  [FAIL] {check}:"))], out
    assert detail in out
    assert f"--strict: {tmp_path / 'ds'} fails the blocking check(s): {check}\n" in out  # what and where
    assert main(["dataset-report", str(tmp_path / "ds"), "--chunk-size", str(CHUNK)]) == 0  # only --strict fails


def test_missing_dataset_is_a_clear_error(tmp_path, capsys):
    assert main(["dataset-report", str(tmp_path / "nothing")]) == 2
    assert "No LeRobot dataset at" in capsys.readouterr().err


def test_dtw_is_zero_for_a_path_and_its_time_warped_copy():
    path = np.stack([np.linspace(0, 1, 10), np.linspace(0, 2, 10)], axis=1)
    slower = np.repeat(path, 2, axis=0)
    assert dtw_distance(path, slower) == pytest.approx(0.0)
    assert dtw_distance(path, path + 1.0) > 0.5


def statuses(report) -> dict[str, str]:
    return {c.name: "ok" if c.passed else ("FAIL" if c.blocking else "warn") for c in report.checks}


def episode(index: int, states, task: str = TASKS[0], **fields) -> EpisodeData:
    states = np.asarray(states, dtype=np.float64)
    return EpisodeData(index=index, task=task, timestamps=np.arange(len(states)) / FPS, states=states, **fields)


def test_one_episode_per_task_is_not_measured_diversity_never_ok(tmp_path, capsys):
    record(tmp_path / "ds", None, episodes=2)
    code, out = report(tmp_path / "ds", capsys)
    assert code == 0, out  # nothing blocking is wrong
    assert "[ok  ] path diversity" not in out
    assert ("[warn] path diversity: not measured: needs 2 episodes with finite states per task: "
            "'put the red cube in the bowl' (1 episode), 'put the blue cube in the bowl' (1 episode)") in out
    assert "  not measured  (1 episodes) put the red cube in the bowl" in out
    assert "nan" not in out


def test_checks_with_nothing_to_look_at_say_not_measured():
    """One single-frame episode: no step, no second episode, no range; only tasks and length are measured."""
    single = analyze([episode(0, [[1.0, 2.0]])], fps=FPS, joint_names=["a", "b"], chunk_size=1, min_tasks=1)
    status = statuses(single)
    assert status == {"finite values": "ok", "tasks": "ok", "episode length": "ok", "frozen joints": "warn",
                      "jumps": "warn", "dropped frames": "warn", "clipped joints": "warn", "unused joints": "warn",
                      "path diversity": "warn"}
    for check in single.checks[3:]:
        assert check.summary.startswith("not measured: "), check
    assert not single.failures


def test_nan_states_never_pass():
    nan = np.full((20, 2), np.nan)
    result = analyze([episode(0, nan), episode(1, nan)], fps=FPS, joint_names=["a", "b"], chunk_size=5,
                     min_tasks=1)
    status = statuses(result)
    assert status["finite values"] == "FAIL"
    assert result.checks[0].details[0] == "episode 0: state a has 20 NaN/inf value(s) (first at frame 0)"
    for name in ("frozen joints", "jumps", "clipped joints", "unused joints", "path diversity"):
        assert status[name] == "warn" and result.checks[list(status).index(name)].summary.startswith(
            "not measured"), name
    assert np.isnan(result.path_diversity[TASKS[0]]["mean_dtw"])  # and so not "identical" either


def test_a_nan_reading_hides_no_jump_and_no_clipping_elsewhere():
    ramp = np.linspace(0.0, 10.0, 60)
    jumping = np.stack([ramp, ramp], axis=1)
    jumping[40:, 0] += 50.0
    jumping[10, 0] = np.nan
    pinned = np.stack([ramp, np.minimum(3 * ramp, 10.0)], axis=1)  # b rises to its top and stays there
    pinned[5, 1] = np.nan
    result = analyze([episode(0, jumping), episode(1, pinned)], fps=FPS, joint_names=["a", "b"], chunk_size=5,
                     min_tasks=1)
    checks = {c.name: c for c in result.checks}
    assert not checks["finite values"].passed
    assert checks["frozen joints"].passed  # a NaN is not a frozen servo
    assert checks["jumps"].details == ["episode 0 frame 40: state a jumps +50.2 (typical step 0.169)"]
    assert checks["clipped joints"].details == ["state b: 36% of frames exactly at 0 or 10 (longest run 40 frames)"]
    assert result.joint_span["b"] == (0.0, 10.0)


def test_nan_timestamps_and_rate_are_flagged_not_passed():
    states = np.stack([np.linspace(0, 1, 10)] * 2, axis=1)
    late = episode(0, states, achieved_hz=float("nan"))
    torn = episode(1, states, achieved_hz=30.0)
    torn.timestamps[3] = np.nan
    result = analyze([late, torn], fps=FPS, joint_names=["a", "b"], chunk_size=5, min_tasks=1)
    checks = {c.name: c for c in result.checks}
    assert checks["dropped frames"].details == ["episode 0: recorded rate is nan Hz"]
    assert checks["finite values"].details == ["episode 1: 1 non-finite timestamp(s)"]


def test_a_fast_smooth_gripper_close_is_not_a_jump_but_a_one_frame_leap_is():
    """A mostly-still gripper closing over a few frames moves far per frame, yet continuously."""
    still = 40.0 + 0.1 * (np.arange(60) % 2)  # a hand resting on the leader: encoder-step jitter
    closing = still.copy()
    closing[30:] = 5.0
    closing[28:30] = [30.0, 15.0]  # 40 -> 30 -> 15 -> 5: closed in three frames
    leaping = still.copy()
    leaping[45:] = 5.0
    arm = np.linspace(0.0, 30.0, 60)
    result = analyze([episode(0, np.stack([arm, closing], axis=1)), episode(1, np.stack([arm, leaping], axis=1))],
                     fps=FPS, joint_names=["arm", "gripper"], chunk_size=5, min_tasks=1)
    jumps = next(c for c in result.checks if c.name == "jumps")
    assert jumps.details == ["episode 1 frame 45: state gripper jumps -35 (typical step 0.1)"]
