"""Fixtures shared by the servo-layer tests: emulated buses on real ptys and the motor maps of our arms."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MUJOCO_GL", "egl")

SO_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
KOCH_MODELS = ("xl430-w250", "xl430-w250", "xl330-m288", "xl330-m288", "xl330-m288", "xl330-m288")


def so_motors():
    from lerobot.motors.motors_bus import Motor, MotorNormMode

    return {j: Motor(i + 1, "sts3215", MotorNormMode.RANGE_0_100 if j == "gripper" else MotorNormMode.DEGREES)
            for i, j in enumerate(SO_JOINTS)}


def koch_motors():
    from lerobot.motors.motors_bus import Motor, MotorNormMode

    return {j: Motor(i + 1, KOCH_MODELS[i], MotorNormMode.RANGE_0_100 if j == "gripper" else MotorNormMode.RANGE_M100_100)
            for i, j in enumerate(SO_JOINTS)}


def calibration(range_min: int = 500, range_max: int = 3500, homing_offset: int = 0):
    from lerobot.motors.motors_bus import MotorCalibration

    return {j: MotorCalibration(i + 1, 0, homing_offset, range_min, range_max) for i, j in enumerate(SO_JOINTS)}


@pytest.fixture
def so101_emulator():
    from lerobot_vla_plugin.emulator.bus import EmulatedBus

    with EmulatedBus.for_arm("so101") as bus:
        yield bus


@pytest.fixture
def koch_emulator():
    from lerobot_vla_plugin.emulator.bus import EmulatedBus

    with EmulatedBus.for_arm("koch-follower") as bus:
        yield bus


@pytest.fixture
def scs_emulator():
    """Two SCS0009 servos (ids 1, 2): the big-endian protocol-1 family, which has no SYNC_READ."""
    from lerobot_vla_plugin.emulator.bus import EmulatedBus
    from lerobot_vla_plugin.emulator.feetech import FeetechBusLogic, FeetechServo
    from lerobot_vla_plugin.emulator.servo import ServoEnvironment
    from lerobot_vla_plugin.motors.feetech.tables import MODELS

    servos = [FeetechServo(i, MODELS["scs0009"], environment=ServoEnvironment(supply_voltage_v=5.0)) for i in (1, 2)]
    with EmulatedBus(FeetechBusLogic(servos)) as bus:
        yield bus


@pytest.fixture
def feetech_bus(so101_emulator):
    from lerobot_vla_plugin.motors.feetech.bus import FeetechBus

    bus = FeetechBus(so101_emulator.port, so_motors(), calibration())
    bus.connect()
    yield bus
    if bus.is_connected:
        bus.disconnect(disable_torque=False)


@pytest.fixture
def dynamixel_bus(koch_emulator):
    from lerobot_vla_plugin.motors.dynamixel.bus import DynamixelBus

    bus = DynamixelBus(koch_emulator.port, koch_motors(), calibration())
    bus.connect()
    yield bus
    if bus.is_connected:
        bus.disconnect(disable_torque=False)
