"""`lerobot-vla bench rollout` at smoke size: a tiny flow_vla checkpoint written by the test drives the virtual
SO-101 for one short episode per row, on both clocks; every row and column is there and every number is finite
and plausible. Speeds are the benchmark's to report, never asserted here."""

from __future__ import annotations

import json
import math

import numpy as np

from lerobot_vla_plugin import cli
from lerobot_vla_plugin.rollout.stats import chunk_boundary_jerk

from .test_evaluate import write_tiny_checkpoint

LABELS = ["stock sync (predict_action)", "ours async + RTC", "ours async + blend", "ours async naive"]
NUMBERS = ("latency_p50_ms", "latency_p99_ms", "jerk_boundary", "jerk_elsewhere", "success_rate")


def test_bench_compares_every_merge_with_stock_sync_on_the_same_scenes(tmp_path, capsys):
    checkpoint = write_tiny_checkpoint("flow_vla", tmp_path / "pretrained_model")
    out = tmp_path / "bench"
    assert cli.main(["bench", "rollout", f"--policy.path={checkpoint}", "--episodes", "1", "--episode-time-s", "1",
                     "--rates", "30,45", "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "rollout_bench.json").read_text())

    assert set(report["rows"]) == {"wall", "lockstep"}
    for clock, rows in report["rows"].items():
        assert [row["label"] for row in rows] == LABELS
        for row in rows:
            assert row["ticks"] == 30 and row["episodes"] == 1 and row["chunks"] >= 2 and row["errors"] == []
            for key in NUMBERS:
                assert isinstance(row[key], float) and math.isfinite(row[key]) and row[key] >= 0, (clock, key)
            assert 0 < row["latency_p50_ms"] <= row["latency_p99_ms"] < 60_000
            assert row["stalls"] >= 0 and 0 <= row["success_rate"] <= 1
            if clock == "wall":
                assert 0 < row["achieved_hz"] <= 31 and row["period_p99_ms"] > 0
            else:  # simulated time: no wall-clock cadence to report, and it says so
                assert row["achieved_hz"] == row["period_p99_ms"] == "n/a: lockstep"
    assert [row["target_hz"] for row in report["rates"]] == [30, 45]
    assert report["settings"]["stock_path"].startswith("reproduced through LeRobot's API")
    for header in ("Hz", "p99 ms", "stalls", "lat p50", "lat p99", "jerk@chunk", "jerk else", "success"):
        assert header in printed
    assert printed.count("ratio to stock sync") == 2 and "load average" in printed
    # Which rates hold depends on the machine's load (a benchmark's finding, not this test's): one verdict line.
    assert ("highest rate held" in printed) != ("no tried rate was held" in printed)


class Trace:
    def __init__(self, requested, chunk_starts):
        self.joint_names = ["shoulder_pan.pos", "gripper.pos"]
        self.requested = [np.array(row, dtype=float) for row in requested]
        self.chunk_starts = chunk_starts


def test_jerk_is_the_second_difference_at_chunk_takeovers_against_elsewhere():
    # A ramp of 1 deg/tick that steps back by 3 deg where the second chunk takes over (tick 5); the gripper's
    # jumps are in percent and do not count. Ticks 0-1 hold the pose before the first chunk (tick 2).
    pan = [0, 0, 0, 1, 2, 0, 1, 2, 3]
    trace = Trace([[p, 50 * (i % 2)] for i, p in enumerate(pan)], chunk_starts=[2, 5])
    jerk = chunk_boundary_jerk([trace])
    assert jerk["jerk_boundary_ticks"] == 2 and jerk["jerk_elsewhere_ticks"] == 3
    assert jerk["jerk_boundary"] == 3.0  # centres 4 (|0 - 4 + 1|) and 5 (|1 - 0 + 2|)
    assert jerk["jerk_elsewhere"] == 0.0 and jerk["jerk_boundary_max"] == 3.0
    no_boundary = chunk_boundary_jerk([Trace([[p, 0] for p in pan], chunk_starts=[2])])
    assert no_boundary["jerk_boundary"] is None and no_boundary["jerk_elsewhere"] is not None
