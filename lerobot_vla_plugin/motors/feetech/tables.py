"""Feetech control tables: register layout, access rights and factory defaults per servo model.

One description per model serves three readers: the bus driver (addresses, sizes, sign bits), the emulator
(defaults, EEPROM vs RAM, read-only registers) and LeRobot, whose table shapes are derived at the bottom of this
module. Register names are LeRobot's, spelling included, so LeRobot-shaped tables come out identical.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Register:
    """One control-table entry. ``eeprom`` registers survive power cycles and obey Lock; ``writable`` is False for
    read-only ones. ``sign_bit`` marks Feetech's sign-magnitude encoding; ``default`` is the power-up value."""

    name: str
    address: int
    size: int
    eeprom: bool
    writable: bool
    default: int = 0
    sign_bit: int | None = None


@dataclass(frozen=True, eq=False)  # identity equality: one spec per model, and the mappings are unhashable
class ModelSpec:
    name: str
    model_number: int
    resolution: int
    big_endian: bool
    registers: Mapping[str, Register]
    baudrates: Mapping[int, int]  # Baud_Rate register value -> bits per second
    firmware: tuple[int, int]  # (major, minor) reported by emulated servos
    lock_address: int
    # Extra names LeRobot uses for the same register (alias -> canonical name).
    aliases: Mapping[str, str] = field(default_factory=dict)
    _by_address: Mapping[int, Register] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "registers", MappingProxyType(dict(self.registers)))
        object.__setattr__(self, "baudrates", MappingProxyType(dict(self.baudrates)))
        object.__setattr__(self, "aliases", MappingProxyType(dict(self.aliases)))
        by_address = {register.address: register for register in self.registers.values()}
        object.__setattr__(self, "_by_address", MappingProxyType(by_address))

    def register(self, name: str) -> Register:
        """Look a register up by its LeRobot name or alias; the error lists the closest valid names."""
        register = self.registers.get(name)
        if register is not None:
            return register
        canonical = self.aliases.get(name)
        if canonical is not None:
            return self.registers[canonical]
        known = [*self.registers, *self.aliases]
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        hint = f"Did you mean {', '.join(close)}?" if close else f"Known names: {', '.join(sorted(known))}."
        raise KeyError(f"{self.name} has no register named {name!r}. {hint}")

    def register_at(self, address: int) -> Register | None:
        """The register that starts at ``address``, or None (inside a multi-byte register, or unused)."""
        return self._by_address.get(address)

    @property
    def memory_size(self) -> int:
        """Bytes needed to hold the whole control table (address 0 up to the end of the last register)."""
        return max(register.address + register.size for register in self.registers.values())

    def default_memory(self, servo_id: int | None = None) -> bytearray:
        """A factory-fresh control-table image (what a new servo holds after power-up), optionally with its id set."""
        memory = bytearray(self.memory_size)
        order = "big" if self.big_endian else "little"
        for register in self.registers.values():
            raw = register.default
            if register.sign_bit is not None and raw < 0:
                raw = (1 << register.sign_bit) | -raw
            memory[register.address : register.address + register.size] = raw.to_bytes(register.size, order)
        if servo_id is not None:
            memory[self.register("ID").address] = servo_id
        return memory


def _registers(rows: Iterable[tuple], *, eeprom_end: int) -> dict[str, Register]:
    """Build registers from ``(name, address, size, access, default[, sign_bit])`` rows; access is "rw" or "r"."""
    registers = {}
    for name, address, size, access, default, *sign in rows:
        registers[name] = Register(
            name=name,
            address=address,
            size=size,
            eeprom=address < eeprom_end,
            writable=access == "rw",
            default=default,
            sign_bit=sign[0] if sign else None,
        )
    return registers


# Feetech's own baud table. LeRobot's differs for 5..7 (57600/38400/19200); every Feetech source says otherwise.
FEETECH_BAUDRATES = {0: 1_000_000, 1: 500_000, 2: 250_000, 3: 128_000, 4: 115_200, 5: 76_800, 6: 57_600, 7: 38_400}

_STS_EEPROM_END = 40  # addresses below 40 persist across power cycles
_STS_FIRMWARE = (3, 10)

# fmt: off
# name, address, size, access, default[, sign bit]. Defaults: STS3215 (7.4 V) firmware 3.10 after power-up.
_STS_ROWS = [
    # EEPROM
    ("Firmware_Major_Version", 0, 1, "r", _STS_FIRMWARE[0]),
    ("Firmware_Minor_Version", 1, 1, "r", _STS_FIRMWARE[1]),
    ("END", 2, 1, "r", 0),  # 0 = little-endian byte order (secondary)
    ("Model_Number", 3, 2, "r", 777),
    ("ID", 5, 1, "rw", 1),
    ("Baud_Rate", 6, 1, "rw", 0),
    ("Return_Delay_Time", 7, 1, "rw", 0),
    ("Response_Status_Level", 8, 1, "rw", 1),
    ("Min_Position_Limit", 9, 2, "rw", 0),
    ("Max_Position_Limit", 11, 2, "rw", 4095),
    ("Max_Temperature_Limit", 13, 1, "rw", 70),
    ("Max_Voltage_Limit", 14, 1, "rw", 80),  # 8.0 V on the 7.4 V variant (secondary; 12 V variants differ)
    ("Min_Voltage_Limit", 15, 1, "rw", 40),  # 4.0 V (secondary)
    ("Max_Torque_Limit", 16, 2, "rw", 1000),
    ("Phase", 18, 1, "rw", 12),
    ("Unloading_Condition", 19, 1, "rw", 44),  # overheat | overcurrent | overload (secondary)
    ("LED_Alarm_Condition", 20, 1, "rw", 47),  # secondary
    ("P_Coefficient", 21, 1, "rw", 32),
    ("D_Coefficient", 22, 1, "rw", 32),
    ("I_Coefficient", 23, 1, "rw", 0),
    ("Minimum_Startup_Force", 24, 2, "rw", 16),  # secondary
    ("CW_Dead_Zone", 26, 1, "rw", 1),  # secondary
    ("CCW_Dead_Zone", 27, 1, "rw", 1),  # secondary
    ("Protection_Current", 28, 2, "rw", 500),  # secondary
    ("Angular_Resolution", 30, 1, "rw", 1),  # secondary
    ("Homing_Offset", 31, 2, "rw", 0, 11),
    ("Operating_Mode", 33, 1, "rw", 0),
    ("Protective_Torque", 34, 1, "rw", 20),  # secondary
    ("Protection_Time", 35, 1, "rw", 200),  # secondary
    ("Overload_Torque", 36, 1, "rw", 80),  # secondary
    ("Velocity_closed_loop_P_proportional_coefficient", 37, 1, "rw", 10),  # plausible guess
    ("Over_Current_Protection_Time", 38, 1, "rw", 200),  # secondary
    ("Velocity_closed_loop_I_integral_coefficient", 39, 1, "rw", 200),  # plausible guess
    # RAM (volatile)
    ("Torque_Enable", 40, 1, "rw", 0),
    ("Acceleration", 41, 1, "rw", 0),
    ("Goal_Position", 42, 2, "rw", 0, 15),
    ("Goal_Time", 44, 2, "rw", 0),
    ("Goal_Velocity", 46, 2, "rw", 0, 15),
    ("Torque_Limit", 48, 2, "rw", 1000),  # copied from Max_Torque_Limit at power-up
    ("Lock", 55, 1, "rw", 1),
    ("Present_Position", 56, 2, "r", 0, 15),
    ("Present_Velocity", 58, 2, "r", 0, 15),
    ("Present_Load", 60, 2, "r", 0, 10),
    ("Present_Voltage", 62, 1, "r", 74),  # idle reading on a 7.4 V supply; an emulator overwrites it
    ("Present_Temperature", 63, 1, "r", 25),  # room temperature; an emulator overwrites it
    ("Async_Write_Flag", 64, 1, "r", 0),  # 1 while a REG_WRITE waits for ACTION
    ("Status", 65, 1, "r", 0),
    ("Moving", 66, 1, "r", 0),
    ("Present_Current", 69, 2, "r", 0),
    ("Goal_Position_2", 71, 2, "r", 0),
    # Factory area: undocumented by Feetech for users; defaults are plausible guesses.
    ("Moving_Velocity_Threshold", 80, 1, "rw", 2),
    ("DTs", 81, 1, "rw", 32),
    ("Velocity_Unit_factor", 82, 1, "rw", 50),
    ("Hts", 83, 1, "rw", 0),
    ("Maximum_Velocity_Limit", 84, 1, "rw", 254),
    ("Maximum_Acceleration", 85, 1, "rw", 100),
    ("Acceleration_Multiplier", 86, 1, "rw", 0),
]

_STS_ALIASES = {
    "Moving_Velocity": "Moving_Velocity_Threshold",
    "Acceleration_Multiplier ": "Acceleration_Multiplier",  # LeRobot's spelling has a trailing space
    "Goal_Speed": "Goal_Velocity",
    "Present_Speed": "Present_Velocity",
}

# SCS (potentiometer) series: big-endian, 1024 steps, Lock at 48, no sign-magnitude registers in LeRobot's view.
# Defaults are those of an SCS0009 as far as known; the rest are plausible guesses.
_SCS_EEPROM_END = 40
_SCS_FIRMWARE = (1, 5)  # plausible guess
_SCS_ROWS = [
    ("Firmware_Major_Version", 0, 1, "r", _SCS_FIRMWARE[0]),
    ("Firmware_Minor_Version", 1, 1, "r", _SCS_FIRMWARE[1]),
    ("END", 2, 1, "r", 1),  # 1 = big-endian byte order (secondary)
    ("Model_Number", 3, 2, "r", 1284),
    ("ID", 5, 1, "rw", 1),
    ("Baud_Rate", 6, 1, "rw", 0),
    ("Return_Delay_Time", 7, 1, "rw", 0),
    ("Response_Status_Level", 8, 1, "rw", 1),
    ("Min_Position_Limit", 9, 2, "rw", 0),
    ("Max_Position_Limit", 11, 2, "rw", 1023),
    ("Max_Temperature_Limit", 13, 1, "rw", 70),
    ("Max_Voltage_Limit", 14, 1, "rw", 80),
    ("Min_Voltage_Limit", 15, 1, "rw", 40),
    ("Max_Torque_Limit", 16, 2, "rw", 1000),
    ("Phase", 18, 1, "rw", 0),
    ("Unloading_Condition", 19, 1, "rw", 37),
    ("LED_Alarm_Condition", 20, 1, "rw", 37),
    ("P_Coefficient", 21, 1, "rw", 15),
    ("D_Coefficient", 22, 1, "rw", 0),
    ("I_Coefficient", 23, 1, "rw", 0),
    ("Minimum_Startup_Force", 24, 2, "rw", 0),
    ("CW_Dead_Zone", 26, 1, "rw", 1),
    ("CCW_Dead_Zone", 27, 1, "rw", 1),
    ("Protective_Torque", 37, 1, "rw", 20),
    ("Protection_Time", 38, 1, "rw", 200),
    ("Torque_Enable", 40, 1, "rw", 0),
    ("Acceleration", 41, 1, "rw", 0),
    ("Goal_Position", 42, 2, "rw", 0),
    ("Running_Time", 44, 2, "rw", 0),
    ("Goal_Velocity", 46, 2, "rw", 0),
    ("Lock", 48, 1, "rw", 1),
    ("Present_Position", 56, 2, "r", 0),
    ("Present_Velocity", 58, 2, "r", 0),
    ("Present_Load", 60, 2, "r", 0),
    ("Present_Voltage", 62, 1, "r", 50),  # idle reading on a 5 V supply; an emulator overwrites it
    ("Present_Temperature", 63, 1, "r", 25),
    ("Sync_Write_Flag", 64, 1, "r", 0),
    ("Status", 65, 1, "r", 0),
    ("Moving", 66, 1, "r", 0),
    ("PWM_Maximum_Step", 78, 1, "rw", 0),
    ("Moving_Velocity_Threshold*50", 79, 1, "rw", 0),
    ("DTs", 80, 1, "rw", 0),
    ("Minimum_Velocity_Limit*50", 81, 1, "rw", 0),
    ("Maximum_Velocity_Limit*50", 82, 1, "rw", 0),
    ("Acceleration_2", 83, 1, "rw", 0),
]
# fmt: on


def _sts_like(name: str, model_number: int) -> ModelSpec:
    registers = _registers(_STS_ROWS, eeprom_end=_STS_EEPROM_END)
    model = registers["Model_Number"]
    registers["Model_Number"] = Register(model.name, model.address, model.size, model.eeprom, False, model_number)
    return ModelSpec(
        name=name,
        model_number=model_number,
        resolution=4096,
        big_endian=False,
        registers=registers,
        baudrates=FEETECH_BAUDRATES,
        firmware=_STS_FIRMWARE,
        lock_address=registers["Lock"].address,
        aliases=_STS_ALIASES,
    )


def _scs0009() -> ModelSpec:
    registers = _registers(_SCS_ROWS, eeprom_end=_SCS_EEPROM_END)
    return ModelSpec(
        name="scs0009",
        model_number=1284,
        resolution=1024,
        big_endian=True,
        registers=registers,
        baudrates=FEETECH_BAUDRATES,
        firmware=_SCS_FIRMWARE,
        lock_address=registers["Lock"].address,
    )


# sts3250 and sm8512bl share the STS/SMS register layout; their defaults here are the STS3215 ones.
MODELS: dict[str, ModelSpec] = {
    "sts3215": _sts_like("sts3215", 777),
    "sts3250": _sts_like("sts3250", 2825),
    "sm8512bl": _sts_like("sm8512bl", 11272),
    "scs0009": _scs0009(),
}
MODEL_BY_NUMBER: dict[int, ModelSpec] = {spec.model_number: spec for spec in MODELS.values()}

# Rates a host can actually set with the serial drivers in use (76,800 is not among them).
SCAN_BAUDRATES: list[int] = [
    4_800, 9_600, 14_400, 19_200, 38_400, 57_600, 115_200, 128_000, 250_000, 500_000, 1_000_000,
]  # fmt: skip


# --- LeRobot-shaped views (same shapes as lerobot.motors.feetech.tables) -----------------------------------------


def _control_table(spec: ModelSpec) -> dict[str, tuple[int, int]]:
    table = {name: (register.address, register.size) for name, register in spec.registers.items()}
    for alias, canonical in spec.aliases.items():
        register = spec.registers[canonical]
        table[alias] = (register.address, register.size)
    return table


def _encoding_table(spec: ModelSpec) -> dict[str, int]:
    table = {name: register.sign_bit for name, register in spec.registers.items() if register.sign_bit is not None}
    for alias, canonical in spec.aliases.items():
        sign_bit = spec.registers[canonical].sign_bit
        if sign_bit is not None:
            table[alias] = sign_bit
    return table


# LeRobot also keys its tables by series name; each series maps to its representative model.
_SERIES = {"sts_series": "sts3215", "sms_series": "sm8512bl", "scs_series": "scs0009"}
_VIEW_SPECS: dict[str, ModelSpec] = {**MODELS, **{series: MODELS[model] for series, model in _SERIES.items()}}

MODEL_CONTROL_TABLE: dict[str, dict[str, tuple[int, int]]] = {
    name: _control_table(spec) for name, spec in _VIEW_SPECS.items()
}
MODEL_NUMBER_TABLE: dict[str, int] = {name: spec.model_number for name, spec in MODELS.items()}
MODEL_RESOLUTION: dict[str, int] = {name: spec.resolution for name, spec in _VIEW_SPECS.items()}
MODEL_BAUDRATE_TABLE: dict[str, dict[int, int]] = {
    name: {baudrate: index for index, baudrate in spec.baudrates.items()} for name, spec in _VIEW_SPECS.items()
}
MODEL_ENCODING_TABLE: dict[str, dict[str, int]] = {name: _encoding_table(spec) for name, spec in _VIEW_SPECS.items()}
# LeRobot's "protocol" number is only the byte order: 0 = little-endian STS/SMS, 1 = big-endian SCS.
MODEL_PROTOCOL: dict[str, int] = {name: int(spec.big_endian) for name, spec in _VIEW_SPECS.items()}
