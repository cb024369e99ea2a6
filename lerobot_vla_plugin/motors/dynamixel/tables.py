"""Dynamixel X-series control tables, one `ModelSpec` per model, plus LeRobot-shaped views derived from them.

Register names and addresses follow LeRobot's ``X_SERIES_CONTROL_TABLE`` so that code written against
LeRobot's `DynamixelMotorsBus` keeps working. Unlike LeRobot, which gives every model the same table, the
tables here say what each model really has, so a driver or the emulator can refuse what the servo would:

* no model here has ``Acceleration_Limit`` (40); the servos answer an Access Error;
* XL430-W250 and XC430-W150 have no current sensing: no ``Current_Limit``/``Goal_Current``, and address 126
  is ``Present_Load`` (0.1 % of the maximum torque), not ``Present_Current``;
* ``PWM_Slope`` exists on the XL330 models only; ``Startup_Configuration`` and ``Backup_Ready`` are added.

Defaults of XL330-M288, XL330-M077 and XL430-W250 come from the ROBOTIS e-manual. XM430-W350, XM540-W270 and
XC430-W150 use the same layout with approximate defaults, good enough for emulation.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType

EEPROM_END = 64  # addresses below this are EEPROM: writable only while Torque_Enable is 0


class OperatingMode(IntEnum):
    CURRENT = 0
    VELOCITY = 1
    POSITION = 3
    EXTENDED_POSITION = 4
    CURRENT_POSITION = 5
    PWM = 16


@dataclass(frozen=True, slots=True)
class Register:
    """One control-table entry. `minimum`/`maximum` are the static range the servo accepts (None: any)."""

    name: str
    address: int
    size: int
    eeprom: bool
    writable: bool
    default: int = 0
    signed: bool = False
    minimum: int | None = None
    maximum: int | None = None

    @property
    def end(self) -> int:
        """First address after this register."""
        return self.address + self.size


# Names LeRobot treats as two's complement, plus Present_Load which is signed (±1000) as well.
SIGNED_REGISTERS = frozenset(
    {
        "Homing_Offset",
        "Goal_PWM",
        "Goal_Current",
        "Goal_Velocity",
        "Goal_Position",
        "Present_PWM",
        "Present_Current",
        "Present_Load",
        "Present_Velocity",
        "Present_Position",
    }
)

# (name, address, size, writable). Registers that only some models have are filtered per model below.
_X_SERIES_LAYOUT: tuple[tuple[str, int, int, bool], ...] = (
    ("Model_Number", 0, 2, False),
    ("Model_Information", 2, 4, False),
    ("Firmware_Version", 6, 1, False),
    ("ID", 7, 1, True),
    ("Baud_Rate", 8, 1, True),
    ("Return_Delay_Time", 9, 1, True),
    ("Drive_Mode", 10, 1, True),
    ("Operating_Mode", 11, 1, True),
    ("Secondary_ID", 12, 1, True),
    ("Protocol_Type", 13, 1, True),
    ("Homing_Offset", 20, 4, True),
    ("Moving_Threshold", 24, 4, True),
    ("Temperature_Limit", 31, 1, True),
    ("Max_Voltage_Limit", 32, 2, True),
    ("Min_Voltage_Limit", 34, 2, True),
    ("PWM_Limit", 36, 2, True),
    ("Current_Limit", 38, 2, True),
    ("Velocity_Limit", 44, 4, True),
    ("Max_Position_Limit", 48, 4, True),
    ("Min_Position_Limit", 52, 4, True),
    ("Startup_Configuration", 60, 1, True),
    ("PWM_Slope", 62, 1, True),
    ("Shutdown", 63, 1, True),
    ("Torque_Enable", 64, 1, True),
    ("LED", 65, 1, True),
    ("Status_Return_Level", 68, 1, True),
    ("Registered_Instruction", 69, 1, False),
    ("Hardware_Error_Status", 70, 1, False),
    ("Velocity_I_Gain", 76, 2, True),
    ("Velocity_P_Gain", 78, 2, True),
    ("Position_D_Gain", 80, 2, True),
    ("Position_I_Gain", 82, 2, True),
    ("Position_P_Gain", 84, 2, True),
    ("Feedforward_2nd_Gain", 88, 2, True),
    ("Feedforward_1st_Gain", 90, 2, True),
    ("Bus_Watchdog", 98, 1, True),
    ("Goal_PWM", 100, 2, True),
    ("Goal_Current", 102, 2, True),
    ("Goal_Velocity", 104, 4, True),
    ("Profile_Acceleration", 108, 4, True),
    ("Profile_Velocity", 112, 4, True),
    ("Goal_Position", 116, 4, True),
    ("Realtime_Tick", 120, 2, False),
    ("Moving", 122, 1, False),
    ("Moving_Status", 123, 1, False),
    ("Present_PWM", 124, 2, False),
    ("Present_Current", 126, 2, False),
    ("Present_Velocity", 128, 4, False),
    ("Present_Position", 132, 4, False),
    ("Velocity_Trajectory", 136, 4, False),
    ("Position_Trajectory", 140, 4, False),
    ("Present_Input_Voltage", 144, 2, False),
    ("Present_Temperature", 146, 1, False),
    ("Backup_Ready", 147, 1, False),
)

_GAIN_RANGE = (0, 16383)
_POSITION_RANGE = (0, 4095)
_PROFILE_RANGE = (0, 32767)

# Static ranges shared by every model here; model-specific ones are added in `_build_registers`.
_COMMON_RANGES: dict[str, tuple[int, int]] = {
    "ID": (0, 252),
    "Return_Delay_Time": (0, 254),
    "Homing_Offset": (-1_044_479, 1_044_479),
    "Temperature_Limit": (0, 100),
    "PWM_Limit": (0, 885),
    "Max_Position_Limit": _POSITION_RANGE,
    "Min_Position_Limit": _POSITION_RANGE,
    "Torque_Enable": (0, 1),
    "LED": (0, 1),
    "Status_Return_Level": (0, 2),
    "Velocity_I_Gain": _GAIN_RANGE,
    "Velocity_P_Gain": _GAIN_RANGE,
    "Position_D_Gain": _GAIN_RANGE,
    "Position_I_Gain": _GAIN_RANGE,
    "Position_P_Gain": _GAIN_RANGE,
    "Feedforward_2nd_Gain": _GAIN_RANGE,
    "Feedforward_1st_Gain": _GAIN_RANGE,
    "Goal_PWM": (-885, 885),
    "Profile_Acceleration": _PROFILE_RANGE,
    "Profile_Velocity": _PROFILE_RANGE,
    "Goal_Position": (-1_048_575, 1_048_575),
}

_COMMON_DEFAULTS: dict[str, int] = {
    "ID": 1,
    "Baud_Rate": 1,  # 57,600 bps, the factory setting
    "Return_Delay_Time": 250,
    "Operating_Mode": int(OperatingMode.POSITION),
    "Secondary_ID": 255,
    "Protocol_Type": 2,
    "Moving_Threshold": 10,
    "PWM_Limit": 885,
    "Max_Position_Limit": 4095,
    "Status_Return_Level": 2,
    "Present_Temperature": 25,
}

_X330_BAUDRATES = {0: 9_600, 1: 57_600, 2: 115_200, 3: 1_000_000, 4: 2_000_000, 5: 3_000_000, 6: 4_000_000}
_X430_BAUDRATES = {**_X330_BAUDRATES, 7: 4_500_000}

_ALL_MODES = frozenset(int(mode) for mode in OperatingMode)
_NO_CURRENT_MODES = _ALL_MODES - {int(OperatingMode.CURRENT), int(OperatingMode.CURRENT_POSITION)}

# Hints for names that exist in LeRobot's shared table but not on a given model.
_MISSING_REGISTER_HINTS = {
    "Present_Current": "this model has no current sensor; address 126 is 'Present_Load' (0.1 % of max torque)",
    "Current_Limit": "this model has no current control; limit output with 'PWM_Limit' instead",
    "Goal_Current": "this model has no current control; use 'Goal_PWM' or position/velocity modes",
    "Acceleration_Limit": "X330/X430/X540 servos have no Acceleration_Limit; use 'Profile_Acceleration'",
    "PWM_Slope": "only XL330 models have PWM_Slope",
    "Present_Load": "this model measures current: read 'Present_Current' (mA)",
}


@dataclass(frozen=True, eq=False)  # identity equality: one spec per model, hashable
class ModelSpec:
    """Everything model-specific a driver or emulator needs: registers, baud table, modes, identity."""

    name: str
    model_number: int
    resolution: int
    registers: Mapping[str, Register]
    baudrates: Mapping[int, int]  # Baud_Rate register value -> bits per second
    operating_modes: frozenset[int]
    firmware: int  # Firmware_Version an emulated servo reports
    _by_address: Mapping[int, Register] = field(init=False, repr=False, compare=False)
    _by_byte: Mapping[int, Register] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "registers", MappingProxyType(dict(self.registers)))
        object.__setattr__(self, "baudrates", MappingProxyType(dict(self.baudrates)))
        by_address = {register.address: register for register in self.registers.values()}
        by_byte = {
            address: register
            for register in self.registers.values()
            for address in range(register.address, register.end)
        }
        object.__setattr__(self, "_by_address", MappingProxyType(by_address))
        object.__setattr__(self, "_by_byte", MappingProxyType(by_byte))

    def register(self, name: str) -> Register:
        try:
            return self.registers[name]
        except KeyError:
            pass
        hint = _MISSING_REGISTER_HINTS.get(name)
        close = difflib.get_close_matches(name, list(self.registers), n=4, cutoff=0.6)
        detail = hint or (f"close names: {', '.join(close)}" if close else "see tables.MODELS for the list")
        raise KeyError(f"{self.name} has no register '{name}': {detail}.") from None

    def register_at(self, address: int) -> Register | None:
        """The register that starts at `address`, if any."""
        return self._by_address.get(address)

    def register_covering(self, address: int) -> Register | None:
        """The register that contains the byte at `address`, if any (for reads that start mid-register)."""
        return self._by_byte.get(address)

    @property
    def control_table_size(self) -> int:
        """First address after the last register."""
        return max(register.end for register in self.registers.values())


def _build_registers(
    *,
    current_sensing: bool,
    pwm_slope: bool,
    baudrates: Mapping[int, int],
    defaults: Mapping[str, int],
    ranges: Mapping[str, tuple[int, int]],
) -> dict[str, Register]:
    registers = {}
    all_defaults = {**_COMMON_DEFAULTS, **defaults}
    all_ranges = {**_COMMON_RANGES, "Baud_Rate": (min(baudrates), max(baudrates)), **ranges}
    for name, address, size, writable in _X_SERIES_LAYOUT:
        if name in ("Current_Limit", "Goal_Current") and not current_sensing:
            continue
        if name == "PWM_Slope" and not pwm_slope:
            continue
        if name == "Present_Current" and not current_sensing:
            name = "Present_Load"
        minimum, maximum = all_ranges.get(name, (None, None))
        registers[name] = Register(
            name=name,
            address=address,
            size=size,
            eeprom=address < EEPROM_END,
            writable=writable,
            default=all_defaults.get(name, 0),
            signed=name in SIGNED_REGISTERS,
            minimum=minimum,
            maximum=maximum,
        )
    return registers


def _model(
    name: str,
    model_number: int,
    *,
    firmware: int,
    current_sensing: bool,
    pwm_slope: bool,
    baudrates: Mapping[int, int],
    defaults: Mapping[str, int],
    ranges: Mapping[str, tuple[int, int]] | None = None,
) -> ModelSpec:
    defaults = {"Model_Number": model_number, "Firmware_Version": firmware, **defaults}
    # At power-on the goal limits start at their configured maxima.
    defaults.setdefault("Goal_PWM", defaults.get("PWM_Limit", _COMMON_DEFAULTS["PWM_Limit"]))
    if current_sensing:
        defaults.setdefault("Goal_Current", defaults["Current_Limit"])
    registers = _build_registers(
        current_sensing=current_sensing,
        pwm_slope=pwm_slope,
        baudrates=baudrates,
        defaults=defaults,
        ranges=ranges or {},
    )
    return ModelSpec(
        name=name,
        model_number=model_number,
        resolution=4096,
        registers=registers,
        baudrates=baudrates,
        operating_modes=_ALL_MODES if current_sensing else _NO_CURRENT_MODES,
        firmware=firmware,
    )


_XL330_DEFAULTS = {
    "Temperature_Limit": 70,
    "Max_Voltage_Limit": 70,
    "Min_Voltage_Limit": 35,
    "Current_Limit": 1750,
    "PWM_Slope": 140,
    "Shutdown": 53,
    "Present_Input_Voltage": 50,
}
_XL330_RANGES = {
    "Max_Voltage_Limit": (31, 70),
    "Min_Voltage_Limit": (31, 70),
    "Current_Limit": (0, 1750),
    "Goal_Current": (-1750, 1750),
    "Velocity_Limit": (0, 2047),
}

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _model(
            "xl330-m077",
            1190,
            firmware=52,
            current_sensing=True,
            pwm_slope=True,
            baudrates=_X330_BAUDRATES,
            defaults={
                **_XL330_DEFAULTS,
                "Velocity_Limit": 1620,
                "Velocity_I_Gain": 400,
                "Velocity_P_Gain": 40,
                "Position_D_Gain": 0,
                "Position_I_Gain": 400,
                "Position_P_Gain": 400,
            },
            ranges=_XL330_RANGES,
        ),
        _model(
            "xl330-m288",
            1200,
            firmware=52,
            current_sensing=True,
            pwm_slope=True,
            baudrates=_X330_BAUDRATES,
            defaults={
                **_XL330_DEFAULTS,
                "Velocity_Limit": 445,
                "Velocity_I_Gain": 1600,
                "Velocity_P_Gain": 180,
                "Position_D_Gain": 0,
                "Position_I_Gain": 0,
                "Position_P_Gain": 400,
            },
            ranges=_XL330_RANGES,
        ),
        _model(
            "xl430-w250",
            1060,
            firmware=46,
            current_sensing=False,
            pwm_slope=False,
            baudrates=_X430_BAUDRATES,
            defaults={
                "Temperature_Limit": 72,
                "Max_Voltage_Limit": 140,
                "Min_Voltage_Limit": 60,
                "Velocity_Limit": 265,
                "Shutdown": 52,
                "Velocity_I_Gain": 1000,
                "Velocity_P_Gain": 100,
                "Position_D_Gain": 4000,
                "Position_I_Gain": 0,
                "Position_P_Gain": 640,
                "Present_Input_Voltage": 120,
            },
            ranges={"Max_Voltage_Limit": (60, 140), "Min_Voltage_Limit": (60, 140), "Velocity_Limit": (0, 1023)},
        ),
        # Same layout as the XL models above; defaults approximate (emulation only).
        _model(
            "xm430-w350",
            1020,
            firmware=46,
            current_sensing=True,
            pwm_slope=False,
            baudrates=_X430_BAUDRATES,
            defaults={
                "Temperature_Limit": 80,
                "Max_Voltage_Limit": 160,
                "Min_Voltage_Limit": 95,
                "Current_Limit": 1193,
                "Velocity_Limit": 200,
                "Shutdown": 52,
                "Velocity_I_Gain": 1920,
                "Velocity_P_Gain": 100,
                "Position_P_Gain": 800,
                "Present_Input_Voltage": 120,
            },
            ranges={"Current_Limit": (0, 1193), "Goal_Current": (-1193, 1193), "Velocity_Limit": (0, 1023)},
        ),
        _model(
            "xm540-w270",
            1120,
            firmware=46,
            current_sensing=True,
            pwm_slope=False,
            baudrates=_X430_BAUDRATES,
            defaults={
                "Temperature_Limit": 80,
                "Max_Voltage_Limit": 160,
                "Min_Voltage_Limit": 95,
                "Current_Limit": 2047,
                "Velocity_Limit": 128,
                "Shutdown": 52,
                "Velocity_I_Gain": 1920,
                "Velocity_P_Gain": 100,
                "Position_P_Gain": 800,
                "Present_Input_Voltage": 120,
            },
            ranges={"Current_Limit": (0, 2047), "Goal_Current": (-2047, 2047), "Velocity_Limit": (0, 1023)},
        ),
        _model(
            "xc430-w150",
            1070,
            firmware=46,
            current_sensing=False,
            pwm_slope=False,
            baudrates=_X430_BAUDRATES,
            defaults={
                "Temperature_Limit": 72,
                "Max_Voltage_Limit": 140,
                "Min_Voltage_Limit": 65,
                "Velocity_Limit": 460,
                "Shutdown": 52,
                "Velocity_I_Gain": 1000,
                "Velocity_P_Gain": 100,
                "Position_D_Gain": 4000,
                "Position_P_Gain": 640,
                "Present_Input_Voltage": 120,
            },
            ranges={"Velocity_Limit": (0, 1023)},
        ),
    )
}

MODEL_BY_NUMBER: dict[int, ModelSpec] = {spec.model_number: spec for spec in MODELS.values()}

# ------------------------------------------------------------------ LeRobot-shaped views (MotorsBus attributes)

MODEL_CONTROL_TABLE: dict[str, dict[str, tuple[int, int]]] = {
    name: {register.name: (register.address, register.size) for register in spec.registers.values()}
    for name, spec in MODELS.items()
}
MODEL_NUMBER_TABLE: dict[str, int] = {name: spec.model_number for name, spec in MODELS.items()}
MODEL_RESOLUTION: dict[str, int] = {name: spec.resolution for name, spec in MODELS.items()}
MODEL_BAUDRATE_TABLE: dict[str, dict[int, int]] = {
    name: {baudrate: index for index, baudrate in spec.baudrates.items()} for name, spec in MODELS.items()
}
MODEL_ENCODING_TABLE: dict[str, dict[str, int]] = {
    name: {register.name: register.size for register in spec.registers.values() if register.signed}
    for name, spec in MODELS.items()
}
MODEL_OPERATING_MODES: dict[str, list[int]] = {
    name: sorted(spec.operating_modes) for name, spec in MODELS.items()
}

# Baud rates to try when looking for servos, most likely first: LeRobot's 1 Mbps, then the factory 57,600.
# 4.5 Mbps (XL430 only) is left out because dynamixel-sdk's PortHandler cannot open a port at that rate.
SCAN_BAUDRATES: list[int] = [1_000_000, 57_600, 115_200, 2_000_000, 3_000_000, 4_000_000, 9_600]
