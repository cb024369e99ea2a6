"""`./tests/run.sh` runs the whole suite, or only the test files and node ids it is given."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).with_name("run.sh")


def _pytest_argv(tmp_path: Path, *args: str) -> list[str]:
    """Run a copy of run.sh in a tree whose setup step does nothing and whose python prints its arguments."""
    (tmp_path / "tests" / "arms").mkdir(parents=True)  # parents: tmp_path may be a new subfolder
    (tmp_path / "tests" / "arms" / "test_x.py").write_text("")
    shutil.copy(SCRIPT, tmp_path / "tests" / "run.sh")
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "setup_env.sh").write_text("#!/bin/sh\n")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    for script in ("examples/setup_env.sh", ".venv/bin/python", "tests/run.sh"):
        (tmp_path / script).chmod(0o755)
    out = subprocess.run([str(tmp_path / "tests" / "run.sh"), *args], cwd=tmp_path, capture_output=True, text=True,
                         check=True).stdout
    return out.splitlines()[2:]  # after "-m pytest"


def test_no_arguments_run_the_whole_suite(tmp_path):
    assert _pytest_argv(tmp_path) == ["tests", "-q", "--durations=25"]


def test_a_file_runs_only_that_file(tmp_path):
    options = ["-q", "--durations=25"]
    assert _pytest_argv(tmp_path / "a", "tests/arms/test_x.py", "-x") == [*options, "tests/arms/test_x.py", "-x"]
    assert _pytest_argv(tmp_path / "b", "tests/arms/test_x.py::test_a") == [*options, "tests/arms/test_x.py::test_a"]


def test_options_alone_still_run_the_whole_suite(tmp_path):
    assert _pytest_argv(tmp_path, "-x", "-k", "doctor") == ["tests", "-q", "--durations=25", "-x", "-k", "doctor"]
