"""A `lerobot-vla record` start that fails (no calibration, wrong port) says why and leaves nothing behind."""

from __future__ import annotations

from arms.conftest import emulated, so_calibration, write_calibration

from lerobot_vla_plugin.workflow.record import EXIT_FAULT, EXIT_OK, EXIT_USAGE, RecordSession, parse_config, session_summary


def _session(root, follower_port: str, leader_port: str, calibration, *extra: str) -> RecordSession:
    args = ["--robot.type=vla_so101_follower", f"--robot.port={follower_port}", "--robot.id=follower",
            f"--robot.calibration_dir={calibration / 'robots'}",
            "--teleop.type=vla_so101_leader", f"--teleop.port={leader_port}", "--teleop.id=leader",
            f"--teleop.calibration_dir={calibration / 'teleoperators'}",
            "--dataset.repo_id=local/start", f"--dataset.root={root}", "--dataset.single_task=pick the cube",
            "--dataset.num_episodes=1", "--dataset.episode_time_s=0.3", "--dataset.reset_time_s=0",
            "--dataset.video=false", "--keyboard=none", "--report=false", *extra]
    return RecordSession(parse_config(args), out=lambda _: None)


def _calibrate(follower_port: str, leader_port: str, calibration) -> None:
    from lerobot_vla_plugin.robots.so_follower.config_so_follower import VlaSO101FollowerConfig
    from lerobot_vla_plugin.robots.so_follower.so_follower import VlaSO101Follower
    from lerobot_vla_plugin.teleoperators.so_leader.config_so_leader import VlaSO101LeaderConfig
    from lerobot_vla_plugin.teleoperators.so_leader.so_leader import VlaSO101Leader

    write_calibration(VlaSO101Follower(VlaSO101FollowerConfig(
        port=follower_port, id="follower", calibration_dir=calibration / "robots")), so_calibration())
    write_calibration(VlaSO101Leader(VlaSO101LeaderConfig(
        port=leader_port, id="leader", calibration_dir=calibration / "teleoperators")), so_calibration())


def test_failed_starts_leave_nothing_that_blocks_the_corrected_rerun(tmp_path):
    root, calibration = tmp_path / "pick", tmp_path / "calibration"
    with emulated("so101") as follower, emulated("so101-leader") as leader:
        missing = _session(root, follower.port, leader.port, calibration).run()
        assert missing.exit_code == EXIT_USAGE
        assert f"has no calibration file: looked for {calibration / 'robots' / 'follower.json'}" in missing.message
        assert (f"lerobot-calibrate --robot.type=vla_so101_follower --robot.port={follower.port} --robot.id=follower"
                in missing.message)
        assert f"looked for {calibration / 'teleoperators' / 'leader.json'}" in missing.message
        assert not root.exists()

        _calibrate(follower.port, leader.port, calibration)
        wrong_port = _session(root, str(tmp_path / "ttyACM9"), leader.port, calibration).run()
        assert wrong_port.exit_code == EXIT_FAULT and "Could not connect the robot" in wrong_port.message
        assert not root.exists()
        assert "no dataset was created" in session_summary(wrong_port)

        done = _session(root, follower.port, leader.port, calibration).run()
        assert (done.exit_code, done.saved, done.total_episodes) == (EXIT_OK, 1, 1), done.message

        mismatch = _session(root, follower.port, leader.port, calibration, "--resume", "--dataset.fps=15").run()
        assert mismatch.exit_code == EXIT_USAGE and "different settings" in mismatch.message
        assert "the dataset holds 1 episodes" in session_summary(mismatch)


def test_a_dataset_holding_no_episode_is_started_afresh(tmp_path):
    from lerobot_vla_plugin.recording import CrashSafeRecorder

    root, calibration = tmp_path / "pick", tmp_path / "calibration"
    other_features = {"observation.state": {"dtype": "float32", "shape": (2,), "names": ["a", "b"]}}
    CrashSafeRecorder.create("local/start", root, fps=10, robot_type="other", features=other_features,
                             use_videos=False).close()  # what an older failed start left behind
    with emulated("so101") as follower, emulated("so101-leader") as leader:
        _calibrate(follower.port, leader.port, calibration)
        resumed = _session(root, follower.port, leader.port, calibration, "--resume").run()
        assert (resumed.exit_code, resumed.saved, resumed.total_episodes) == (EXIT_OK, 1, 1), resumed.message
