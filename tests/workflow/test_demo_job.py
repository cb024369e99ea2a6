"""The README's main job (examples/demo.sh) at --quick size: every stage runs through the real commands, the report
folder is written, and a second run resumes instead of redoing finished work."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]


def run_demo(out: Path) -> str:
    env = {**os.environ, "DEMO_OUT": str(out)}
    done = subprocess.run([str(REPOSITORY / "examples" / "demo.sh"), "--quick"], cwd=REPOSITORY, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_quick_main_job_records_trains_evaluates_reports_and_resumes(tmp_path):
    out = tmp_path / "demo"
    first = run_demo(out)
    for heading in ("== 1/5 recording 2", "== 2/5 dataset report", "== 3/5 fine-tuning flow_vla for 2 steps",
                    "== 4/5 rolling", "== 5/5 report"):
        assert heading in first
    report = (out / "report" / "README.md").read_text()
    assert "| round0 | async | all | " in report
    assert "lerobot-train --config_path recipes/so101_virtual_demo_small_cpu.json" in report
    stages = [line.split("\t")[0] for line in (out / "stage_times.tsv").read_text().splitlines()]
    assert stages == ["record", "dataset-report", "train", "evaluate"]

    second = run_demo(out)
    assert "recording skipped" in second and "training skipped" in second and "evaluation skipped" in second
    assert [line.split("\t")[0] for line in (out / "stage_times.tsv").read_text().splitlines()] == [
        "record", "dataset-report", "train", "evaluate", "dataset-report"]
