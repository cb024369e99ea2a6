"""The servo chains of the arms we register, as LeRobot 0.4.4 defines them (same ids, models and units).

Feature names and units must match LeRobot's SO/Koch arms so that datasets recorded with either are
interchangeable: `<joint>.pos`, degrees (SO, `use_degrees=True`) or -100..100 (Koch), gripper 0..100.
"""

from __future__ import annotations

from dataclasses import dataclass

from lerobot.motors.motors_bus import Motor, MotorNormMode

from .config import JOINTS


@dataclass(frozen=True)
class SupplyRange:
    """Supply voltages a servo chain is built for; outside it the servos brown out or get damaged."""

    min_v: float
    max_v: float
    advice: str


# 7.4 V STS3215 (all leaders, optionally followers) run on 5 V; the 12 V variant needs 12 V.
SO_LEADER_SUPPLY = SupplyRange(4.5, 8.4, "SO leaders use 7.4 V servos: power them from the 5 V supply, not 12 V.")
SO_FOLLOWER_SUPPLY = SupplyRange(4.5, 13.0, "Use the supply that matches the servo variant (5 V for 7.4 V "
                                           "servos, 12 V for 12 V servos).")
KOCH_XL330_SUPPLY = SupplyRange(3.7, 6.0, "XL330 servos take 5 V: feed them from the 5 V supply or buck converter.")
KOCH_XL430_SUPPLY = SupplyRange(6.5, 12.6, "XL430 servos need the 12 V supply.")


def so_motors(use_degrees: bool = True) -> dict[str, Motor]:
    body = MotorNormMode.DEGREES if use_degrees else MotorNormMode.RANGE_M100_100
    return {
        joint: Motor(i + 1, "sts3215", MotorNormMode.RANGE_0_100 if joint == "gripper" else body)
        for i, joint in enumerate(JOINTS)
    }


def koch_follower_motors(use_degrees: bool = False) -> dict[str, Motor]:
    body = MotorNormMode.DEGREES if use_degrees else MotorNormMode.RANGE_M100_100
    models = ("xl430-w250", "xl430-w250", "xl330-m288", "xl330-m288", "xl330-m288", "xl330-m288")
    return {
        joint: Motor(i + 1, models[i], MotorNormMode.RANGE_0_100 if joint == "gripper" else body)
        for i, joint in enumerate(JOINTS)
    }


def koch_leader_motors() -> dict[str, Motor]:
    return {
        joint: Motor(i + 1, "xl330-m077",
                     MotorNormMode.RANGE_0_100 if joint == "gripper" else MotorNormMode.RANGE_M100_100)
        for i, joint in enumerate(JOINTS)
    }


def supply_for(model: str, role: str) -> SupplyRange:
    """The supply a servo of `model` should see in an arm with `role` ("follower" or "leader")."""
    if model == "sts3215":
        return SO_LEADER_SUPPLY if role == "leader" else SO_FOLLOWER_SUPPLY
    if model.startswith("xl330"):
        return KOCH_XL330_SUPPLY
    return KOCH_XL430_SUPPLY
