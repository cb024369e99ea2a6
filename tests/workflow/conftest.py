"""Helpers for the recorder tests: hands-free sessions on the virtual SO-101, run in-process or as commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MUJOCO_GL", "egl")

BIN = Path(sys.executable).parent
REPO_ID = "local/virtual_demo"
JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")

# Tiny and short: 48x64 images, one-second episodes.
SMALL = ["--camera_width=64", "--camera_height=48", "--dataset.episode_time_s=1", "--report=false",
         "--keyboard=none"]


def virtual_args(root: Path, *extra: str) -> list[str]:
    return ["--virtual", "so101", f"--dataset.repo_id={REPO_ID}", f"--dataset.root={root}", *SMALL, *extra]


def virtual_config(root: Path, *extra: str):
    from lerobot_vla_plugin.workflow.record import parse_config

    return parse_config(virtual_args(root, *extra))


def total_episodes(root: Path) -> int:
    return json.loads((root / "meta" / "info.json").read_text())["total_episodes"]


def load_dataset(root: Path, repo_id: str = REPO_ID):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset(repo_id, root=root)



def stock_env(tmp_path: Path) -> dict[str, str]:
    """Environment for stock lerobot-* commands: calibration and datasets under `tmp_path`, offline."""
    home = tmp_path / "home"
    return {**os.environ, "HF_LEROBOT_HOME": str(home), "HF_LEROBOT_CALIBRATION": str(home / "calibration"),
            "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def start_virtual_arm(env: dict[str, str], *options: str) -> tuple[subprocess.Popen, str, str]:
    """`lerobot-vla emulate` of the lockstep virtual SO-101 with its scripted leader, in its own process.

    Returns the process (stdout and stderr piped, text) and the follower and leader ports it printed."""
    emulator = subprocess.Popen(
        [str(BIN / "lerobot-vla"), "emulate", "--arm", "so101", "--physics", "--leader", "--lockstep", *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    follower_port = emulator.stdout.readline().strip()
    assert follower_port.startswith("/dev/"), emulator.stderr.read()
    leader_port = emulator.stdout.readline().strip().removeprefix("leader_port=")
    return emulator, follower_port, leader_port
