"""The physics-backed follower seen through our FeetechBus on its pty: it moves, holds, respects limits, goes limp."""

from __future__ import annotations

import math

import numpy as np
import pytest
from virtual_teleop import connect_follower, so101_motors

from lerobot_vla_plugin.emulator.virtual_arm import VirtualSO101
from lerobot_vla_plugin.motors.errors import ServoNotRespondingError
from lerobot_vla_plugin.motors.feetech.bus import FeetechBus
from lerobot_vla_plugin.sim.so101 import JOINT_NAMES

HOLD = {"shoulder_pan": 0.0, "shoulder_lift": -30.0, "elbow_flex": 0.0, "wrist_flex": 0.0, "wrist_roll": 0.0,
        "gripper": 50.0}


@pytest.fixture
def virtual():
    with VirtualSO101(lockstep=True, leader=False, camera_socket=None, seed=0) as arm:
        yield arm


def ticks(bus: FeetechBus, goal: dict[str, float], n: int) -> dict[str, float]:
    for _ in range(n):
        observation = bus.sync_write_read("Goal_Position", goal)
    return observation


def test_calibrated_arm_reads_the_simulated_joint_angles_in_degrees_and_gripper_percent(virtual):
    bus = FeetechBus(virtual.follower_port, so101_motors(), virtual.calibration())
    bus.connect()
    assert bus.is_calibrated  # the servos' EEPROM holds what calibration() returns
    # Horns are not mounted centred on the encoders, so every joint needs (and has) a homing offset.
    assert all(bus.sync_read("Homing_Offset", normalize=False).values())
    present = bus.sync_read("Present_Position")
    q = virtual.sim.joint_positions()
    for i, joint in enumerate(JOINT_NAMES[:5]):
        assert present[joint] == pytest.approx(math.degrees(q[i]), abs=0.15)
    low, high = virtual.sim.joint_limits()[5]
    assert present["gripper"] == pytest.approx(100 * (q[5] - low) / (high - low), abs=0.2)
    bus.disconnect()


def test_goal_position_moves_the_simulated_joints_and_they_hold(virtual):
    bus = connect_follower(virtual.follower_port, virtual.calibration())
    goal = dict(HOLD, shoulder_pan=25.0, wrist_roll=40.0, gripper=80.0)
    observation = ticks(bus, goal, 45)  # 1.5 s
    for joint in ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_roll"):
        assert observation[joint] == pytest.approx(goal[joint], abs=1.0)
    assert observation["gripper"] == pytest.approx(80.0, abs=2.0)
    np.testing.assert_allclose(np.degrees(virtual.sim.joint_positions()[:5]),
                               [goal[j] for j in JOINT_NAMES[:5]], atol=1.0)
    # Holding the arm out against gravity shows up as load on the shoulder servo.
    assert abs(bus.read("Present_Load", "shoulder_lift", normalize=False)) > 20
    bus.disconnect()


def test_goals_beyond_the_servo_position_limit_stop_at_the_limit(virtual):
    bus = connect_follower(virtual.follower_port, virtual.calibration())
    limit_deg = 40.0
    limit_raw = 2047 + round(limit_deg * 4095 / 360)
    with bus.torque_disabled():
        bus.write("Max_Position_Limit", "shoulder_pan", limit_raw, normalize=False)
    bus.sync_write("Goal_Position", bus.sync_read("Present_Position"))
    bus.enable_torque()
    observation = ticks(bus, dict(HOLD, shoulder_pan=90.0), 45)
    assert observation["shoulder_pan"] == pytest.approx(limit_deg, abs=1.0)
    assert math.degrees(virtual.sim.joint_positions()[0]) == pytest.approx(limit_deg, abs=1.0)
    bus.disconnect()


def test_torque_off_lets_the_joint_fall_limp_under_gravity(virtual):
    bus = connect_follower(virtual.follower_port, virtual.calibration())
    held = ticks(bus, HOLD, 45)
    assert ticks(bus, HOLD, 30)["shoulder_lift"] == pytest.approx(held["shoulder_lift"], abs=0.5)
    bus.disable_torque(["shoulder_lift"])
    for _ in range(30):
        limp = bus.sync_read("Present_Position")
    assert abs(limp["shoulder_lift"] - held["shoulder_lift"]) > 10.0  # the upper arm fell
    assert bus.read("Present_Load", "shoulder_lift", normalize=False) == 0  # an unpowered motor carries no load
    assert limp["elbow_flex"] == pytest.approx(held["elbow_flex"], abs=1.0)  # the other servos still hold
    bus.disconnect()


def test_emulated_servo_faults_still_apply_to_the_physics_backed_bus(virtual):
    bus = connect_follower(virtual.follower_port, virtual.calibration())
    virtual.follower_bus.servo(3).env.faults.silent = True
    with pytest.raises(ServoNotRespondingError, match="elbow_flex"):
        bus.sync_read("Present_Position")
    virtual.follower_bus.servo(3).env.faults.silent = False
    virtual.follower_bus.servo(2).env.faults.latched_error_bits = 0x20
    bus.sync_read("Present_Position")
    assert bus.status_errors == {"shoulder_lift": ["overload"]}
    bus.disconnect()
