"""Bad input during a session: each gives a clear message and keeps every finished episode."""

from __future__ import annotations

import os
import subprocess
import time

from lerobot_vla_plugin import cli
from lerobot_vla_plugin.emulator.bus import EmulatedBus
from lerobot_vla_plugin.workflow.record import EXIT_FAULT, EXIT_USAGE, RecordSession

from .conftest import BIN, load_dataset, total_episodes, virtual_args, virtual_config


def _bytes_seen(bus: EmulatedBus) -> int:
    """Bytes the emulated servos received on their port: zero means no driver ever talked to the arm."""
    return bus._link.bytes_received


def _fault_in_second_episode(inject):
    """on_frame hook: call `inject(session)` at frame 5 of the second episode."""

    def on_frame(session, frame: int) -> None:
        if frame == 5 and session.recorder.num_episodes + session.recorder.pending_episodes == 1:
            inject(session)

    return on_frame


def test_unusable_dataset_root_is_refused_before_the_arm_moves(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    session = RecordSession(virtual_config(blocker / "dataset"), out=lambda _: None)
    result = session.run()
    assert result.exit_code == EXIT_USAGE
    assert "Cannot create the dataset root" in result.message and "--dataset.root" in result.message
    # Refused before connecting: not one byte reached either arm, so no torque ever came on.
    assert _bytes_seen(session.virtual.follower_bus) == 0 and _bytes_seen(session.virtual.leader_bus) == 0

    missing = RecordSession(virtual_config(tmp_path / "nothing_here", "--resume"), out=lambda _: None).run()
    assert missing.exit_code == EXIT_USAGE and "No dataset to resume" in missing.message


def test_camera_failing_mid_episode_keeps_the_finished_episode(tmp_path):
    root = tmp_path / "camera"
    follower: dict[str, object] = {}

    def unplug_front_camera(session):
        follower["bus"] = session.virtual.follower_bus
        session.robot.cameras["front"].disconnect()

    result = RecordSession(virtual_config(root, "--dataset.num_episodes=3", "--dataset.video=false"),
                           out=lambda _: None, on_frame=_fault_in_second_episode(unplug_front_camera)).run()
    assert result.exit_code == EXIT_FAULT
    assert "Reading the robot's observation failed at frame 5" in result.message
    assert "camera" in result.message and "the 1 finished episodes are kept" in result.message
    assert "cable" not in result.message, "a virtual arm has no cables"
    assert result.saved == 1 and result.total_episodes == 1
    assert load_dataset(root).num_episodes == 1
    # The robot reports itself disconnected once a camera is gone; its torque still went off.
    assert not any(servo.torque_enabled for servo in follower["bus"].servos)


def test_servo_going_silent_mid_episode_stops_the_arm_and_keeps_the_finished_episode(tmp_path):
    root = tmp_path / "servo"
    servo_states: dict[str, object] = {}

    def silence_elbow(session):
        servo_states["bus"] = session.virtual.follower_bus
        session.virtual.follower_bus.servo(3).env.faults.silent = True

    result = RecordSession(virtual_config(root, "--dataset.num_episodes=3", "--dataset.video=false"),
                           out=lambda _: None, on_frame=_fault_in_second_episode(silence_elbow)).run()
    assert result.exit_code == EXIT_FAULT
    assert "servo 'elbow_flex' (id 3)" in result.message and "stopped answering" in result.message
    assert "the 1 finished episodes are kept" in result.message
    assert total_episodes(root) == 1 and load_dataset(root).num_episodes == 1
    # Torque went off on every servo that still listens; the silent one cannot hear it, so the user is told.
    bus = servo_states["bus"]
    assert not any(servo.torque_enabled for servo in bus.servos if servo.id != 3)
    assert "Could not confirm torque off on elbow_flex: stop the emulator" in result.message
    assert "cable" not in result.message and "power supply" not in result.message, "a virtual arm has neither"


def test_terminal_keys_without_a_terminal_are_refused_before_any_arm_is_touched(tmp_path):
    follower, leader = EmulatedBus.for_arm("so101").start(), EmulatedBus.for_arm("so101-leader").start()
    root = tmp_path / "dataset"
    try:
        command = subprocess.run(
            [str(BIN / "lerobot-vla"), "record", "--robot.type=vla_so101_follower", f"--robot.port={follower.port}",
             "--robot.id=follower", "--teleop.type=vla_so101_leader", f"--teleop.port={leader.port}",
             "--teleop.id=leader", "--dataset.repo_id=local/keys", f"--dataset.root={root}",
             "--dataset.single_task=pick", "--keyboard", "terminal", "--report=false"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240,
            env={**os.environ, "HF_LEROBOT_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"})
        assert command.returncode == EXIT_USAGE, command.stderr
        assert "--keyboard=terminal needs stdin to be a terminal" in command.stderr
        assert "Traceback" not in command.stderr
        assert _bytes_seen(follower) == 0 and _bytes_seen(leader) == 0
        assert not root.exists()
    finally:
        follower.stop()
        leader.stop()


def test_a_corrupt_dataset_is_reported_by_resume_without_a_traceback(tmp_path, capsys):
    root = tmp_path / "corrupt"
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text('{"codebase_version": "v3.0", "total_epis')  # cut off mid-write
    assert cli.main(["record", *virtual_args(root, "--resume")]) == EXIT_FAULT
    error = capsys.readouterr().err
    assert "error: " in error and "meta/info.json is not valid JSON" in error
    assert f"lerobot-vla dataset-repair {root}" in error  # the fix, for this dataset


def test_a_failed_save_is_reported_against_its_episode_and_the_next_take_is_kept(tmp_path):
    """Take 1's camera images cannot be staged (a file is in the way); its save fails while take 2 records."""
    root = tmp_path / "failing_save"
    printed: list[str] = []
    takes_started: list[int] = []

    def on_frame(session, frame: int) -> None:
        if frame != 1:
            return
        takes_started.append(frame)
        if len(takes_started) == 1:
            blocker = root / "images" / "observation.images.front" / "episode-000001"
            blocker.parent.mkdir(parents=True, exist_ok=True)
            blocker.write_text("in the way")
        elif len(takes_started) == 3:
            while session.recorder.pending_episodes:  # take 1's save fails during take 2
                time.sleep(0.01)

    result = RecordSession(virtual_config(root, "--dataset.num_episodes=3"), out=printed.append,
                           on_frame=on_frame).run()
    assert len(takes_started) == 3
    assert result.exit_code == EXIT_FAULT
    assert (result.saved, result.failed, result.total_episodes) == (2, 1, 2)
    assert "Saving failed: episode 1 could not be saved" in result.message
    assert "could not write camera image" in result.message
    assert "The 2 finished episodes are kept" in result.message
    assert any(line.startswith("Episode 1: SAVING FAILED") for line in printed), printed
    assert any(line.startswith("Episode 1 saved (announced as episode 2)") for line in printed), "\n".join(printed)
    dataset = load_dataset(root)
    assert dataset.num_episodes == 2
    assert list(dataset.meta.episodes["scene_seed"]) == [0.0, 2.0]  # takes 0 and 2: take 2 was not lost
