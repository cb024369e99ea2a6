"""Bad input during a session: each gives a clear message and keeps every finished episode."""

from __future__ import annotations

from lerobot_vla_plugin.workflow.record import EXIT_FAULT, EXIT_USAGE, RecordSession

from .conftest import load_dataset, total_episodes, virtual_config


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
    assert not session.robot.bus.is_connected  # refused before connecting: no torque ever came on

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
    assert "switch off the arm's power supply" in result.message
