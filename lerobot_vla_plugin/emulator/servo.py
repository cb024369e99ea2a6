"""Vendor-neutral servo state: the control-table memory, the motor's motion, heat and load, latched faults.

Vendor modules (feetech.py, dynamixel.py) add the register semantics and the instruction handling on top.
Positions here are the motor's *actual* encoder steps; each vendor maps them to Present_Position through its
own homing rule. Motion can come from the built-in first-order model below or from a physics backend that
implements the same small `Actuator` protocol (the MuJoCo arm does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol


class Actuator(Protocol):
    """What a servo needs from whatever moves its output shaft."""

    def set_goal(self, actual_steps: float, max_speed_steps_s: float, acceleration_steps_s2: float) -> None: ...
    def set_torque(self, enabled: bool) -> None: ...
    def advance(self, now_s: float) -> None: ...
    @property
    def position_steps(self) -> float: ...
    @property
    def velocity_steps_s(self) -> float: ...
    @property
    def load_fraction(self) -> float: ...  # signed, 1.0 = stall torque


@dataclass
class ServoMotion:
    """Trapezoidal goal-following with speed and acceleration limits, plus a hand that can move a limp shaft.

    `external_load_fraction` lets tests (and the physics backend) push on the shaft; `hand_position_steps`
    moves the shaft while torque is off, the way a person moves a leader arm.
    """

    position_steps: float = 2048.0
    velocity_steps_s: float = 0.0
    goal_steps: float = 2048.0
    max_speed_steps_s: float = 3000.0
    acceleration_steps_s2: float = 25_000.0
    torque_enabled: bool = False
    external_load_fraction: float = 0.0
    hand_position_steps: float | None = None
    stiffness_per_step: float = 1.0 / 300.0  # load fraction per step of tracking error (saturates at 1)
    _last_s: float | None = None

    def set_goal(self, actual_steps: float, max_speed_steps_s: float, acceleration_steps_s2: float) -> None:
        self.goal_steps = actual_steps
        self.max_speed_steps_s = max_speed_steps_s
        self.acceleration_steps_s2 = acceleration_steps_s2

    def set_torque(self, enabled: bool) -> None:
        self.torque_enabled = enabled
        if not enabled:
            self.velocity_steps_s = 0.0

    def advance(self, now_s: float) -> None:
        if self._last_s is None:
            self._last_s = now_s
            return
        dt = now_s - self._last_s
        self._last_s = now_s
        if dt <= 0:
            return
        if not self.torque_enabled:
            if self.hand_position_steps is not None:
                previous = self.position_steps
                self.position_steps = self.hand_position_steps
                self.velocity_steps_s = (self.position_steps - previous) / dt
            else:
                self.velocity_steps_s = 0.0
            return
        error = self.goal_steps - self.position_steps
        # Speed that still allows stopping at the goal, capped by the speed limit.
        stopping_speed = math.sqrt(2.0 * self.acceleration_steps_s2 * abs(error))
        target_speed = math.copysign(min(self.max_speed_steps_s, stopping_speed), error)
        dv = target_speed - self.velocity_steps_s
        max_dv = self.acceleration_steps_s2 * dt
        self.velocity_steps_s += max(-max_dv, min(max_dv, dv))
        step = self.velocity_steps_s * dt
        if abs(step) >= abs(error):
            self.position_steps = self.goal_steps
            self.velocity_steps_s = 0.0
        else:
            self.position_steps += step

    @property
    def load_fraction(self) -> float:
        if not self.torque_enabled:
            return self.external_load_fraction
        tracking = (self.goal_steps - self.position_steps) * self.stiffness_per_step
        return max(-1.0, min(1.0, tracking + self.external_load_fraction))


@dataclass
class Thermal:
    """First-order motor heating: heat ∝ load², cooling ∝ temperature above ambient."""

    temperature_c: float = 28.0
    ambient_c: float = 28.0
    heating_c_per_s_at_stall: float = 1.5
    cooling_time_constant_s: float = 300.0

    def advance(self, dt_s: float, load_fraction: float) -> None:
        if dt_s <= 0:
            return
        heating = self.heating_c_per_s_at_stall * load_fraction * load_fraction
        cooling = (self.temperature_c - self.ambient_c) / self.cooling_time_constant_s
        self.temperature_c += (heating - cooling) * dt_s

    def rest(self) -> None:
        """Back at ambient temperature: what a long enough rest does (the cooling time constant is minutes)."""
        self.temperature_c = self.ambient_c


@dataclass
class ServoFaults:
    """Per-servo fault injection: silence, latched error bits, a forced supply voltage."""

    silent: bool = False
    latched_error_bits: int = 0
    supply_voltage_v: float | None = None


@dataclass
class ServoEnvironment:
    supply_voltage_v: float = 12.0
    faults: ServoFaults = field(default_factory=ServoFaults)


class ControlTableMemory:
    """A servo's control table as bytes, with the register map that gives them names.

    `read_only` addresses ignore writes with a vendor-specific error; `eeprom` addresses are also kept in a
    persisted image that survives reboot only when the vendor's rules allow the write to be saved.
    """

    def __init__(self, size: int, registers, *, big_endian: bool = False):
        self.data = bytearray(size)
        self.registers = {r.name: r for r in registers}
        self._by_address = {r.address: r for r in registers}
        self.big_endian = big_endian
        self.persisted = bytearray(size)

    def register(self, name: str):
        return self.registers[name]

    def get_raw(self, name: str) -> int:
        reg = self.registers[name]
        chunk = self.data[reg.address : reg.address + reg.size]
        return int.from_bytes(chunk, "big" if self.big_endian else "little")

    def set_raw(self, name: str, raw: int, *, persist: bool = False) -> None:
        reg = self.registers[name]
        raw &= (1 << (8 * reg.size)) - 1
        encoded = raw.to_bytes(reg.size, "big" if self.big_endian else "little")
        self.data[reg.address : reg.address + reg.size] = encoded
        if persist:
            self.persisted[reg.address : reg.address + reg.size] = encoded

    def has(self, name: str) -> bool:
        return name in self.registers

    def register_at(self, address: int):
        return self._by_address.get(address)

    def covered(self, address: int, length: int) -> list:
        """Registers overlapping [address, address+length), in address order."""
        end = address + length
        return sorted(
            (r for r in self.registers.values() if r.address < end and address < r.address + r.size),
            key=lambda r: r.address,
        )
