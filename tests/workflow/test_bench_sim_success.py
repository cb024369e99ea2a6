"""`lerobot-vla bench sim-success` end to end at smoke size: a recorded dataset, flow_vla and ACT trained on it with
the same budget, every policy evaluated on the same fresh scenes, one table with the ratios to ACT."""

from __future__ import annotations

import json

import pytest

from lerobot_vla_plugin import cli

from .conftest import REPO_ID, virtual_args


@pytest.mark.slow
def test_quick_bench_trains_and_evaluates_every_policy_on_the_same_scenes(tmp_path, capsys):
    root = tmp_path / "demos"
    assert cli.main(["record", *virtual_args(root, "--dataset.num_episodes=2", "--tasks", "red,blue")]) == 0
    varied = tmp_path / "varied"  # the same scenes, the operator's reach detoured: path diversity
    assert cli.main(["record", *virtual_args(varied, "--dataset.num_episodes=2", "--tasks", "red,blue",
                                             "--virtual_reach_detour_m", "0.06")]) == 0
    out = tmp_path / "bench"
    assert cli.main(["bench", "sim-success", "--quick", "--dataset-root", str(root), "--repo-id", REPO_ID,
                     "--steps", "3", "--batch-size", "4", "--chunk-size", "8", "--eval-episodes", "2",
                     "--episode-time-s", "0.5", "--flow-steps", "1,2", "--demos", "1",
                     "--varied-dataset-root", str(varied), "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = json.loads((out / "sim_success.json").read_text())
    assert [r["policy"] for r in rows] == ["flow_vla (1 flow steps)", "flow_vla (2 flow steps)", "act",
                                           "flow_vla_1_demos", "flow_vla_varied_paths_2_demos"]
    assert [r["demos"] for r in rows] == [2, 2, 2, 1, 2]
    for row in rows:
        assert row["summary"]["all"]["episodes"] == 2
        assert 0.0 <= row["summary"]["all"]["success_rate"] <= 1.0
        assert row["train_samples_per_s"] > 0
    # The same scenes for every policy: evaluation seeds, not recording seeds.
    scenes = {json.dumps([e["scene_seed"] for e in json.loads(p.read_text())["episodes"]])
              for p in out.glob("eval_*/eval_episodes.json")}
    assert len(scenes) == 1
    assert "vs ACT" in printed and "flow_vla_1_demos" in printed
    # The vision probe on the same dataset and the trained flow_vla: every object gets a probe and a guess error.
    checkpoint = next(out.glob("flow_vla/**/pretrained_model"))
    assert cli.main(["bench", "vision-probe", f"--policy.path={checkpoint}", "--dataset-root", str(root),
                     "--repo-id", REPO_ID, "--folds", "2", "--output-dir", str(tmp_path / "probe")]) == 0
    probe = json.loads((tmp_path / "probe" / "vision_probe.json").read_text())
    assert set(probe["probe_error_m"]) == set(probe["mean_guess_error_m"]) == {
        "red cube", "blue cube", "bowl", "instructed cube", "other cube"}
    assert all(error >= 0 for error in probe["probe_error_m"].values())
    assert all(0 < error < 0.5 for error in probe["mean_guess_error_m"].values())  # metres on the table
    # The recipe trains the object readout, so the checkpoint's own estimates are scored frame by frame too.
    readout = probe["readout_median_error_m_by_frame"]
    assert "0" in readout and all(len(errors) == 3 and all(e >= 0 for e in errors) for errors in readout.values())


def test_the_probe_recovers_a_linearly_encoded_position_and_not_a_random_one():
    """The probe's arithmetic: features that are a linear function of the positions give ~0 error on held-out
    episodes; features unrelated to them give about the error of guessing the mean layout."""
    import numpy as np

    from lerobot_vla_plugin.bench.vision_probe import cross_validated_error, mean_layout_error

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 3)
    positions = rng.uniform(-0.1, 0.1, size=(40, 4))[groups]
    encoded = positions @ rng.normal(size=(4, 12)) + 1e-6 * rng.normal(size=(120, 12))
    assert cross_validated_error(encoded, positions, groups, folds=5, ridge=1e-6).max() < 1e-3
    unrelated = rng.normal(size=(120, 12))
    ratio = cross_validated_error(unrelated, positions, groups, folds=5, ridge=1.0) / mean_layout_error(positions)
    assert (ratio > 0.9).all()
