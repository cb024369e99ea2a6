"""A minimal LeRobot-style teleop loop over the virtual SO-101's two ptys, using our FeetechBus on both.

It mirrors what LeRobot's SO leader/follower do (configure the follower like `SOFollower.configure`, goal :=
present before torque-on, leader torque off, leader Present_Position -> follower Goal_Position each tick), so
swapping in the registered teleoperator/robot types only replaces `connect` and `step`.
"""

from __future__ import annotations

from lerobot.motors.motors_bus import Motor, MotorNormMode

from lerobot_vla_plugin.motors.feetech.bus import FeetechBus

SO_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")


def so101_motors() -> dict[str, Motor]:
    return {j: Motor(i + 1, "sts3215", MotorNormMode.RANGE_0_100 if j == "gripper" else MotorNormMode.DEGREES)
            for i, j in enumerate(SO_JOINTS)}


def connect_follower(port: str, calibration) -> FeetechBus:
    """Connected, configured as LeRobot configures an SO-101 follower, torque on holding the present pose."""
    bus = FeetechBus(port, so101_motors(), calibration)
    bus.connect()
    with bus.torque_disabled():
        bus.configure_motors()
        for motor in bus.motors:
            bus.write("Operating_Mode", motor, 0)
            bus.write("P_Coefficient", motor, 16)
            bus.write("I_Coefficient", motor, 0)
            bus.write("D_Coefficient", motor, 32)
        bus.write("Max_Torque_Limit", "gripper", 500)
        bus.write("Protection_Current", "gripper", 250)
        bus.write("Overload_Torque", "gripper", 25)
    bus.sync_write("Goal_Position", bus.sync_read("Present_Position"))  # no motion on torque-on
    bus.enable_torque()
    return bus


def connect_leader(port: str, calibration) -> FeetechBus:
    bus = FeetechBus(port, so101_motors(), calibration)
    bus.connect()
    bus.disable_torque()
    return bus


class MinimalTeleop:
    """Leader bus -> follower bus, one control tick per `step()` (the follower's goal write + position read)."""

    def __init__(self, virtual):
        self.leader = connect_leader(virtual.leader_port, virtual.calibration("leader"))
        self.follower = connect_follower(virtual.follower_port, virtual.calibration("follower"))

    def step(self) -> tuple[dict[str, float], dict[str, float]]:
        action = self.leader.sync_read("Present_Position")
        observation = self.follower.sync_write_read("Goal_Position", action)
        return action, observation

    def disconnect(self) -> None:
        self.follower.disconnect()
        self.leader.disconnect()


def record_demonstration(virtual, teleop: MinimalTeleop, *, task: str, seed: int, settle_ticks: int = 15):
    """One episode through the teleop path: returns (success, list of (action, observation) per tick)."""
    virtual.new_episode(task, seed=seed)
    frames = []
    while not virtual.demonstration_done:
        frames.append(teleop.step())
    for _ in range(settle_ticks):  # the operator is back at rest; let the dropped cube come to rest
        frames.append(teleop.step())
    return virtual.is_success(), frames
