"""`lerobot-vla doctor` catches each planted misconfiguration with the right message and a non-zero exit."""

from __future__ import annotations

import pytest

from lerobot_vla_plugin.cli import main
from lerobot_vla_plugin.robots.so_follower.config_so_follower import VlaSO101FollowerConfig
from lerobot_vla_plugin.robots.so_follower.so_follower import VlaSO101Follower
from lerobot_vla_plugin.teleoperators.so_leader.config_so_leader import VlaSO101LeaderConfig
from lerobot_vla_plugin.teleoperators.so_leader.so_leader import VlaSO101Leader

from .conftest import emulated, so_calibration, write_calibration


def _doctor(capsys, flag: str, device_type: str, port: str, tmp_path, *extra: str) -> tuple[int, str]:
    rc = main(["doctor", f"{flag}.type={device_type}", f"{flag}.port={port}", f"{flag}.id=arm",
               f"{flag}.calibration_dir={tmp_path}", *extra])
    return rc, capsys.readouterr().out


@pytest.fixture
def follower(tmp_path):
    with emulated("so101") as bus:
        robot = VlaSO101Follower(VlaSO101FollowerConfig(port=bus.port, id="arm", calibration_dir=tmp_path))
        write_calibration(robot, so_calibration())
        yield bus


def _line(out: str, status: str, name: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith(f"[{status:^4}] {name}")]
    assert lines, f"no [{status}] {name} line in:\n{out}"
    return lines[0]


def test_a_healthy_arm_passes_every_check(follower, tmp_path, capsys):
    rc, out = _doctor(capsys, "--robot", "vla_so101_follower", follower.port, tmp_path)
    assert rc == 0, out
    for name in ("port", "servos", "link", "firmware", "supply", "calibration"):
        _line(out, "ok", name)
    assert "0 failed" in out


def test_a_missing_port_fails_with_the_find_port_hint(tmp_path, capsys):
    rc, out = _doctor(capsys, "--robot", "vla_so101_follower", str(tmp_path / "ttyACM9"), tmp_path)
    assert rc == 1
    assert "lerobot-vla find-port" in _line(out, "FAIL", "port")


def test_a_servo_that_does_not_answer_is_named(follower, tmp_path, capsys):
    follower.servo(4).env.faults.silent = True
    rc, out = _doctor(capsys, "--robot", "vla_so101_follower", follower.port, tmp_path)
    assert rc == 1
    line = _line(out, "FAIL", "servos")
    assert "'wrist_flex' (id 4) does not answer" in line and "setup-motors" in line


def test_a_wrong_servo_model_is_named(follower, tmp_path, capsys):
    follower.servo(2).memory.set_raw("Model_Number", 1284, persist=True)  # an SCS0009 where an STS3215 belongs
    rc, out = _doctor(capsys, "--robot", "vla_so101_follower", follower.port, tmp_path)
    assert rc == 1
    assert "'shoulder_lift' (id 2) is model scs0009 (1284), expected sts3215 (777)" in _line(out, "FAIL", "servos")


def test_mixed_firmware_fails(follower, tmp_path, capsys):
    follower.servo(5).memory.set_raw("Firmware_Minor_Version", 9, persist=True)
    rc, out = _doctor(capsys, "--robot", "vla_so101_follower", follower.port, tmp_path)
    assert rc == 1
    line = _line(out, "FAIL", "firmware")
    assert "wrist_roll=3.9" in line and "shoulder_pan=3.10" in line


def test_a_12v_supply_on_a_leader_fails_with_the_fix(tmp_path, capsys):
    with emulated("so101-leader") as bus:
        leader = VlaSO101Leader(VlaSO101LeaderConfig(port=bus.port, id="arm", calibration_dir=tmp_path))
        write_calibration(leader, so_calibration())
        for servo in bus.servos:
            servo.env.faults.supply_voltage_v = 12.0
        rc, out = _doctor(capsys, "--teleop", "vla_so101_leader", bus.port, tmp_path)
    assert rc == 1
    line = _line(out, "FAIL", "supply")
    assert "12.0 V" in line and "5 V supply" in line


def test_a_calibration_file_that_differs_from_the_eeprom_fails(follower, tmp_path, capsys):
    follower.servo(3).memory.set_raw("Max_Position_Limit", 2900, persist=True)  # recalibrated by someone else
    rc, out = _doctor(capsys, "--robot", "vla_so101_follower", follower.port, tmp_path)
    assert rc == 1
    line = _line(out, "FAIL", "calibration")
    assert "'elbow_flex' range_max file 3000 vs servo 2900" in line and "lerobot-calibrate" in line


def test_a_missing_calibration_file_is_a_warning(tmp_path, capsys):
    with emulated("so101") as bus:
        rc, out = _doctor(capsys, "--robot", "vla_so101_follower", bus.port, tmp_path)
    assert rc == 0
    assert "lerobot-calibrate" in _line(out, "warn", "calibration")


def test_a_camera_that_cannot_open_fails(follower, tmp_path, capsys):
    cameras = ("--robot.cameras={front: {type: opencv, index_or_path: /nonexistent/video9, width: 640, "
               "height: 480, fps: 30}}")
    rc, out = _doctor(capsys, "--robot", "vla_so101_follower", follower.port, tmp_path, cameras)
    assert rc == 1
    assert "cannot open at 640x480 30 fps" in _line(out, "FAIL", "camera front")
    _line(out, "ok", "servos")


def _flagged_link_line(out: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith(("[FAIL] link", "[warn] link"))]
    assert lines, f"the link is not flagged:\n{out}"
    return lines[0]


@pytest.mark.parametrize("faults", [{"drop_rate": 0.3}, {"corrupt_rate": 0.2}], ids=["30% dropped", "20% corrupt"])
def test_a_noisy_bus_gets_a_link_report_instead_of_a_traceback(faults, tmp_path, capsys):
    from lerobot_vla_plugin.emulator.bus import LinkFaults

    with emulated("so101", faults=LinkFaults(seed=3, **faults)) as bus:
        rc, out = _doctor(capsys, "--robot", "vla_so101_follower", bus.port, tmp_path, "--link-reads", "8")
    assert rc == 1
    line = _line(out, "FAIL", "link")
    assert "lost or corrupt over 8 position reads" in line and "'gripper'" in line
    assert "cable" in line and "latency timer" in line
    for name in ("firmware", "supply", "calibration"):  # every other check still ran to a verdict
        assert f"] {name}:" in out, out
    assert "Traceback" not in out


def test_five_percent_reply_loss_is_flagged(tmp_path, capsys):
    from lerobot_vla_plugin.emulator.bus import LinkFaults

    with emulated("so101", faults=LinkFaults(drop_rate=0.05, seed=1)) as bus:
        _, out = _doctor(capsys, "--robot", "vla_so101_follower", bus.port, tmp_path, "--link-reads", "30")
    line = _flagged_link_line(out)
    assert "replies" in line and "lost or corrupt" in line


def test_a_dynamixel_arm_on_an_so101_port_is_named(tmp_path, capsys):
    with emulated("koch-follower") as bus:
        rc, out = _doctor(capsys, "--robot", "vla_so101_follower", bus.port, tmp_path)
    assert rc == 1
    assert "no servo answers" in _line(out, "FAIL", "servos")
    line = _line(out, "FAIL", "protocol")
    assert "Dynamixel protocol 2.0" in line and "at 1000000 baud" in line and "vla_koch_follower" in line


def test_servos_at_another_baud_rate_are_found_there(tmp_path, capsys):
    from lerobot_vla_plugin.emulator.arms import ARMS, build_arm_logic, build_servo
    from lerobot_vla_plugin.emulator.bus import EmulatedBus

    logic = build_arm_logic("koch-leader")
    logic.servos[:] = [build_servo("dynamixel", slot, baudrate=57_600) for slot in ARMS["koch-leader"][1]]
    with EmulatedBus(logic) as bus:
        rc, out = _doctor(capsys, "--teleop", "vla_koch_leader", bus.port, tmp_path)
    assert rc == 1
    line = _line(out, "FAIL", "protocol")
    assert "at 57600 baud, not at 1000000 baud" in line and "setup-motors" in line


def test_connecting_to_the_wrong_protocol_says_which_one_answers():
    from lerobot.motors.motors_bus import Motor, MotorNormMode

    from lerobot_vla_plugin.motors.feetech.bus import FeetechBus

    with emulated("koch-follower") as bus:
        feetech = FeetechBus(bus.port, {"shoulder_pan": Motor(1, "sts3215", MotorNormMode.RANGE_M100_100)})
        with pytest.raises(RuntimeError, match="Missing motor IDs") as raised:
            feetech.connect()
    assert "this port carries a dynamixel arm" in str(raised.value)
    assert not feetech.is_connected
