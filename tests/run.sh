#!/usr/bin/env bash
# Set up (first run) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/examples/setup_env.sh"
cd "$ROOT"
export MUJOCO_GL="${MUJOCO_GL:-egl}" HF_HUB_OFFLINE=1
# Tests share 2 cores with emulator threads, MuJoCo and video encoders: give servo replies a wider margin than a
# real bus needs (25 ms), so a busy machine shows up as retries, not as a silent servo.
export LEROBOT_VLA_BUS_TIMEOUT_MS="${LEROBOT_VLA_BUS_TIMEOUT_MS:-150}"
exec .venv/bin/python -m pytest tests -q "$@"
