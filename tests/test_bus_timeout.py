"""The reply timeout a bus runs with: the owner's choice survives LeRobot's connect(), emulators get a margin."""

from __future__ import annotations

import pytest
from conftest import calibration, koch_motors, so_motors

from lerobot_vla_plugin.motors.bus_base import EMULATED_SERVO_TIMEOUT_MS, REAL_SERVO_TIMEOUT_MS
from lerobot_vla_plugin.motors.dynamixel.bus import DynamixelBus
from lerobot_vla_plugin.motors.errors import ServoNotRespondingError
from lerobot_vla_plugin.motors.feetech.bus import FeetechBus


@pytest.fixture(autouse=True)
def no_timeout_override(monkeypatch):
    monkeypatch.delenv("LEROBOT_VLA_BUS_TIMEOUT_MS", raising=False)


@pytest.fixture(params=["feetech", "dynamixel"])
def emulated(request, so101_emulator, koch_emulator):
    """(emulator, bus class, motors) per vendor."""
    if request.param == "feetech":
        return so101_emulator, FeetechBus, so_motors
    return koch_emulator, DynamixelBus, koch_motors


def test_a_timeout_given_to_the_constructor_survives_connect_and_reconnect(emulated):
    emulator, bus_cls, motors = emulated
    bus = bus_cls(emulator.port, motors(), calibration(), timeout_ms=333)
    bus.connect()  # LeRobot's MotorsBus.connect() calls set_timeout() after _connect()
    assert bus.timeout_ms == pytest.approx(333)
    bus.disconnect(disable_torque=False)
    bus.connect()
    assert bus.timeout_ms == pytest.approx(333)
    bus.disconnect(disable_torque=False)


def test_a_timeout_set_before_connect_survives_connect(emulated):
    emulator, bus_cls, motors = emulated
    bus = bus_cls(emulator.port, motors(), calibration())
    bus.set_timeout(444)
    bus.connect()
    assert bus.timeout_ms == pytest.approx(444)
    bus.set_timeout()  # LeRobot's "back to the default" keeps the owner's choice
    assert bus.timeout_ms == pytest.approx(444)
    bus.disconnect(disable_torque=False)


def test_an_emulated_bus_gets_the_emulator_margin_and_a_real_port_the_tight_default(emulated):
    emulator, bus_cls, motors = emulated
    bus = bus_cls(emulator.port, motors(), calibration())
    bus.connect()
    assert bus.emulated
    assert bus.timeout_ms == pytest.approx(EMULATED_SERVO_TIMEOUT_MS)
    bus.disconnect(disable_torque=False)
    real = bus_cls("/dev/ttyACM-not-here", motors(), calibration())
    assert not real.emulated
    assert real.timeout_ms == pytest.approx(REAL_SERVO_TIMEOUT_MS)


def test_the_environment_override_applies_unless_the_owner_chose(emulated, monkeypatch):
    emulator, bus_cls, motors = emulated
    monkeypatch.setenv("LEROBOT_VLA_BUS_TIMEOUT_MS", "77")
    bus = bus_cls(emulator.port, motors(), calibration())
    bus.connect()
    assert bus.timeout_ms == pytest.approx(77)
    bus.disconnect(disable_torque=False)
    owned = bus_cls(emulator.port, motors(), calibration(), timeout_ms=88)
    owned.connect()
    assert owned.timeout_ms == pytest.approx(88)
    owned.disconnect(disable_torque=False)


def test_a_silent_emulated_servo_is_not_blamed_on_cables(emulated):
    emulator, bus_cls, motors = emulated
    bus = bus_cls(emulator.port, motors(), calibration(), timeout_ms=60)
    bus.connect()
    emulator.servo(4).env.faults.silent = True
    with pytest.raises(ServoNotRespondingError) as info:
        bus.sync_read("Present_Position")
    message = str(info.value)
    assert "'wrist_flex' (id 4)" in message and emulator.port in message
    assert "emulat" in message and "waited 60 ms" in message
    assert "cable" not in message and "powered" not in message
    bus.disconnect(disable_torque=False)


def test_a_silent_real_servo_message_keeps_the_wiring_advice():
    message = str(ServoNotRespondingError(motors={4: "wrist_flex"}, port="/dev/ttyACM0", baudrate=1_000_000,
                                          tries=3, what="sync read", timeout_ms=25, emulated=False))
    assert "cable" in message and "doctor" in message
