#!/usr/bin/env bash
# Set up (first run) and run the main job: today the servo-layer demo on emulated SO-101 buses, then the bus
# benchmark against LeRobot's built-in buses.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/examples/setup_env.sh"
cd "$ROOT"
export MUJOCO_GL="${MUJOCO_GL:-egl}" HF_HUB_OFFLINE=1
.venv/bin/python examples/servo_demo.py
.venv/bin/lerobot-vla bench bus --iterations 500 --iterations-timed 200
