"""`lerobot-vla rollout`: a policy driving the arm, on the virtual SO-101 and on an emulated arm in another process.

Tiny real checkpoints (flow_vla, ACT) written by the test; one-second episodes. What is checked: the command's
summary, PNGs and dataset (loaded by stock LeRobot, trained on by stock lerobot-train); a slow policy that
cannot keep up (stalls counted, the episode still completes); planted NaN actions (the arm holds, the rollout
stops with a message, no NaN reaches the servos); a servo that goes silent mid-episode (the rollout stops
naming it, torque off on the rest); SIGTERM to a rollout process (torque off); and stock
lerobot-record with --policy.path still running our follower.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import lerobot_robot_vla_plugin  # noqa: F401  (registers our robot, camera and policy like plugin discovery)
from lerobot_vla_plugin import cli
from lerobot_vla_plugin.rollout.recording import NOT_MEASURED
from lerobot_vla_plugin.workflow.rollout import EXIT_FAULT, Rollout
from lerobot_vla_plugin.workflow.rollout_config import parse_config

from .conftest import BIN, JOINTS, load_dataset
from .test_evaluate import write_tiny_checkpoint

EXTRA_FEATURES = ("intervention", "uncertainty", "inference_latency_ms")
PNGS = ("rollout_joints.png", "rollout_latency.png", "rollout_uncertainty.png")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    return {kind: write_tiny_checkpoint(kind, folder / kind) for kind in ("flow_vla", "act")}


def virtual_rollout(tmp_path, checkpoint, *extra: str) -> list[str]:
    return ["--virtual", "so101", f"--policy.path={checkpoint}", "--policy.device=cpu",
            "--rollout.episodes", "2", "--rollout.episode_time_s", "1", f"--output_dir={tmp_path / 'out'}", *extra]


@pytest.fixture(scope="module")
def flow_vla_rollout_dataset(checkpoints, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("rollout_flow_vla")
    root = tmp_path / "dataset"
    code = cli.main(["rollout", *virtual_rollout(tmp_path, checkpoints["flow_vla"], "--dataset.repo_id=local/eval_ro",
                                                 f"--dataset.root={root}", "--rollout.inference_delay_ticks", "2")])
    return code, tmp_path, root


def check_rollout_outputs(code: int, tmp_path, root, policy_type: str) -> None:
    assert code == 0
    summary = json.loads((tmp_path / "out" / "rollout_summary.json").read_text())
    assert summary["settings"]["policy_type"] == policy_type and summary["settings"]["clock"] == "lockstep"
    assert summary["episodes"] == 2 and summary["success_known_episodes"] == 2 and summary["successes"] == 0
    assert summary["interventions"] == 0 and summary["ticks"] == 60 and summary["achieved_hz"] == 30.0
    assert summary["chunks"] >= 2 and summary["latency_p50_ms"] > 0 and summary["period_p99_ms"] > 0
    # Every chunk joins 2 ticks after its observation: 2 ticks per episode wait for the first one.
    assert summary["startup_ticks"] == 4 and summary["errors"] == []
    for name in PNGS:
        image = np.asarray(Image.open(tmp_path / "out" / name))
        assert image.shape[0] > 300 and image.std() > 0, name

    dataset = load_dataset(root, "local/eval_ro")
    assert dataset.num_episodes == 2 and len(dataset) == 60
    for key in EXTRA_FEATURES:
        assert tuple(dataset.meta.features[key]["shape"]) == (1,)
    assert dataset.meta.features["intervention"]["dtype"] == "bool"
    assert dataset.meta.features["observation.state"]["names"] == [f"{j}.pos" for j in JOINTS]
    assert list(dataset.meta.episodes["is_success"]) == [False, False]
    assert list(dataset.meta.episodes["rollout/chunks"]) == [e["chunks"] for e in summary["per_episode"]]
    column = {key: np.concatenate([np.ravel(v) for v in dataset.hf_dataset[key]]) for key in EXTRA_FEATURES}
    assert not column["intervention"].any()
    # Not measured is NOT_MEASURED (-1), never NaN, which the parquet files would hold as null and which breaks
    # lerobot-train's collation.
    latency = column["inference_latency_ms"].reshape(2, 30)
    assert (latency[:, :2] == NOT_MEASURED).all() and (latency[:, 2:] > 0).all()  # unknown until the first chunk
    uncertainty = column["uncertainty"].reshape(2, 30)
    if policy_type == "flow_vla":  # flow_vla scores every chunk
        assert (uncertainty[:, :2] == NOT_MEASURED).all() and (uncertainty[:, 2:] >= 0).all()
    else:  # ACT has no uncertainty
        assert (uncertainty == NOT_MEASURED).all()
    actions = np.stack([np.asarray(a) for a in dataset.hf_dataset["action"]])
    assert np.isfinite(actions).all()
    assert dataset[0]["task"] == "put the red cube in the bowl" and dataset[30]["task"] == "put the blue cube in the bowl"


def test_rollout_of_flow_vla_on_the_virtual_arm_writes_summary_plots_and_a_dataset(flow_vla_rollout_dataset, capsys):
    code, tmp_path, root = flow_vla_rollout_dataset
    check_rollout_outputs(code, tmp_path, root, "flow_vla")


def test_rollout_of_act_on_the_virtual_arm(checkpoints, tmp_path, capsys):
    root = tmp_path / "dataset"
    code = cli.main(["rollout", *virtual_rollout(tmp_path, checkpoints["act"], "--dataset.repo_id=local/eval_ro",
                                                 f"--dataset.root={root}", "--dataset.video=false",
                                                 "--rollout.inference_delay_ticks", "2")])
    printed = capsys.readouterr().out
    assert "Rollout: 2 episodes, 0/2 successes, 0 interventions" in printed
    assert "Control loop: 30.0 Hz achieved" in printed and "latency p50" in printed
    check_rollout_outputs(code, tmp_path, root, "act")


@pytest.mark.slow
def test_stock_lerobot_train_runs_on_a_rollout_dataset(flow_vla_rollout_dataset, tmp_path):
    from policy.conftest import TINY_POLICY_FLAGS
    from policy.test_lerobot_train import TRAIN_LOG_LINE, run_lerobot_train

    _, _, root = flow_vla_rollout_dataset
    result = run_lerobot_train(
        ["--policy.type=flow_vla", *TINY_POLICY_FLAGS, "--dataset.repo_id=local/eval_ro", f"--dataset.root={root}",
         "--policy.device=cpu", "--policy.push_to_hub=false", "--steps=2", "--batch_size=2", "--num_workers=0",
         "--log_freq=1", "--save_freq=2", "--eval_freq=0", "--wandb.enable=false", f"--output_dir={tmp_path / 'train'}"],
        tmp_path)
    logged = TRAIN_LOG_LINE.findall(result.stdout + result.stderr)
    assert [int(step) for step, _ in logged] == [1, 2]
    assert all(np.isfinite(float(loss)) for _, loss in logged)


def test_unworkable_options_are_refused_before_anything_starts(checkpoints, capsys):
    assert cli.main(["rollout", "--virtual", "so101"]) == 2
    assert "--policy.path=DIR" in capsys.readouterr().err
    assert cli.main(["rollout", f"--policy.path={checkpoints['act']}"]) == 2
    assert "--robot.type" in capsys.readouterr().err
    assert cli.main(["rollout", "--virtual", "so101", f"--policy.path={checkpoints['act']}",
                     "--task", "juggle"]) == 2
    assert "put the red cube in the bowl" in capsys.readouterr().err
    for merge, complaint in (("smooth", "--rollout.merge must be one of"), ("naive", "needs --rollout.inference")):
        assert cli.main(["rollout", "--virtual", "so101", f"--policy.path={checkpoints['act']}",
                         "--rollout.inference", "sync", "--rollout.merge", merge]) == 2
        assert complaint in capsys.readouterr().err
    for extra, complaint in ((["--rollout.hand_off_after_s", "5"], "add --rollout.hand_off true"),
                             (["--rollout.hand_off", "true", "--rollout.hand_off_after_s", "0"], "must be positive")):
        assert cli.main(["rollout", "--virtual", "so101", f"--policy.path={checkpoints['act']}", *extra]) == 2
        assert complaint in capsys.readouterr().err


def slowed(seconds: float):
    """Every chunk takes at least `seconds` more than the policy needs (a big model on a small computer)."""
    def wrap(policy):
        predict = policy.predict_action_chunk

        def slow_predict(batch, **kwargs):
            time.sleep(seconds)
            return predict(batch, **kwargs)

        policy.predict_action_chunk = slow_predict
        return policy
    return wrap


def test_a_slow_policy_never_blocks_the_loop(checkpoints, tmp_path):
    """Chunks slower than the arm uses them: the loop keeps ticking at its rate (the lockstep clock charges each
    chunk its measured latency in ticks, as a wall clock would, without the machine's jitter), the arm plays out
    what it has then holds (stalls counted), and the episode runs to its end."""
    cfg = parse_config(virtual_rollout(tmp_path, checkpoints["act"], "--rollout.episodes", "1",
                                       "--rollout.episode_time_s", "2"))
    outcome = Rollout(cfg, out=lambda text: None, wrap_policy=slowed(0.4)).run()
    assert outcome.exit_code == 0, outcome.message
    [run] = outcome.runs
    assert run.ticks == 60 and run.error is None
    # The loop ticked on while chunks were being computed: before the first one, and whenever the queue ran dry.
    assert run.trace.startup_ticks > 0 and run.trace.stall_ticks and run.stalls >= len(run.trace.stall_ticks)
    assert len(run.trace.chunk_starts) >= 2
    requested = np.stack(run.trace.requested)
    for tick in run.trace.stall_ticks:  # a dry queue holds the last target exactly (the follower's step limit
        assert np.array_equal(requested[tick], requested[tick - 1])  # may still be walking the arm towards it)
    assert outcome.summary["stalls"] == run.stalls and outcome.summary["clock"] == "lockstep"
    # A chunk joins as many ticks after its observation as its latency spans: 0.4 s is at least 12 ticks.
    assert run.trace.startup_ticks >= 12 and min(run.latencies_ms()) >= 400


def nan_after(calls: int):
    """Chunks from call `calls` on carry a NaN action."""
    def wrap(policy):
        predict = policy.predict_action_chunk
        count = [0]

        def broken_predict(batch, **kwargs):
            chunk = predict(batch, **kwargs)
            count[0] += 1
            if count[0] > calls:
                chunk = chunk.clone()
                chunk[:, -1, 0] = float("nan")
            return chunk

        policy.predict_action_chunk = broken_predict
        return policy
    return wrap


class GoalSpy(Rollout):
    """Records every goal the follower writes to the emulated servos."""

    goals: list[dict]

    def _start_arm(self):
        super()._start_arm()
        self.goals = []
        bus = self.robot.bus
        write_read = bus.sync_write_read

        def spy(data_name, values, *args, **kwargs):
            if data_name == "Goal_Position":
                self.goals.append(dict(values))
            return write_read(data_name, values, *args, **kwargs)

        bus.sync_write_read = spy


def test_planted_nan_actions_end_in_a_hold_and_a_clear_message(checkpoints, tmp_path):
    cfg = parse_config(virtual_rollout(tmp_path, checkpoints["act"], "--rollout.inference_delay_ticks", "2",
                                       "--rollout.episode_time_s", "3"))
    rollout = GoalSpy(cfg, out=lambda text: None, wrap_policy=nan_after(2))
    outcome = rollout.run()
    assert outcome.exit_code == EXIT_FAULT
    assert "non-finite" in outcome.message and "holding the last target" in outcome.message
    [run] = outcome.runs  # the rollout stopped: no second episode
    assert run.error is not None and run.ticks < 90 and len(run.trace.chunk_starts) == 2
    goals = np.array([[goal[j] for j in JOINTS] for goal in rollout.goals])
    assert np.isfinite(goals).all()  # nothing non-finite ever reached the servos
    # The last goal is the hold: towards the target the arm had when the broken chunk arrived (the follower's
    # per-step limit may keep it short of it), never past it.
    hold, before = run.trace.requested[-1], goals[-2]
    assert np.all(np.abs(hold - goals[-1]) <= np.abs(hold - before) + 1e-6)
    assert np.all(np.sign(goals[-1] - before) * np.sign(hold - goals[-1]) >= 0)
    assert outcome.summary["errors"] == [run.error]


class StallingCamera(GoalSpy):
    """The front camera's frames stop coming after 20 reads (unplugged, or starved of CPU)."""

    def _start_arm(self):
        super()._start_arm()
        camera = self.robot.cameras["front"]
        read_latest, reads = camera.read_latest, [0]

        def stalled(*args, **kwargs):
            reads[0] += 1
            if reads[0] > 20:
                raise TimeoutError(f"{camera}: latest frame is 900 ms old (max 500 ms)")
            return read_latest(*args, **kwargs)

        camera.read_latest = stalled


def test_a_camera_whose_frames_stop_ends_the_episode_in_a_hold_that_names_it(checkpoints, tmp_path):
    cfg = parse_config(virtual_rollout(tmp_path, checkpoints["act"], "--rollout.episode_time_s", "3"))
    rollout = StallingCamera(cfg, out=lambda text: None)
    outcome = rollout.run()
    assert outcome.exit_code == EXIT_FAULT
    assert "front" in outcome.message and "900 ms old" in outcome.message and "held its last target" in outcome.message
    [run] = outcome.runs  # the rollout stopped: no second episode, and the policy never saw the stale view
    assert run.ticks == 20 and "the arm holds its last target" in run.error
    # Nothing was sent after the last fresh observation: the arm's last goal is the last tick's target.
    assert np.allclose([rollout.goals[-1][joint] for joint in JOINTS], run.trace.targets[-1])
    assert outcome.summary["errors"] == [run.error]


class HangingRobot:
    """A robot whose observation read hangs on its fourth tick (a stuck camera or bus)."""

    action_features = {"joint.pos": float}

    def __init__(self):
        self.reads = 0
        self.torque_off_reasons: list[str] = []

    def get_observation(self) -> dict:
        self.reads += 1
        if self.reads == 4:
            time.sleep(120)
        return {"joint.pos": 0.0}

    def send_action(self, action: dict) -> dict:
        return dict(action)

    def emergency_torque_off(self, reason: str) -> None:
        self.torque_off_reasons.append(reason)


class StillRunner:
    def reset(self, task: str) -> None:
        pass

    def act(self, observation: dict) -> dict:
        return {"joint.pos": 0.0}


@pytest.mark.parametrize("sigint", ["default", "ignored"])
def test_the_watchdog_takes_torque_off_and_stops_a_hung_loop(sigint):
    """Also in a process started in the background by a script, which inherits SIGINT ignored."""
    import signal

    from lerobot_vla_plugin.rollout.loop import ControlLoop, LoopStalled

    robot = HangingRobot()
    loop = ControlLoop(robot, StillRunner(), fps=50, lockstep=False, watchdog_s=0.3)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN if sigint == "ignored" else signal.default_int_handler)
    try:
        with pytest.raises(LoopStalled, match="hangs; torque was taken off"):
            loop.run_episode("hold", 100)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert robot.reads == 4 and robot.torque_off_reasons == ["the rollout watchdog fired"]
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # the watchdog's own handler is gone again


@pytest.fixture
def emulated_virtual_arm(tmp_path):
    """The virtual SO-101 served in this process (lockstep, camera socket) and the env of a process using it."""
    from lerobot_vla_plugin.emulator.virtual_arm import VirtualSO101

    home = tmp_path / "home"
    calibration = home / "calibration"
    env = {**os.environ, "HF_LEROBOT_HOME": str(home), "HF_LEROBOT_CALIBRATION": str(calibration),
           "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    with VirtualSO101(lockstep=True, leader=False, camera_socket=str(tmp_path / "arm.sock")) as virtual:
        virtual.new_episode("red", seed=1)
        virtual.write_calibration_file(calibration / "robots" / "vla_so101_follower" / "follower.json")
        camera = (f"{{front: {{type: vla_sim_camera, camera: front, socket_path: {virtual.camera_socket}, "
                  "width: 32, height: 32, fps: 30}}")
        robot = ["--robot.type=vla_so101_follower", f"--robot.port={virtual.follower_port}", "--robot.id=follower",
                 f"--robot.cameras={camera}", "--robot.observation_reuse_ms=1000"]
        yield virtual, robot, env


def test_sigterm_to_a_rollout_process_leaves_torque_off(emulated_virtual_arm, checkpoints, tmp_path):
    from helpers import wait_until

    virtual, robot, env = emulated_virtual_arm
    servos = virtual.follower_bus.servos
    proc = subprocess.Popen(
        [str(BIN / "lerobot-vla"), "rollout", *robot, f"--policy.path={checkpoints['act']}", "--policy.device=cpu",
         "--task", "put the red cube in the bowl", "--rollout.episode_time_s", "600",
         f"--output_dir={tmp_path / 'out'}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        ticks_before = virtual.arm.ticks
        wait_until(lambda: proc.poll() is not None or (all(s.torque_enabled for s in servos)
                                                       and virtual.arm.ticks > ticks_before + 60),
                   timeout_s=180, what="the rollout to drive the torqued arm")
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "torque off (received SIGTERM)" in stderr
    assert not any(servo.torque_enabled for servo in servos)


def test_stock_lerobot_record_with_a_flow_vla_policy_on_our_follower(emulated_virtual_arm, checkpoints, tmp_path):
    virtual, robot, env = emulated_virtual_arm
    root = tmp_path / "stock"
    record = subprocess.run(
        [str(BIN / "lerobot-record"), *robot, f"--policy.path={checkpoints['flow_vla']}", "--policy.device=cpu",
         "--dataset.repo_id=local/eval_stock", f"--dataset.root={root}",
         "--dataset.single_task=put the red cube in the bowl", "--dataset.num_episodes=1",
         # Videos on: stock lerobot-record drops the cameras from the dataset (and the policy's input) without.
         "--dataset.episode_time_s=1", "--dataset.reset_time_s=0", "--dataset.push_to_hub=false",
         "--display_data=false", "--play_sounds=false"],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert record.returncode == 0, record.stdout[-3000:] + record.stderr[-3000:]
    dataset = load_dataset(root, "local/eval_stock")
    assert dataset.num_episodes == 1 and len(dataset) >= 5 and dataset.meta.robot_type == "vla_so101_follower"
    actions = np.stack([np.asarray(a) for a in dataset.hf_dataset["action"]])
    assert np.isfinite(actions).all() and actions.std(axis=0).max() > 0  # the policy moved the arm
    assert not any(servo.torque_enabled for servo in virtual.follower_bus.servos)


class SilencedElbowRollout(Rollout):
    """The elbow servo of the virtual arm stops answering once the policy has computed its second chunk."""

    def _start_arm(self):
        super()._start_arm()
        self.follower_bus = self.rig.virtual.follower_bus

    def silence_elbow_after(self, calls: int):
        def wrap(policy):
            predict = policy.predict_action_chunk
            count = [0]

            def predict_then_silence(batch, **kwargs):
                count[0] += 1
                if count[0] == calls:
                    self.follower_bus.servo(3).env.faults.silent = True
                return predict(batch, **kwargs)

            policy.predict_action_chunk = predict_then_silence
            return policy
        return wrap


def test_a_servo_going_silent_mid_rollout_stops_it_with_the_servo_named_and_torque_off(checkpoints, tmp_path):
    cfg = parse_config(virtual_rollout(tmp_path, checkpoints["act"], "--rollout.inference_delay_ticks", "2",
                                       "--rollout.episode_time_s", "3"))
    rollout = SilencedElbowRollout(cfg, out=lambda text: None)
    rollout.wrap_policy = rollout.silence_elbow_after(2)
    outcome = rollout.run()
    assert outcome.exit_code == EXIT_FAULT
    assert "Stopped:" in outcome.message and "elbow_flex" in outcome.message and "id 3" in outcome.message
    assert outcome.runs == []  # the first episode never finished: the rollout stopped there, no second one
    # Torque off on every servo that still listens (the silent one cannot hear it).
    assert not any(servo.torque_enabled for servo in rollout.follower_bus.servos if servo.id != 3)
    assert "stopped answering" in outcome.message and "torque off" in outcome.message
    assert not outcome.message.endswith("..")


class OverloadOnce(GoalSpy):
    """The shoulder-lift servo of the virtual arm reports an overload in its reply to the 30th goal write only."""

    def _start_arm(self):
        super()._start_arm()
        from lerobot_vla_plugin.motors.feetech.protocol import StatusError

        bus, faults = self.robot.bus, self.rig.virtual.follower_bus.servo(2).env.faults
        write_read, writes = bus.sync_write_read, [0]

        def overload_once(data_name, values, *args, **kwargs):
            if data_name == "Goal_Position":
                writes[0] += 1
            if data_name != "Goal_Position" or writes[0] != 30:
                return write_read(data_name, values, *args, **kwargs)
            faults.latched_error_bits = int(StatusError.OVERLOAD)
            try:
                return write_read(data_name, values, *args, **kwargs)
            finally:
                faults.latched_error_bits = 0

        bus.sync_write_read = overload_once


def test_a_servo_fault_on_the_virtual_arm_fails_its_episode_and_the_rollout_goes_on(checkpoints, tmp_path):
    """As the evaluator does: the fault's take is discarded, the virtual arm is power-cycled, the next episode runs
    (on a real arm the rollout stops, tests above). The dataset keeps only the clean episode."""
    root = tmp_path / "dataset"
    cfg = parse_config(virtual_rollout(tmp_path, checkpoints["act"], "--rollout.inference_delay_ticks", "2",
                                       "--rollout.episode_time_s", "2", "--dataset.repo_id=local/faulted",
                                       f"--dataset.root={root}"))
    lines = []
    outcome = OverloadOnce(cfg, out=lines.append).run()
    assert outcome.exit_code == 0, outcome.message
    [fault] = outcome.servo_faults
    assert "overload" in fault and "shoulder_lift" in fault
    assert any("power-cycled for the next episode" in line for line in lines)
    [run] = outcome.runs  # the second episode ran to its end on the recovered arm
    assert run.error is None and run.ticks == 60
    assert outcome.summary["servo_faults"] == [fault] and outcome.dataset_episodes == 1
    assert load_dataset(root).meta.total_episodes == 1


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
