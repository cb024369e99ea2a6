"""`lerobot-vla eval`: the instrument that measures a policy's success on the virtual SO-101.

The instrument is checked against policies whose outcome is known: the scripted operator (succeeds), an arm that
stays at rest (never grasps), a demonstration of the other cube (wrong cube); then the command end to end on
tiny real checkpoints of flow_vla and ACT that the test writes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import lerobot_robot_vla_plugin  # noqa: F401  (registers our robot, camera and policy like plugin discovery)
from lerobot_vla_plugin import cli
from lerobot_vla_plugin.evaluation.evaluator import VirtualEvaluator, VirtualRig, episode_specs
from lerobot_vla_plugin.evaluation.report import format_table, summarize, wilson_interval
from lerobot_vla_plugin.evaluation.scripted_runner import ScriptedOperatorRunner
from lerobot_vla_plugin.arms.virtual_so101 import follower_action_from_joint_angles
from lerobot_vla_plugin.sim.scene_seeds import EVALUATION_SEED_START, evaluation_scene_seed, recording_scene_seed
from lerobot_vla_plugin.sim.so101 import REST_POSE


class RestPoseRunner:
    """A policy that never moves: it keeps commanding the rest pose."""

    def __init__(self, virtual):
        self.action = follower_action_from_joint_angles(REST_POSE, virtual.sim.joint_limits())

    def reset(self, task: str) -> None:
        pass

    def act(self, observation: dict) -> dict[str, float]:
        return dict(self.action)


@pytest.fixture(scope="module")
def rig():
    with VirtualRig(fps=30, image_shapes={}) as rig:
        yield rig


def evaluate(rig, runner, episodes: int, episode_time_s: float, seed: int = 0):
    evaluator = VirtualEvaluator(rig.virtual, rig.robot, runner, episode_time_s=episode_time_s, strip_frames=3)
    return [evaluator.run_episode(spec) for spec in episode_specs(episodes, seed, ["red", "blue"])]


def test_evaluation_scenes_are_never_recording_scenes():
    assert recording_scene_seed(0, 0) == 0
    assert evaluation_scene_seed(0, 0) == EVALUATION_SEED_START
    assert recording_scene_seed(EVALUATION_SEED_START - 1, 0) < evaluation_scene_seed(0, 0)
    with pytest.raises(ValueError, match="recording scene range"):
        recording_scene_seed(EVALUATION_SEED_START - 1, 1)
    with pytest.raises(ValueError, match="evaluation scene range"):
        evaluation_scene_seed(-1, 0)
    specs = episode_specs(4, 7, ["red", "blue"])
    assert [s.task_key for s in specs] == ["red", "blue", "red", "blue"]
    assert [s.scene_seed for s in specs] == [EVALUATION_SEED_START + 7 + i for i in range(4)]


@pytest.mark.parametrize("options, complaint", [
    (["--virtual", "so101"], "--policy.path=DIR"),
    (["--scripted", "--eval.tasks", "red,green"], "--eval.tasks must list task keys"),
    (["--scripted", "--eval.seed", "-1"], "--eval.seed"),
])
def test_unworkable_options_are_refused_before_anything_starts(options, complaint, capsys):
    assert cli.main(["eval", *options]) == 2
    assert complaint in capsys.readouterr().err


def test_wilson_interval_is_honest_at_the_edges():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)


def test_replaying_the_scripted_operator_succeeds_on_both_tasks(rig):
    episodes = evaluate(rig, ScriptedOperatorRunner(rig.virtual), episodes=2, episode_time_s=20)
    for episode in episodes:
        result = episode.result
        assert result.success and result.failure_mode is None, result
        assert result.target_lifted and not result.other_touched
        # The episode ends when the cube rests in the bowl, well before the time limit.
        assert result.time_to_success_s == result.simulated_s < 20
        assert len(episode.frames) == 3 and episode.frames[0].shape == (120, 160, 3)
        # The operator closes the jaws on the cube's centre, square to two of its faces.
        aim = result.first_grasp_aim
        assert aim.offset_mm < 6 and abs(aim.heading_error_deg) < 5 and 0 < aim.height_mm < 12, aim
    summary = summarize([e.result for e in episodes])
    assert summary["red"]["successes"] == summary["blue"]["successes"] == 1
    assert summary["all"]["success_rate"] == 1.0
    assert summary["all"]["grasp_attempts"] == 2 and summary["all"]["median_grasp_offset_mm"] < 6


class PanOffsetRunner:
    """The scripted operator with its shoulder pan turned a constant few degrees: it reaches beside the cube."""

    def __init__(self, virtual, degrees: float):
        self.operator, self.degrees = ScriptedOperatorRunner(virtual), degrees

    def reset(self, task: str) -> None:
        self.operator.reset(task)

    def act(self, observation: dict) -> dict[str, float]:
        action = self.operator.act(observation)
        action["shoulder_pan.pos"] += self.degrees
        return action


def test_the_grasp_aim_measures_how_far_beside_the_cube_the_jaws_closed(rig):
    """8 degrees of pan at the cube's 15-24 cm from the pan axis put the jaws 2-3.5 cm beside it."""
    [episode] = evaluate(rig, PanOffsetRunner(rig.virtual, 8.0), episodes=1, episode_time_s=8)
    aim = episode.result.first_grasp_aim
    assert 15 < aim.offset_mm < 45, aim
    assert "mm" in format_table(summarize([episode.result]))


def test_an_arm_that_stays_at_rest_never_grasps(rig):
    [episode] = evaluate(rig, RestPoseRunner(rig.virtual), episodes=1, episode_time_s=2)
    assert not episode.result.success
    assert episode.result.failure_mode == "never_grasped"
    assert episode.result.simulated_s == pytest.approx(2.0)
    assert episode.result.first_grasp_aim is None  # the gripper never opened, so it never closed for a grasp
    assert summarize([episode.result])["red"]["median_grasp_offset_mm"] is None


class PressIntoTableRunner(RestPoseRunner):
    """A policy that drives the arm down into the table until a servo's overload protection trips."""

    def __init__(self, virtual):
        self.action = follower_action_from_joint_angles(np.array([0.0, 1.5, 0.3, 1.2, 0.0, 0.0]),
                                                        virtual.sim.joint_limits())


def test_a_servo_fault_fails_its_episode_and_the_next_scene_starts_on_a_recovered_arm(rig):
    [pressed] = evaluate(rig, PressIntoTableRunner(rig.virtual), episodes=1, episode_time_s=6)
    assert pressed.result.failure_mode == "servo_fault" and not pressed.result.success
    assert "overload" in pressed.result.error and "shoulder_lift" in pressed.result.error
    assert 0 < pressed.result.ticks < 6 * 30
    # The same evaluation goes on: the follower is power-cycled and reconnected, and the next policy succeeds.
    [after] = evaluate(rig, ScriptedOperatorRunner(rig.virtual), episodes=1, episode_time_s=20, seed=1)
    assert after.result.success, after.result


def test_a_servo_still_faulted_when_an_episode_starts_fails_that_episode_not_the_evaluation(rig):
    """After a power cycle an overheated servo reports the fault again on the first command of the next scene."""
    from lerobot_vla_plugin.motors.feetech.protocol import StatusError

    [pressed] = evaluate(rig, PressIntoTableRunner(rig.virtual), episodes=1, episode_time_s=6)
    assert pressed.result.failure_mode == "servo_fault"
    faults = rig.virtual.follower_bus.servo(2).env.faults
    faults.latched_error_bits = int(StatusError.OVERHEAT)
    try:
        [hot] = evaluate(rig, ScriptedOperatorRunner(rig.virtual), episodes=1, episode_time_s=20, seed=2)
    finally:
        faults.latched_error_bits = 0
    assert hot.result.failure_mode == "servo_fault" and hot.result.ticks == 0
    assert "shoulder_lift" in hot.result.error and "overheat" in hot.result.error
    [after] = evaluate(rig, ScriptedOperatorRunner(rig.virtual), episodes=1, episode_time_s=20, seed=1)
    assert after.result.success, after.result


def test_every_episode_starts_with_cool_servos(rig):
    """Heat left by one try (a strained shoulder pan at its limit) does not fail the next one."""
    servo = rig.virtual.follower_bus.servo(1)
    servo.thermal.temperature_c = 70.0  # above the 65 degree limit: the next command would trip it
    [after] = evaluate(rig, ScriptedOperatorRunner(rig.virtual), episodes=1, episode_time_s=20, seed=1)
    assert after.result.success, after.result
    assert servo.thermal.temperature_c < 40.0


def test_putting_the_other_cube_in_the_bowl_is_a_failure(rig):
    """The red task, a perfect demonstration for the blue cube: the blue cube in the bowl does not count."""
    [episode] = evaluate(rig, ScriptedOperatorRunner(rig.virtual, cube="blue"), episodes=1, episode_time_s=12)
    assert episode.result.task == "red"
    assert not episode.result.success
    assert episode.result.failure_mode == "wrong_cube"
    assert episode.result.other_touched and not episode.result.target_touched


def write_tiny_checkpoint(policy_type: str, directory, object_positions: bool = False):
    """A real, untrained checkpoint with one 32x32 front camera, saved the way lerobot-train saves one.
    `object_positions`: trained on data with the virtual arm's object positions, which LeRobot then lists among
    the policy's inputs."""
    import torch
    from lerobot.configs.types import FeatureType, PolicyFeature

    from lerobot_vla_plugin.sim.features import OBJECT_POSITIONS_FEATURE

    torch.manual_seed(0)
    extra = {OBJECT_POSITIONS_FEATURE: PolicyFeature(type=FeatureType.STATE, shape=(9,))} if object_positions else {}
    if policy_type == "flow_vla":
        from policy.conftest import make_tiny_config

        from lerobot_vla_plugin.policies.flow_vla.modeling_flow_vla import FlowVLAPolicy
        from lerobot_vla_plugin.policies.flow_vla.processor_flow_vla import make_flow_vla_pre_post_processors

        config = make_tiny_config(cameras=1)
        config.input_features.update(extra)
        policy, processors = FlowVLAPolicy(config), make_flow_vla_pre_post_processors(config, dataset_stats=None)
    else:
        from lerobot.policies.act.configuration_act import ACTConfig
        from lerobot.policies.act.modeling_act import ACTPolicy
        from lerobot.policies.act.processor_act import make_act_pre_post_processors
        from policy.conftest import tiny_features

        inputs, outputs = tiny_features(cameras=1)
        config = ACTConfig(device="cpu", input_features={**inputs, **extra}, output_features=outputs, chunk_size=8,
                           n_action_steps=8, dim_model=32, n_heads=2, dim_feedforward=64, n_encoder_layers=1,
                           n_decoder_layers=1, use_vae=False, pretrained_backbone_weights=None)
        policy, processors = ACTPolicy(config), make_act_pre_post_processors(config, dataset_stats=None)
    policy.save_pretrained(directory)
    for processor in processors:
        processor.save_pretrained(directory)
    return directory


@pytest.mark.parametrize("policy_type", ["flow_vla", "act"])
def test_eval_command_runs_a_checkpoint_end_to_end_and_writes_json_and_frames(tmp_path, capsys, policy_type):
    checkpoint = write_tiny_checkpoint(policy_type, tmp_path / "pretrained_model")
    out = tmp_path / "eval"
    code = cli.main(["eval", f"--policy.path={checkpoint}", "--policy.device=cpu", "--virtual", "so101",
                     "--eval.episodes", "2", "--eval.seed", "3", "--eval.episode_time_s", "1",
                     f"--output_dir={out}", "--strip_frames=3"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Episode 0 (red, scene seed" in printed and "Episode 1 (blue, scene seed" in printed
    assert "95% Wilson" in printed

    report = json.loads((out / "eval_episodes.json").read_text())
    assert report["settings"]["policy_type"] == policy_type
    episodes = report["episodes"]
    assert [e["task"] for e in episodes] == ["red", "blue"]
    assert [e["scene_seed"] for e in episodes] == [EVALUATION_SEED_START + 3, EVALUATION_SEED_START + 4]
    # An untrained policy in one second: no success, each failure named, each episode timed.
    for episode in episodes:
        assert episode["success"] is False
        assert episode["failure_mode"] in ("never_grasped", "timed_out")
        assert episode["ticks"] == 30 and episode["wall_s"] > 0
    assert report["summary"]["all"]["episodes"] == 2
    assert report["summary"]["all"]["wilson95"][0] == 0.0

    strip = np.asarray(Image.open(out / "eval_frames.png"))
    assert strip.shape[1] == 3 * 160 and strip.shape[0] >= 2 * 120  # two failed episodes, three frames each
    assert strip.std() > 0  # rendered scenes, not a blank sheet


def test_a_sampling_policy_draws_the_same_noise_on_the_same_scene_in_every_evaluation(tmp_path, monkeypatch):
    """Two evaluations of one checkpoint on the same scene send the arm the same actions, up to the observed state's
    last counts (paired comparisons of settings); another draw on the same scene sends other actions."""
    import torch
    from lerobot.configs.policies import PreTrainedConfig

    import lerobot_vla_plugin.evaluation.evaluator as evaluator_module
    from lerobot_vla_plugin.evaluation.policy_runner import SyncPolicyRunner

    checkpoint = write_tiny_checkpoint("flow_vla", tmp_path / "pretrained_model")
    config = PreTrainedConfig.from_pretrained(checkpoint)
    config.pretrained_path, config.device = str(checkpoint), "cpu"
    shapes = {key: tuple(feature.shape) for key, feature in config.image_features.items()}
    with VirtualRig(fps=30, image_shapes=shapes) as rig:
        evaluator = VirtualEvaluator(rig.virtual, rig.robot, SyncPolicyRunner.from_config(config, rig.robot),
                                     episode_time_s=0.5)
        spec = episode_specs(1, 3, ["red"])[0]

        def requested_actions():
            return np.array(evaluator.run_episode(spec).run.trace.requested)

        first = requested_actions()
        torch.manual_seed(12345)  # whatever ran before does not matter
        again = requested_actions()
        monkeypatch.setattr(evaluator_module, "seed_policy_draws", lambda scene_seed: torch.manual_seed(scene_seed + 1))
        other_draw = requested_actions()
    assert first.shape[0] == 15
    # Not bit-exact: the arm's reset and the servos' quantisation leave the observed state a few counts apart.
    assert np.abs(first - again).max() < 0.05
    assert np.abs(first - other_draw).max() > 0.5
