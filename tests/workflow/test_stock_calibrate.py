"""Stock `lerobot-calibrate` on the virtual SO-101 served by another process: the emulator's hand holds the arm at
mid-range and sweeps every joint through its range, so the calibration completes and writes its file."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

from .conftest import BIN, start_virtual_arm, stock_env


def _lines(stream) -> queue.Queue:
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        if text in line:
            return


def test_stock_lerobot_calibrate_completes_on_the_emulated_virtual_follower(tmp_path):
    env = stock_env(tmp_path)
    emulator, follower_port, _ = start_virtual_arm(env, "--episodes-file", str(tmp_path / "episodes.jsonl"))
    emulator_log = _lines(emulator.stderr)
    try:
        calibrate = subprocess.Popen(
            [str(BIN / "lerobot-calibrate"), "--robot.type=vla_so101_follower", f"--robot.port={follower_port}",
             "--robot.id=calibrated"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        calibrate.stdin.write("\n")  # "Move ... to the middle of its range of motion and press ENTER"
        calibrate.stdin.flush()
        _wait_for(emulator_log, "every joint has been through its range", timeout_s=120)
        calibrate.stdin.write("\n")  # "Recording positions. Press ENTER to stop..."
        calibrate.stdin.flush()
        _, errors = calibrate.communicate(timeout=60)
        assert calibrate.returncode == 0, errors[-3000:]
    finally:
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(timeout=30)

    saved = json.loads((Path(env["HF_LEROBOT_CALIBRATION"]) / "robots" / "vla_so101_follower"
                        / "calibrated.json").read_text())
    assert set(saved) == {"shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"}
    assert (saved["wrist_roll"]["range_min"], saved["wrist_roll"]["range_max"]) == (0, 4095)
    for joint, cal in saved.items():  # every swept joint covers most of its range (a few radians, ~650 steps/rad)
        assert cal["range_max"] - cal["range_min"] > 1000, (joint, cal)
    # A calibration is no episode: nothing was reported.
    assert not (tmp_path / "episodes.jsonl").exists()
