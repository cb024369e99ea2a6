#!/usr/bin/env bash
# Set up (first run) and run the tests: the whole suite, or only the files / node ids given
# (`./tests/run.sh tests/arms/test_doctor.py -x`). Other arguments go to pytest. The 25 slowest tests are
# listed at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/examples/setup_env.sh"
cd "$ROOT"
export MUJOCO_GL="${MUJOCO_GL:-egl}" HF_HUB_OFFLINE=1
targets=(tests)
for arg in "$@"; do
  if [[ "$arg" != -* && -e "${arg%%::*}" ]]; then targets=(); break; fi
done
exec .venv/bin/python -m pytest "${targets[@]}" -q --durations=25 "$@"
