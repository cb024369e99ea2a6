"""The servo chains of the arms we support, as they are after motor setup (IDs 1-6 at 1 Mbps).

Supply voltages follow the usual builds: SO followers on 12 V STS3215, leaders on the 7.4 V variant at 5 V; the
Koch follower's XL430s on 12 V and its XL330s on 5 V from a buck converter; the Koch leader on 5 V.
"""

from __future__ import annotations

from dataclasses import dataclass

from .servo import ServoEnvironment

SO_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
KOCH_JOINTS = SO_JOINTS


@dataclass(frozen=True)
class ServoSlot:
    joint: str
    servo_id: int
    model: str
    supply_voltage_v: float
    voltage_limits_tenths: tuple[int, int] | None = None  # (min, max) for a variant that differs from defaults


_STS_12V = (40, 140)  # 12 V STS3215 variant
_STS_7V4 = (40, 80)  # 7.4 V STS3215 variant (C001/C044/C046)

ARMS: dict[str, tuple[str, tuple[ServoSlot, ...]]] = {
    "so100": ("feetech", tuple(ServoSlot(j, i + 1, "sts3215", 12.0, _STS_12V) for i, j in enumerate(SO_JOINTS))),
    "so101": ("feetech", tuple(ServoSlot(j, i + 1, "sts3215", 12.0, _STS_12V) for i, j in enumerate(SO_JOINTS))),
    "so100-leader": ("feetech", tuple(ServoSlot(j, i + 1, "sts3215", 5.0, _STS_7V4) for i, j in enumerate(SO_JOINTS))),
    "so101-leader": ("feetech", tuple(ServoSlot(j, i + 1, "sts3215", 5.0, _STS_7V4) for i, j in enumerate(SO_JOINTS))),
    "koch-follower": (
        "dynamixel",
        tuple(
            ServoSlot(j, i + 1, "xl430-w250" if i < 2 else "xl330-m288", 12.0 if i < 2 else 5.0)
            for i, j in enumerate(KOCH_JOINTS)
        ),
    ),
    "koch-leader": ("dynamixel", tuple(ServoSlot(j, i + 1, "xl330-m077", 5.0) for i, j in enumerate(KOCH_JOINTS))),
}


def arm_protocol(arm: str) -> str:
    try:
        return ARMS[arm][0]
    except KeyError:
        raise ValueError(f"unknown arm {arm!r}; choose one of {', '.join(ARMS)}") from None


def build_servo(protocol: str, slot: ServoSlot, *, actuator=None, initial_position: int = 2048, baudrate: int = 1_000_000):
    """One servo as it leaves motor setup: its ID set, the bus baud rate set, the rest at factory defaults."""
    env = ServoEnvironment(supply_voltage_v=slot.supply_voltage_v)
    if protocol == "feetech":
        from lerobot_vla_plugin.motors.feetech.tables import MODELS

        from .feetech import FeetechServo

        spec = MODELS[slot.model]
        servo = FeetechServo(slot.servo_id, spec, actuator=actuator, environment=env, initial_position=initial_position)
        if slot.voltage_limits_tenths is not None:
            servo.memory.set_raw("Min_Voltage_Limit", slot.voltage_limits_tenths[0], persist=True)
            servo.memory.set_raw("Max_Voltage_Limit", slot.voltage_limits_tenths[1], persist=True)
    else:
        from lerobot_vla_plugin.motors.dynamixel.tables import MODELS

        from .dynamixel import DynamixelServo

        spec = MODELS[slot.model]
        servo = DynamixelServo(slot.servo_id, spec, actuator=actuator, environment=env, initial_position=initial_position)
    index = {baud: idx for idx, baud in spec.baudrates.items()}[baudrate]
    servo.memory.set_raw("Baud_Rate", index, persist=True)
    return servo


def build_arm_logic(arm: str, *, initial_positions: dict[str, int] | None = None, actuators: dict | None = None):
    protocol, slots = ARMS[arm] if arm in ARMS else (arm_protocol(arm), ())
    initial_positions = initial_positions or {}
    actuators = actuators or {}
    servos = [
        build_servo(protocol, slot, actuator=actuators.get(slot.joint),
                    initial_position=initial_positions.get(slot.joint, 2048))
        for slot in slots
    ]
    if protocol == "feetech":
        from .feetech import FeetechBusLogic

        return FeetechBusLogic(servos)
    from .dynamixel import DynamixelBusLogic

    return DynamixelBusLogic(servos)
