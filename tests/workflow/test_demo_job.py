"""The README's main job (examples/demo.sh) at --quick size: every stage runs through the real commands, the report
folder is written, and a second run resumes instead of redoing finished work."""

from __future__ import annotations

import json
import math
import os
import re
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
def test_quick_main_job_records_trains_evaluates_runs_a_flywheel_round_reports_and_resumes(tmp_path):
    out = tmp_path / "demo"
    first = run_demo(out)
    for heading in ("== 1/6 recording 2", "== 2/6 dataset report",
                    "== 3/6 fine-tuning flow_vla from recipes/checkpoints/flow_vla_so101_virtual for 2 steps",
                    "== 4/6 rolling", "== 5/6 flywheel round", "== 6/6 report"):
        assert heading in first
    stages = [line.split("\t")[0] for line in (out / "stage_times.tsv").read_text().splitlines()]
    assert stages == ["record", "dataset-report", "train", "evaluate", "record-held-out", "calibrate",
                      "rollout-hand-off", "merge", "train-round1", "evaluate-round1"]
    # The flywheel: a threshold calibrated into the checkpoint, corrections recorded and merged with the demos,
    # a fine-tune from the round-0 weights, and the same scenes evaluated again.
    threshold = json.loads((out / "train/checkpoints/last/pretrained_model/config.json").read_text())[
        "uncertainty_threshold"]
    assert isinstance(threshold, float) and math.isfinite(threshold)
    merged = re.search(r"Merged 3 episodes \((\d+) frames, (\d+) of them intervention frames\)", first)
    assert merged and 0 < int(merged[2]) < int(merged[1])
    assert (out / "train_round1/checkpoints/last/pretrained_model/model.safetensors").is_file()
    report = (out / "report" / "README.md").read_text()
    assert "| round0 | async | all | " in report and "| round1 | async | all | " in report
    assert "lerobot-train --policy.path=recipes/checkpoints/flow_vla_so101_virtual" in report
    assert "lerobot-vla flywheel-merge --demos" in report
    assert re.search(r"Rollout with hand-off: 1 episodes, [1-9]\d* hand-offs to the scripted operator", report)

    second = run_demo(out)
    for skipped in ("recording skipped", "training skipped", "evaluation skipped", "flywheel round for this "
                    "checkpoint is done: skipped"):
        assert skipped in second
    assert [line.split("\t")[0] for line in (out / "stage_times.tsv").read_text().splitlines()] == [
        *stages, "dataset-report"]
