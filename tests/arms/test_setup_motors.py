"""`lerobot-vla setup-motors` on factory-fresh emulated servos, connected one at a time as the prompts ask."""

from __future__ import annotations

import builtins

import pytest

from lerobot_vla_plugin.cli import main
from lerobot_vla_plugin.emulator.arms import ARMS, ServoSlot, build_servo
from lerobot_vla_plugin.emulator.bus import EmulatedBus

CASES = {
    # device arguments, emulated arm (for the models), protocol, factory baud rate
    "so101 follower": ("--robot", "vla_so101_follower", "so101", "feetech", 1_000_000),
    "koch leader": ("--teleop", "vla_koch_leader", "koch-leader", "dynamixel", 57_600),
}


def _fresh(protocol: str, slot: ServoSlot, factory_baudrate: int):
    """A servo straight from the box: id 1 at the factory baud rate."""
    return build_servo(protocol, ServoSlot(slot.joint, 1, slot.model, slot.supply_voltage_v),
                       baudrate=factory_baudrate)


@pytest.mark.parametrize("case", list(CASES))
def test_setup_motors_gives_each_fresh_servo_its_id_and_the_bus_baudrate(case, tmp_path, monkeypatch, capsys):
    flag, device_type, arm, protocol, factory_baudrate = CASES[case]
    slots = {slot.joint: slot for slot in ARMS[arm][1]}
    from lerobot_vla_plugin.emulator.arms import build_arm_logic

    logic = build_arm_logic(arm)
    logic.servos[:] = []
    configured = []
    prompts = []
    with EmulatedBus(logic) as bus:
        def plug_in_only(prompt: str = "") -> str:
            """The user: unplug the previous servo, plug in a new one from the box, press ENTER."""
            prompts.append(prompt)
            joint = prompt.split("'")[1]
            with bus.lock:
                logic.servos[:] = [_fresh(protocol, slots[joint], factory_baudrate)]
                configured.append(logic.servos[0])
            return ""

        monkeypatch.setattr(builtins, "input", plug_in_only)
        rc = main(["setup-motors", f"{flag}.type={device_type}", f"{flag}.port={bus.port}",
                   f"{flag}.calibration_dir={tmp_path}"])
        assert rc == 0
        assert [p.split("'")[1] for p in prompts] == list(reversed(list(slots)))
        for servo, joint in zip(configured, reversed(list(slots)), strict=True):
            assert servo.id == slots[joint].servo_id, joint
            assert servo.baudrate == 1_000_000, joint
            assert servo.memory.persisted[servo.memory.register("ID").address] == slots[joint].servo_id
        out = capsys.readouterr().out
        assert "'gripper' motor id set to 6" in out and "'shoulder_pan' motor id set to 1" in out
        assert f"at {factory_baudrate} baud" in out


def test_setup_motors_refuses_a_second_device_and_names_the_fix(capsys):
    with pytest.raises(SystemExit, match="either --robot"):
        main(["setup-motors", "--robot.type=vla_so101_follower", "--robot.port=/dev/null",
              "--teleop.type=vla_so101_leader", "--teleop.port=/dev/null"])
