#!/usr/bin/env bash
# Idempotent setup used by the README commands: system libraries (when root), .venv/ at the repository root,
# and an editable install of the package with its test extra. Re-running is fast when nothing changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# FFmpeg shared libraries (torchcodec video decoding) and EGL/OSMesa (MuJoCo offscreen rendering).
SYSTEM_PACKAGES=(ffmpeg libosmesa6 libegl1 libgl1)
missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "Installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "Missing system packages: ${missing[*]} (install them with: sudo apt-get install ${missing[*]})" >&2
  fi
fi

PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PYTHON="$candidate"; break
    fi
  done
fi
[[ -n "$PYTHON" ]] || { echo "Python 3.11 or newer is required." >&2; exit 1; }

if [[ ! -x .venv/bin/python ]]; then
  echo "Creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  echo "Installing lerobot_robot_vla_plugin and its dependencies into .venv (a few minutes the first time)"
  .venv/bin/python -m pip install -q -e ".[test]"
  rm -f .venv/.installed-* && touch "$stamp"
fi
