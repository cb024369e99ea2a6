"""The main job's report folder is built from what its stages wrote, and says what is missing instead of inventing it."""

from __future__ import annotations

import json

from lerobot_vla_plugin import cli
from lerobot_vla_plugin.workflow.demo_report import parse_losses

TRAIN_LOG = """INFO 2026-12-04 15:00:01 ot_train.py:338 step:50 smpl:2K ep:6 epch:0.11 loss:0.612 grdn:3.1 lr:1.0e-04
INFO 2026-12-04 15:00:31 ot_train.py:338 step:1K smpl:32K ep:95 epch:1.80 loss:0.081 grdn:0.9 lr:3.0e-04
"""


def evaluation(successes: list[bool], inference: str) -> dict:
    summary = {"red": {"episodes": len(successes), "successes": sum(successes),
                       "success_rate": sum(successes) / len(successes), "wilson95": [0.1, 0.9]}}
    return {"settings": {"inference": inference}, "summary": summary}


def test_losses_are_read_from_lerobot_train_log_lines_with_thousands():
    assert parse_losses(TRAIN_LOG) == [(50, 0.612), (1000, 0.081)]


def test_report_folder_has_the_success_table_loss_curve_times_and_commands(tmp_path, capsys):
    (tmp_path / "train.log").write_text(TRAIN_LOG)
    for name, successes in (("round0", [True, False, False]), ("round1", [True, True, False])):
        (tmp_path / f"eval_{name}").mkdir()
        (tmp_path / f"eval_{name}" / "eval_episodes.json").write_text(json.dumps(evaluation(successes, "async")))
    (tmp_path / "stage_times.tsv").write_text("record\t120\t8 episodes\ntrain\t600\t\n")
    (tmp_path / "commands.sh").write_text("lerobot-train --config_path recipes/x.json\n")
    assert cli.main(["demo-report", str(tmp_path)]) == 0
    report = (tmp_path / "report" / "README.md").read_text()
    assert "| round0 | async | red | 1/3 | 33% |" in report
    assert "| round1 | async | red | 2/3 | 67% |" in report
    assert "| record | 2.0 min | 8 episodes |" in report and "| train | 10.0 min |" in report
    assert "lerobot-train --config_path recipes/x.json" in report
    assert (tmp_path / "report" / "loss_curve.png").stat().st_size > 1000
    assert set(json.loads((tmp_path / "report" / "success.json").read_text())) == {"round0", "round1"}


def test_the_frame_strip_is_only_said_to_show_a_success_when_there_was_one(tmp_path):
    for name, successes in (("round0", [False, False]), ("round1", [False, True])):
        (tmp_path / f"eval_{name}").mkdir()
        (tmp_path / f"eval_{name}" / "eval_episodes.json").write_text(json.dumps(evaluation(successes, "async")))
        (tmp_path / f"eval_{name}" / "eval_frames.png").write_bytes(b"png")
    assert cli.main(["demo-report", str(tmp_path)]) == 0
    report = (tmp_path / "report" / "README.md").read_text()
    assert "Frames (round0, failures): `frames_round0.png`" in report
    assert "Frames (round1, failures and a success): `frames_round1.png`" in report


def test_a_report_before_any_evaluation_says_so(tmp_path):
    assert cli.main(["demo-report", str(tmp_path)]) == 0
    report = (tmp_path / "report" / "README.md").read_text()
    assert "No evaluation has run yet" in report and "no loss curve" in report
    assert "No rollout with hand-off has run yet" in report
    assert not (tmp_path / "report" / "loss_curve.png").exists()
