"""examples/use_as_library.py runs as a user would run it: one demonstration on the virtual SO-101, succeeded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "use_as_library.py"


@pytest.mark.slow
def test_library_example_drives_the_virtual_arm_through_one_demonstration():
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(EXAMPLE), "--task", "blue", "--seed", "3", "--camera-size", "64x48"],
                            capture_output=True, text=True, env=env, timeout=180, check=False)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("task: 'put the blue cube in the bowl' (scene seed 3)")
    assert "front camera (48, 64, 3)" in result.stdout
    assert lines[-1] == "task succeeded: True"
