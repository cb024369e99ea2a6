"""Servo health during operation: warn early, and tell the follower when it must take torque off.

Two sources, both cheap. Every reply a servo sends carries its error bits, so each control tick already knows
about overload/overheat (`bus.status_errors`, no extra transfer). Temperature, load and voltage need a read,
done at a low rate (`check_period_s`). STS3215s keep pushing a blocked gripper until they burn; LeRobot never
reads these registers during operation.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from .definitions import SupplyRange

logger = logging.getLogger(__name__)

# Error words (from the bus decoders) that mean the servo must not stay torqued.
_FATAL_WORDS = ("overload", "overheat", "overcurrent", "angle sensor", "electrical shock", "motor encoder")
_DYNAMIXEL_ALERT = "hardware alert"


class SafetyStop(RuntimeError):
    """Raised after a follower took torque off because of a servo fault; the message names the servo."""

    def __init__(self, message: str, motor: str | None = None, silent: bool = False):
        super().__init__(message)
        self.motor = motor
        self.silent = silent  # the servo stopped answering (link or power), rather than reporting a fault itself


@dataclass(frozen=True)
class HealthLimits:
    check_period_s: float = 1.0
    temperature_warn_c: float = 55.0
    temperature_stop_c: float = 65.0
    load_warn_percent: float = 80.0
    silent_checks_before_stop: int = 2

    def __post_init__(self) -> None:
        for name in ("check_period_s", "temperature_warn_c", "temperature_stop_c", "load_warn_percent"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.temperature_warn_c >= self.temperature_stop_c:
            raise ValueError("temperature_warn_c must be below temperature_stop_c")


class HealthMonitor:
    """Decides, from what the bus saw, whether to warn or to stop. It never touches torque itself."""

    def __init__(self, bus, limits: HealthLimits, supplies: dict[str, SupplyRange], *, arm_name: str,
                 clock=time.perf_counter):
        self.bus = bus
        self.limits = limits
        self.supplies = supplies
        self.arm_name = arm_name
        self.clock = clock
        self._next_check_s = clock() + limits.check_period_s
        self._silent_counts: dict[str, int] = {}
        self._last_warning_s: dict[tuple[str, str], float] = {}
        self.checks = 0

    def _warn(self, motor: str, kind: str, message: str, *args) -> None:
        now = self.clock()
        if now - self._last_warning_s.get((motor, kind), -math.inf) >= 10.0:
            self._last_warning_s[(motor, kind)] = now
            logger.warning(message, *args)

    def _describe(self, motor: str) -> str:
        return f"servo '{motor}' (id {self.bus.motors[motor].id}) on {self.arm_name} ({self.bus.port})"

    def fatal_from_status(self) -> tuple[str, str] | None:
        """(motor, reason) if a reply in the last transfer reported a fault that requires torque off."""
        errors = self.bus.status_errors
        if not errors:
            return None
        for motor, words in errors.items():
            if any(w.startswith(_DYNAMIXEL_ALERT) for w in words):
                # Dynamixel only says "something is latched": read which error it is.
                found = self.check_now(motors=[motor])
                if found:
                    return found
                continue
            fatal = [w for w in words if w.startswith(_FATAL_WORDS)]
            if fatal:
                return motor, ", ".join(fatal)
            self._warn(motor, "status", "%s reports %s.", self._describe(motor), ", ".join(words))
        return None

    def due(self) -> bool:
        return self.clock() >= self._next_check_s

    def check_now(self, motors=None) -> tuple[str, str] | None:
        """Read temperature, voltage, load and error registers; (motor, reason) when torque must go off."""
        self._next_check_s = self.clock() + self.limits.check_period_s
        self.checks += 1
        health = self.bus.read_health(motors)
        limits = self.limits
        for motor, h in health.items():
            if not h.responded:
                count = self._silent_counts.get(motor, 0) + 1
                self._silent_counts[motor] = count
                if count >= limits.silent_checks_before_stop:
                    return motor, f"stopped answering ({count} health checks in a row)"
                self._warn(motor, "silent", "%s did not answer a health check.", self._describe(motor))
                continue
            self._silent_counts.pop(motor, None)
            fatal = [w for w in h.errors if w.startswith(_FATAL_WORDS)]
            if fatal:
                return motor, ", ".join(fatal)
            if h.temperature_c is not None and h.temperature_c >= limits.temperature_stop_c:
                return motor, f"overheating at {h.temperature_c:.0f} °C (limit {limits.temperature_stop_c:.0f} °C)"
            if h.temperature_c is not None and h.temperature_c >= limits.temperature_warn_c:
                self._warn(motor, "temperature", "%s is at %.0f °C (stops at %.0f °C): reduce the load it holds.",
                           self._describe(motor), h.temperature_c, limits.temperature_stop_c)
            if h.load_percent is not None and abs(h.load_percent) >= limits.load_warn_percent:
                self._warn(motor, "load", "%s works at %.0f%% load: the joint may be blocked or overloaded.",
                           self._describe(motor), abs(h.load_percent))
            supply = self.supplies.get(motor)
            if supply and h.voltage_v is not None and not supply.min_v <= h.voltage_v <= supply.max_v:
                self._warn(motor, "voltage", "%s sees %.1f V (expected %.1f-%.1f V). %s", self._describe(motor),
                           h.voltage_v, supply.min_v, supply.max_v, supply.advice)
            other = [w for w in h.errors if not w.startswith(_FATAL_WORDS)]
            if other:
                self._warn(motor, "errors", "%s reports %s.", self._describe(motor), ", ".join(other))
        return None
