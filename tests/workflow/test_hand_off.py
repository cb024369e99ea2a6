"""Hand-off from the policy to a person on the leader arm, end to end on the virtual SO-101.

A tiny real flow_vla checkpoint drives the follower through the real pty servo buses; its uncertainty score is
forced above the threshold on one chunk. The virtual leader (our `vla_so101_leader` on the emulated leader bus)
is driven to the follower's pose, then released to the scripted operator, who carries on the task. What is
checked: no jump of the follower at the hand-off, the frames flagged `intervention` in the recorded dataset
(loaded by stock LeRobot), the person driving afterwards; and, for a leader that cannot hold a pose, the
follower ramped to the leader instead; a key hands the arm back to the policy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lerobot_robot_vla_plugin  # noqa: F401  (registers our robot, teleoperator and policy like plugin discovery)
from lerobot_vla_plugin.rollout.handoff import ALIGNING, AUTONOMOUS, HUMAN
from lerobot_vla_plugin.workflow.rollout import Rollout
from lerobot_vla_plugin.workflow.rollout_config import parse_config

from .conftest import JOINTS, load_dataset
from .test_evaluate import write_tiny_checkpoint

ARM = slice(0, 5)  # degrees; the gripper (index 5) is 0..100
STEP = 3.0  # --rollout.hand_off_step
UNCERTAIN_CHUNK = 3  # the chunk whose score is forced above the threshold


@pytest.fixture(scope="module")
def flow_vla_checkpoint(tmp_path_factory):
    return write_tiny_checkpoint("flow_vla", tmp_path_factory.mktemp("checkpoint") / "flow_vla")


def drifting_and_uncertain_on(chunk: int):
    """The policy's chunks move every arm joint steadily away from where the arm is (so the follower ends far from
    the resting leader), and chunk `chunk`'s uncertainty score is far above any threshold."""
    def wrap(policy):
        predict, score = policy.predict_action_chunk, policy.action_uncertainty
        calls = [0]

        def drifting(batch, **kwargs):
            chunk_ = predict(batch, **kwargs)
            steps = torch.arange(1, chunk_.shape[1] + 1, dtype=chunk_.dtype)[None, :, None]
            drift = torch.zeros(chunk_.shape[-1], dtype=chunk_.dtype)
            drift[:5] = 1.0  # degrees per tick (the tiny checkpoint has no normalization stats)
            state = batch["observation.state"][:, None, :]
            return state + steps * drift

        def uncertainty(batch):
            calls[0] += 1
            value = score(batch)
            return value * 0 + 1e6 if calls[0] == chunk + 1 else value * 0

        policy.predict_action_chunk, policy.action_uncertainty = drifting, uncertainty
        return policy
    return wrap


def hand_off_rollout(tmp_path, checkpoint, *extra):
    return parse_config(["--virtual", "so101", f"--policy.path={checkpoint}", "--policy.device=cpu",
                         # A cheap score (2 samples, 2 flow steps): its value is forced anyway.
                         "--policy.uncertainty_threshold=1.0", "--policy.uncertainty_num_samples=2",
                         "--policy.uncertainty_num_steps=2", "--rollout.hand_off", "true",
                         "--rollout.hand_off_step", str(STEP), "--rollout.inference_delay_ticks", "1",
                         "--rollout.episodes", "1", f"--output_dir={tmp_path / 'out'}", *extra])


def largest_arm_step(targets: np.ndarray) -> float:
    return float(np.abs(np.diff(targets[:, ARM], axis=0)).max())


@pytest.fixture(scope="module")
def intervention_rollout(flow_vla_checkpoint, tmp_path_factory):
    """A recorded rollout whose policy hands off on its uncertain chunk (camera frames as video, as recorded by
    default: LeRobot 0.4.4's add_features, which the merge uses on the demonstrations, keeps videos but drops
    image-file columns)."""
    tmp_path = tmp_path_factory.mktemp("hand_off")
    root = tmp_path / "dataset"
    cfg = hand_off_rollout(tmp_path, flow_vla_checkpoint, "--rollout.episode_time_s", "4",
                           "--dataset.repo_id=local/interventions", f"--dataset.root={root}")
    messages = []
    rollout = Rollout(cfg, out=messages.append, wrap_policy=drifting_and_uncertain_on(UNCERTAIN_CHUNK))
    return rollout, rollout.run(), root, messages


def test_forced_uncertainty_hands_off_to_the_scripted_operator_without_a_jump(intervention_rollout):
    rollout, outcome, root, messages = intervention_rollout
    assert outcome.exit_code == 0, outcome.message
    [run] = outcome.runs
    hand_off = rollout.hand_off
    assert [state for state, _ in hand_off.events] == [ALIGNING, HUMAN] and run.interventions == 1
    assert "uncertainty 1e+06 > threshold 1" in hand_off.events[0][1]
    assert hand_off.leader_holds and "released to the person" in hand_off.events[1][1]

    flags = np.array(run.trace.intervention)
    start = int(np.argmax(flags))
    # The policy drove until the uncertain chunk began executing, a person from the next tick to the end.
    assert start == run.trace.chunk_starts[UNCERTAIN_CHUNK] + 1 and flags[start:].all()
    targets = np.stack(run.trace.targets)
    # The leader rested far from where the policy had taken the follower: snapping to it would have been a jump
    # (the follower's own step limit is 10 degrees per tick).
    assert hand_off.gap_at_take_over > 4 * STEP
    # No jump: across the hand-off, the alignment and the person's first moves, no arm joint's target moved
    # more than the hand-off's step in a tick; where the person took over, less than the alignment tolerance.
    aligned = start + hand_off.align_ticks
    assert largest_arm_step(targets[start - 5:aligned + 10]) <= STEP
    assert largest_arm_step(targets[aligned - 1:aligned + 2]) <= hand_off.tolerance
    # While the leader was brought over, the follower held the pose the policy left it in.
    assert np.allclose(targets[start:aligned], targets[start - 1], atol=0.5)
    # Then the scripted operator drove: the follower followed the leader away from that pose.
    assert np.abs(targets[-1, ARM] - targets[aligned, ARM]).max() > 5.0
    assert run.ticks == 120 and run.error is None

    dataset = load_dataset(root, "local/interventions")
    assert dataset.num_episodes == 1 and len(dataset) == run.ticks
    recorded = np.concatenate([np.ravel(v) for v in dataset.hf_dataset["intervention"]])
    assert recorded.dtype == bool and np.array_equal(recorded, flags)
    actions = np.stack([np.asarray(a) for a in dataset.hf_dataset["action"]])
    assert np.allclose(actions, targets, atol=1e-3)
    assert dataset.meta.episodes["rollout/interventions"][0] == 1
    assert any("Hand-off: the person drives" in message for message in messages)


class RampingHandOff(Rollout):
    """The virtual leader as one that cannot hold a pose (like a leader without torque, or a stock
    teleoperator); the person presses the hand-off key after `human_ticks` ticks of driving."""

    human_ticks = 10

    def _make_hand_off(self):
        self.teleop.can_hold_pose = False
        hand_off = super()._make_hand_off()
        driven = [0]

        def presses_key_when_done() -> bool:
            driven[0] += 1
            if driven[0] == self.human_ticks:
                hand_off.toggle()
            return False

        hand_off.human_done = presses_key_when_done
        return hand_off


def test_a_leader_that_cannot_hold_a_pose_gets_the_follower_ramped_to_it_and_a_key_hands_back(
        flow_vla_checkpoint, tmp_path):
    cfg = hand_off_rollout(tmp_path, flow_vla_checkpoint, "--rollout.episode_time_s", "2.5")
    rollout = RampingHandOff(cfg, out=lambda text: None, wrap_policy=drifting_and_uncertain_on(UNCERTAIN_CHUNK))
    outcome = rollout.run()
    assert outcome.exit_code == 0, outcome.message
    [run] = outcome.runs
    hand_off = rollout.hand_off
    assert not hand_off.leader_holds
    assert [state for state, _ in hand_off.events] == [ALIGNING, HUMAN, AUTONOMOUS] and run.interventions == 1
    assert "the follower reached the leader's pose" in hand_off.events[1][1]
    assert hand_off.gap_at_take_over > 4 * STEP

    flags = np.array(run.trace.intervention)
    start = int(np.argmax(flags))
    aligned = start + hand_off.align_ticks
    back = aligned + RampingHandOff.human_ticks  # the first tick the policy drives again
    assert flags[start:back].all() and not flags[:start].any() and not flags[back:].any()
    targets = np.stack(run.trace.targets)
    # The follower was ramped, never jumped, to the leader, then followed it.
    assert hand_off.align_ticks >= hand_off.gap_at_take_over / STEP - 1
    assert largest_arm_step(targets[start - 5:aligned + 10]) <= STEP
    # Handed back: the policy starts afresh from the arm's pose (no jump), and its new chunks drive again.
    assert largest_arm_step(targets[back - 2:back + 3]) <= STEP
    assert any(tick > back for tick in run.trace.chunk_starts)
    assert run.ticks == 75 and run.error is None and outcome.summary["interventions"] == 1


def test_a_policy_that_goes_nowhere_is_taken_over_after_the_patience_runs_out(flow_vla_checkpoint, tmp_path):
    """A policy that never finishes and never scores itself uncertain: with --rollout.hand_off_after_s the scripted
    operator takes over when that much of the episode has passed, without a jump, and drives to the end."""
    cfg = hand_off_rollout(tmp_path, flow_vla_checkpoint, "--rollout.episode_time_s", "2.5",
                           "--rollout.hand_off_after_s", "1")
    never_uncertain = drifting_and_uncertain_on(10**6)
    rollout = Rollout(cfg, out=lambda text: None, wrap_policy=never_uncertain)
    outcome = rollout.run()
    assert outcome.exit_code == 0, outcome.message
    [run] = outcome.runs
    hand_off = rollout.hand_off
    assert [state for state, _ in hand_off.events] == [ALIGNING, HUMAN] and run.interventions == 1
    assert "the policy drove 30 ticks without finishing" in hand_off.events[0][1]
    flags = np.array(run.trace.intervention)
    assert not flags[:30].any() and flags[30:].all()
    targets = np.stack(run.trace.targets)
    # No jump from the hand-off on (the drifting policy's own chunk joins before it are not the hand-off's).
    assert largest_arm_step(targets[28:30 + hand_off.align_ticks + 10]) <= STEP
    assert np.abs(targets[-1, ARM] - targets[30 + hand_off.align_ticks, ARM]).max() > 1.0  # the operator drove

    without = hand_off_rollout(tmp_path / "without", flow_vla_checkpoint, "--rollout.episode_time_s", "2.5")
    outcome = Rollout(without, out=lambda text: None, wrap_policy=never_uncertain).run()
    assert outcome.exit_code == 0 and outcome.runs[0].interventions == 0


def test_demos_and_intervention_episodes_merge_and_stock_lerobot_train_runs_on_the_merge(intervention_rollout,
                                                                                         tmp_path):
    """The flywheel: demonstrations recorded hands-free (the camera the policy sees), the rollout's intervention
    episode, merged with LeRobot's own aggregate; stock LeRobot loads the merge and stock lerobot-train trains."""
    from lerobot_vla_plugin import cli
    from lerobot_vla_plugin.rollout.flywheel import NOT_MEASURED, merge_demos_and_interventions
    from lerobot_vla_plugin.sim.features import (
        OBJECT_NAMED_POSITIONS_FEATURE,
        OBJECT_POSITIONS_FEATURE,
        OBJECT_START_POSITIONS_FEATURE,
    )
    from lerobot_vla_plugin.sim.so101 import SO101Sim
    from policy.conftest import TINY_POLICY_FLAGS
    from policy.test_lerobot_train import TRAIN_LOG_LINE, run_lerobot_train

    _, outcome, rollout_root, _ = intervention_rollout
    assert outcome.exit_code == 0, outcome.message
    demo_root = tmp_path / "demos"
    assert cli.main(["record", "--virtual", "so101", "--dataset.repo_id=local/demos", f"--dataset.root={demo_root}",
                     "--virtual_cameras=front", "--camera_width=32", "--camera_height=32",
                     "--dataset.episode_time_s=1", "--dataset.num_episodes=1", "--report=false",
                     "--keyboard=none"]) == 0
    demos, interventions = load_dataset(demo_root, "local/demos"), load_dataset(rollout_root, "local/interventions")
    merged = merge_demos_and_interventions([demos], [interventions], "local/flywheel", tmp_path / "flywheel")

    assert merged.num_episodes == 2 and len(merged) == len(demos) + len(interventions)
    # The rollout on the virtual arm records where the objects are, as the demonstrations do, so the merge keeps
    # what the policy's object readout learns from: the scene's layout at the first frame, held as the start.
    sim_keys = (OBJECT_POSITIONS_FEATURE, OBJECT_START_POSITIONS_FEATURE, OBJECT_NAMED_POSITIONS_FEATURE)
    for dataset in (demos, interventions, merged):
        assert all(key in dataset.meta.features for key in sim_keys)
    positions, starts, named = (np.stack([np.asarray(v) for v in interventions.hf_dataset[key]]) for key in sim_keys)
    np.testing.assert_array_equal(starts, np.repeat(positions[:1], len(positions), axis=0))
    np.testing.assert_array_equal(named[0], positions[0])  # the red task names the red cube first
    sim = SO101Sim()
    sim.reset(int(interventions.meta.episodes["scene_seed"][0]))
    np.testing.assert_allclose(positions[0, [0, 1, 3, 4, 6, 7]], sim.task_object_positions("red")[[0, 1, 3, 4, 6, 7]],
                               atol=2e-3)
    merged_positions = np.stack([np.asarray(v) for v in merged.hf_dataset[OBJECT_POSITIONS_FEATURE]])
    np.testing.assert_array_equal(merged_positions[len(demos):], positions)
    flags = np.concatenate([np.ravel(v) for v in merged.hf_dataset["intervention"]]).astype(bool)
    rollout_flags = np.concatenate([np.ravel(v) for v in interventions.hf_dataset["intervention"]]).astype(bool)
    assert not flags[:len(demos)].any() and np.array_equal(flags[len(demos):], rollout_flags)
    uncertainty = np.concatenate([np.ravel(v) for v in merged.hf_dataset["uncertainty"]])
    assert (uncertainty[:len(demos)] == NOT_MEASURED).all()
    assert merged[len(demos)]["task"] == "put the red cube in the bowl"
    assert merged.meta.features["observation.state"]["names"] == [f"{j}.pos" for j in JOINTS]

    result = run_lerobot_train(
        ["--policy.type=flow_vla", *TINY_POLICY_FLAGS, "--dataset.repo_id=local/flywheel",
         f"--dataset.root={tmp_path / 'flywheel'}", "--policy.device=cpu", "--policy.push_to_hub=false", "--steps=2",
         "--batch_size=2", "--num_workers=0", "--log_freq=1", "--save_freq=2", "--eval_freq=0",
         "--wandb.enable=false", f"--output_dir={tmp_path / 'train'}"], tmp_path)
    logged = TRAIN_LOG_LINE.findall(result.stdout + result.stderr)
    assert [int(step) for step, _ in logged] == [1, 2]
    assert all(np.isfinite(float(loss)) for _, loss in logged)
