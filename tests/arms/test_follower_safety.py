"""Safety by default, proven on emulated servos: no motion on connect, ramped first command, per-step clamp,
calibrated limits, refused NaN, fault-injected servo failures that take torque off with the servo named, and
torque off on signals, exceptions and interpreter exit."""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers import wait_until
from lerobot.motors.motors_bus import MotorCalibration

from lerobot_vla_plugin.arms import exit_guard
from lerobot_vla_plugin.arms.health import SafetyStop
from lerobot_vla_plugin.robots.koch_follower.config_koch_follower import VlaKochFollowerConfig
from lerobot_vla_plugin.robots.koch_follower.koch_follower import VlaKochFollower
from lerobot_vla_plugin.robots.so_follower.config_so_follower import VlaSO101FollowerConfig
from lerobot_vla_plugin.robots.so_follower.so_follower import VlaSO101Follower
from lerobot_vla_plugin.teleoperators.so_leader.config_so_leader import VlaSO101LeaderConfig
from lerobot_vla_plugin.teleoperators.so_leader.so_leader import VlaSO101Leader

from .conftest import SO_JOINTS, emulated, so_calibration, write_calibration

ACTION_KEYS = [f"{j}.pos" for j in SO_JOINTS]


@pytest.fixture
def so101():
    with emulated("so101") as bus:
        yield bus


def _follower(bus, tmp_path, **overrides):
    config = VlaSO101FollowerConfig(port=bus.port, id="f", calibration_dir=tmp_path, **overrides)
    robot = VlaSO101Follower(config)
    write_calibration(robot, so_calibration())
    return robot


@pytest.fixture
def connected(so101, tmp_path):
    robots = []

    def connect(**overrides):
        robot = _follower(so101, tmp_path, **overrides)
        robot.connect()
        robots.append(robot)
        return robot

    yield connect
    for robot in robots:
        if robot.bus.is_connected:
            robot.disconnect()


def _torque(bus) -> list[bool]:
    return [servo.torque_enabled for servo in bus.servos]


# -- configuration ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [math.nan, math.inf, 0, -5.0, True, "10", {"gripper": 5.0}])
def test_an_unsafe_max_relative_target_is_refused_with_the_reason(value):
    with pytest.raises(ValueError, match="max_relative_target"):
        VlaSO101FollowerConfig(port="/dev/null", max_relative_target=value)


def test_the_step_clamp_is_on_by_default_and_accepts_ints_and_per_joint_dicts():
    assert VlaSO101FollowerConfig(port="/dev/null").max_relative_target == 10.0
    assert VlaKochFollowerConfig(port="/dev/null").max_relative_target == 10.0
    VlaSO101FollowerConfig(port="/dev/null", max_relative_target=5)
    VlaSO101FollowerConfig(port="/dev/null", max_relative_target=dict.fromkeys(SO_JOINTS, 3))


# -- motion safety ---------------------------------------------------------------------------------------------

def test_connect_does_not_chase_a_stale_goal_left_in_the_servos(so101, connected):
    shaft = so101.servo(2)
    shaft.memory.set_raw("Goal_Position", 3000)  # left there by a previous program
    start = shaft.actuator.position_steps
    robot = connected()
    assert all(_torque(so101))
    for _ in range(20):
        robot.get_observation()
        time.sleep(0.005)
    assert abs(shaft.actuator.position_steps - start) < 2
    assert shaft.memory.get_raw("Goal_Position") == round(start)


def test_a_far_first_command_is_ramped_at_bounded_speed_and_announced(so101, connected, caplog):
    robot = connected()
    present = robot.get_observation()
    target = {**present, "shoulder_lift.pos": present["shoulder_lift.pos"] + 60.0}
    caplog.set_level(logging.INFO)
    sent = []
    for _ in range(400):
        sent.append(robot.send_action(target)["shoulder_lift.pos"])
        if abs(sent[-1] - target["shoulder_lift.pos"]) < 1e-6:
            break
        time.sleep(0.005)
    steps = [b - a for a, b in zip([present["shoulder_lift.pos"]] + sent, sent, strict=False)]
    bound = robot.config.ramp_speed * robot.guard.max_ramp_dt_s
    assert max(steps) <= bound + 1e-9 and min(steps) >= 0
    assert len(steps) > 60 / bound, "the 60 degree move must take several ramp steps"
    assert sent[-1] == pytest.approx(target["shoulder_lift.pos"])
    assert "first command is 60.0 away from the present pose on 'shoulder_lift'" in caplog.text
    assert "ramp finished" in caplog.text


def test_each_step_is_clamped_against_the_last_observation(so101, connected):
    robot = connected(max_relative_target=5.0, ramp_threshold=1000.0)
    present = robot.get_observation()
    sent = robot.send_action({**present, "elbow_flex.pos": present["elbow_flex.pos"] - 30.0})
    assert sent["elbow_flex.pos"] == pytest.approx(present["elbow_flex.pos"] - 5.0)
    assert sent["wrist_flex.pos"] == pytest.approx(present["wrist_flex.pos"])


def test_goals_beyond_the_calibrated_range_are_held_at_the_limit(so101, connected):
    robot = connected(max_relative_target=None, ramp_threshold=1000.0)
    present = robot.get_observation()
    limit_deg = (3000 - 1000) / 2 * 360 / 4095
    sent = robot.send_action({**present, "shoulder_pan.pos": 170.0, "gripper.pos": 140.0})
    assert sent["shoulder_pan.pos"] == pytest.approx(limit_deg)
    assert sent["gripper.pos"] == 100.0
    assert 1000 <= so101.servo(1).memory.get_raw("Goal_Position") <= 3000


def test_a_nan_action_is_refused_and_nothing_is_sent(so101, connected):
    robot = connected()
    present = robot.get_observation()
    goal_before = so101.servo(4).memory.get_raw("Goal_Position")
    with pytest.raises(ValueError, match="'wrist_flex'.*non-finite"):
        robot.send_action({**present, "wrist_flex.pos": float("nan")})
    assert so101.servo(4).memory.get_raw("Goal_Position") == goal_before


# -- fault injection -------------------------------------------------------------------------------------------

class TorqueWatch:
    """Samples the emulated servos' torque flags every millisecond: when did they all go off?"""

    def __init__(self, servos):
        self.servos = servos
        self.all_off_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            if not any(servo.torque_enabled for servo in self.servos):
                self.all_off_at = time.perf_counter()
                return
            time.sleep(0.001)

    def stop(self):
        self._stop.set()
        self._thread.join()


def test_a_servo_that_goes_silent_stops_the_arm_in_the_same_tick_and_is_named(so101, connected):
    robot = connected()
    action = robot.get_observation()
    for _ in range(5):
        robot.send_action(action)
    ticks_before = robot.ticks
    others = [s for s in so101.servos if s.id != 3]
    watch = TorqueWatch(others)
    so101.servo(3).env.faults.silent = True
    fault_at = time.perf_counter()
    with pytest.raises(SafetyStop, match=r"servo 'elbow_flex' \(id 3\).*stopped answering") as stop:
        robot.send_action(action)
    watch.stop()
    assert robot.ticks == ticks_before, "the failing tick is the one that stopped the arm"
    assert not any(s.torque_enabled for s in others)
    assert "emulator" in str(stop.value) and "cable" not in str(stop.value), "a virtual bus has no cables"
    latency_s = watch.all_off_at - fault_at
    print(f"silent servo -> torque off on the others after {latency_s * 1000:.0f} ms "
          f"(reply timeout {robot.bus.timeout_ms:.0f} ms)")
    # Detection takes (1 + num_retry) reply timeouts; the bound here only guards against a hang.
    assert latency_s < (1 + robot.bus.num_retry) * robot.bus.timeout_ms / 1000 + 2.0
    with pytest.raises(SafetyStop, match="until the robot is reconnected"):
        robot.send_action(action)


def test_an_overload_reported_by_a_servo_stops_the_arm_at_the_next_tick(so101, connected):
    robot = connected()
    action = robot.get_observation()
    robot.send_action(action)
    so101.servo(6).env.faults.latched_error_bits = 0x20  # Feetech overload bit
    with pytest.raises(SafetyStop, match=r"servo 'gripper' \(id 6\).*overload"):
        robot.send_action(action)
    assert not any(_torque(so101))


def test_a_koch_hardware_alert_is_read_out_and_stops_the_arm(tmp_path):
    from lerobot_vla_plugin.motors.dynamixel.protocol import HardwareError

    with emulated("koch-follower") as bus:
        robot = VlaKochFollower(VlaKochFollowerConfig(port=bus.port, id="k", calibration_dir=tmp_path))
        write_calibration(robot, {j: MotorCalibration(i + 1, 0, 0, 1000, 3000) for i, j in enumerate(SO_JOINTS)})
        robot.connect()
        try:
            action = robot.get_observation()
            robot.send_action(action)
            bus.servo(2).hardware_error = int(HardwareError.OVERLOAD)
            with pytest.raises(SafetyStop, match=r"servo 'shoulder_lift' \(id 2\).*overload"):
                robot.send_action(action)
            assert not any(_torque(bus))
        finally:
            robot.disconnect()


def test_the_low_rate_health_check_warns_early_then_stops_an_overheating_servo(so101, connected, caplog):
    robot = connected(health_check_period_s=0.05)
    action = robot.get_observation()
    so101.servo(4).thermal.temperature_c = 58.0
    checks = robot.monitor.checks
    while robot.monitor.checks < checks + 2:
        robot.send_action(action)
        time.sleep(0.005)
    assert "servo 'wrist_flex' (id 4)" in caplog.text and "58 °C" in caplog.text
    assert all(_torque(so101))
    so101.servo(4).thermal.temperature_c = 66.0  # above our 65 °C stop, below the servo's own 70 °C cut-off
    checks = robot.monitor.checks
    with pytest.raises(SafetyStop, match=r"servo 'wrist_flex' \(id 4\).*overheating at 66"):
        while robot.monitor.checks < checks + 2:
            robot.send_action(action)
            time.sleep(0.005)
    assert not any(_torque(so101))


def test_an_idle_follower_is_still_watched(so101, connected):
    robot = connected(health_check_period_s=0.05)
    action = robot.get_observation()
    so101.servo(1).thermal.temperature_c = 66.0
    wait_until(lambda: not any(_torque(so101)), timeout_s=10, what="the idle watchdog to take torque off")
    with pytest.raises(SafetyStop, match="shoulder_pan"):
        robot.send_action(action)


# -- exit paths ------------------------------------------------------------------------------------------------

def test_sigterm_takes_torque_off_then_runs_the_previous_handler(so101, connected):
    through_exit_guard = []  # per delivery: did it arrive by way of our handler?

    def test_handler(signum, frame):
        through_exit_guard.append(sys._getframe(1).f_code is exit_guard._on_signal.__code__)

    original = signal.signal(signal.SIGTERM, test_handler)
    try:
        robot = connected()
        assert all(_torque(so101))
        assert signal.getsignal(signal.SIGTERM) is exit_guard._on_signal
        os.kill(os.getpid(), signal.SIGTERM)
        wait_until(lambda: through_exit_guard, timeout_s=5, what="the signal")
        wait_until(lambda: not any(_torque(so101)), timeout_s=5, what="torque off")
        assert through_exit_guard == [True]  # torque off first, then passed on to the handler from before
        robot.disconnect()
        assert signal.getsignal(signal.SIGTERM) is test_handler  # exactly the handler installed before connect
        os.kill(os.getpid(), signal.SIGTERM)
        wait_until(lambda: len(through_exit_guard) == 2, timeout_s=5, what="the restored handler")
        assert through_exit_guard == [True, False]  # ours no longer runs
    finally:
        signal.signal(signal.SIGTERM, original)


def test_ctrl_c_takes_torque_off_and_still_raises_keyboard_interrupt(so101, connected):
    # Python's own Ctrl-C handler, as in a terminal: a shell that starts the tests in the background hands them
    # SIGINT ignored, which the exit guard rightly leaves alone.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        robot = connected()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        wait_until(lambda: not any(_torque(so101)), timeout_s=5, what="torque off")
        robot.disconnect()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, inherited)


_CRASHING_SCRIPT = """
import sys
from pathlib import Path
from lerobot_vla_plugin.robots.so_follower.config_so_follower import VlaSO101FollowerConfig
from lerobot_vla_plugin.robots.so_follower.so_follower import VlaSO101Follower
robot = VlaSO101Follower(VlaSO101FollowerConfig(port=sys.argv[1], id="f", calibration_dir=Path(sys.argv[2])))
robot.connect(calibrate=False)
robot.send_action(robot.get_observation())
print("torqued", flush=True)
raise RuntimeError("a bug in the user's control loop")
"""


def test_an_uncaught_exception_without_disconnect_still_takes_torque_off(so101, tmp_path):
    _follower(so101, tmp_path)  # calibration in the servos and in tmp_path
    result = subprocess.run([sys.executable, "-c", _CRASHING_SCRIPT, so101.port, str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert "torqued" in result.stdout, result.stderr
    assert result.returncode == 1 and "a bug in the user's control loop" in result.stderr
    assert "torque off (the Python process is exiting without having disconnected it)" in result.stderr
    assert not any(_torque(so101))


def test_a_dead_leader_raises_on_read_but_its_disconnect_never_raises(tmp_path):
    with emulated("so101-leader") as bus:
        leader = VlaSO101Leader(VlaSO101LeaderConfig(port=bus.port, id="l", calibration_dir=tmp_path))
        write_calibration(leader, so_calibration())
        leader.connect()
        leader.get_action()
        for servo in bus.servos:
            servo.env.faults.silent = True
        with pytest.raises(ConnectionError, match="No valid reply"):
            leader.get_action()
        bus.unplug()
        leader.disconnect()
        assert not leader.is_connected


def test_disconnect_takes_torque_off_even_after_a_camera_died(tmp_path):
    """A dead camera makes `is_connected` False (as in LeRobot); disconnect must still make the arm safe."""
    from lerobot_vla_plugin.cameras.config_virtual_camera import VirtualCameraConfig
    from lerobot_vla_plugin.emulator.virtual_arm import VirtualSO101

    with VirtualSO101(lockstep=True, leader=False, camera_socket=None) as virtual:
        virtual.write_calibration_file(tmp_path / "virtual.json", "follower")
        config = VlaSO101FollowerConfig(port=virtual.follower_port, id="virtual", calibration_dir=tmp_path,
                                        cameras={"front": VirtualCameraConfig(camera="front", width=32, height=24)})
        robot = VlaSO101Follower(config)
        robot.connect(calibrate=False)
        robot.send_action(robot.get_observation())
        assert any(servo.torque_enabled for servo in virtual.follower_bus.servos)
        robot.cameras["front"].disconnect()  # the camera is gone
        assert not robot.is_connected
        robot.disconnect()
        assert not any(servo.torque_enabled for servo in virtual.follower_bus.servos)
        assert not robot.bus.is_connected
