"""Asynchronous inference on the lockstep virtual SO-101, through the evaluator: a tiny flow_vla checkpoint with
RTC at a set delay, and a policy whose NaN chunk must stop the episode with the arm holding."""

from __future__ import annotations

import json

import numpy as np

import lerobot_robot_vla_plugin  # noqa: F401  (registers our robot, camera and policy like plugin discovery)
from lerobot_vla_plugin import cli
from lerobot_vla_plugin.evaluation.evaluator import VirtualEvaluator, VirtualRig, episode_specs
from lerobot_vla_plugin.rollout.async_runner import AsyncPolicyRunner
from lerobot_vla_plugin.rollout.clock import LockstepClock
from lerobot_vla_plugin.rollout.loaded_policy import robot_dataset_features

from .conftest import RampPolicy, loaded


def test_eval_with_async_inference_and_a_set_delay_completes(tmp_path, capsys):
    from workflow.test_evaluate import write_tiny_checkpoint

    checkpoint = write_tiny_checkpoint("flow_vla", tmp_path / "pretrained_model")
    out = tmp_path / "eval"
    code = cli.main(["eval", f"--policy.path={checkpoint}", "--policy.device=cpu", "--virtual", "so101",
                     "--eval.episodes", "2", "--eval.episode_time_s", "1", "--eval.inference", "async",
                     "--eval.inference_delay_ticks", "3", f"--output_dir={out}", "--strip_frames=2"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Asynchronous inference (RTC, delay 3 ticks)" in printed
    report = json.loads((out / "eval_episodes.json").read_text())
    settings = report["settings"]
    assert settings["inference"] == "async" and settings["inference_delay_ticks"] == 3
    rollout = settings["rollout"]
    assert rollout["rtc"] is True and rollout["clock"] == "lockstep" and rollout["chunks"] >= 2 * 5
    assert rollout["arrival_delay_ticks_max"] == 3 and rollout["latency_p90_s"] > 0
    for episode in report["episodes"]:
        assert episode["ticks"] == 30 and episode["failure_mode"] in ("never_grasped", "timed_out")
        assert episode["rollout"]["startup_ticks"] == 3 and episode["rollout"]["stalls"] == 0


def test_delay_ticks_need_async_inference(capsys):
    assert cli.main(["eval", "--scripted", "--eval.inference_delay_ticks", "2"]) == 2
    assert "--eval.inference_delay_ticks needs --eval.inference async" in capsys.readouterr().err
    assert cli.main(["eval", "--scripted", "--eval.inference", "fast"]) == 2


def test_a_nan_chunk_stops_the_episode_and_the_arm_holds():
    with VirtualRig(fps=30, image_shapes={}) as rig:
        policy = RampPolicy(chunk_size=8, nan_from_chunk=3)
        policy.offset.data[:] = -0.4  # a slow drift, well inside the follower's per-step limit
        runner = AsyncPolicyRunner(loaded(policy, robot_dataset_features(rig.robot)), period_s=1 / 30,
                                   clock=LockstepClock(1 / 30, delay_ticks=2))
        sent = []
        act = runner.act
        runner.act = lambda observation: sent.append(act(observation)) or sent[-1]
        evaluator = VirtualEvaluator(rig.virtual, rig.robot, runner, episode_time_s=3, strip_frames=2)
        [episode] = [evaluator.run_episode(spec) for spec in episode_specs(1, 0, ["red"])]
        goal = rig.robot.bus.sync_read("Goal_Position")
    result = episode.result
    assert result.failure_mode == "policy_fault" and "non-finite" in result.error
    assert result.ticks < 90 and result.rollout["chunks"] == 3
    values = np.array([[a[name] for name in sorted(a)] for a in sent])
    assert np.isfinite(values).all()  # no NaN reached the robot
    assert all(np.isfinite(v) for v in goal.values())
