"""Emulated Dynamixel X-series servos (Protocol 2.0) on the shared protocol module.

Real-servo rules a host can trip over: EEPROM (addresses < 64) is writable only with torque off (Access Error),
read-only registers refuse writes, Present = Actual + Homing_Offset, Status_Return_Level, a hardware error
latches the alert bit and (per Shutdown) turns torque off until a REBOOT, and Fast Sync Read answers with one
combined unstuffed packet.
"""

from __future__ import annotations

from lerobot_vla_plugin.motors.dynamixel import protocol as dp
from lerobot_vla_plugin.motors.dynamixel.tables import ModelSpec

from .servo import ControlTableMemory, ServoEnvironment, ServoMotion, Thermal

_EEPROM_END = 64
_RPM_UNIT = 0.229
_ACCEL_UNIT_RPM2 = 214.577
_FAST_ACCELERATION = 1_000_000.0
_PRESENT_AREA_START = 120  # Present_* and other computed registers live from here on
_STATUS_ADDRESS = 70
_STALL_CURRENT_MA = 1500.0  # only scales Present_Current


def _steps_s_from_rpm_units(units: int, resolution: int) -> float:
    return units * _RPM_UNIT * resolution / 60.0


class DynamixelServo:
    def __init__(self, servo_id: int, spec: ModelSpec, *, actuator=None, environment: ServoEnvironment | None = None,
                 initial_position: int = 2048):
        self.spec = spec
        self.env = environment or ServoEnvironment(supply_voltage_v=5.0)
        self.actuator = actuator or ServoMotion(position_steps=float(initial_position))
        self.thermal = Thermal()
        self.memory = ControlTableMemory(256, spec.registers.values())
        self._now_s = 0.0
        self._factory_reset(option=0xFF)
        self.memory.set_raw("ID", servo_id, persist=True)
        self.power_cycle()
        self._pending_reg_write: tuple[int, bytes] | None = None
        self._overload_since_s: float | None = None

    @property
    def id(self) -> int:
        return self.memory.get_raw("ID")

    @property
    def baudrate(self) -> int:
        return self.spec.baudrates.get(self.memory.get_raw("Baud_Rate"), 57_600)

    @property
    def resolution(self) -> int:
        return self.spec.resolution

    def _factory_reset(self, option: int) -> None:
        keep = {}
        if option in (0x01, 0x02):
            keep["ID"] = self.memory.get_raw("ID")
        if option == 0x02:
            keep["Baud_Rate"] = self.memory.get_raw("Baud_Rate")
        for reg in self.spec.registers.values():
            self.memory.set_raw(reg.name, reg.default, persist=reg.address < _EEPROM_END)
        self.memory.set_raw("Model_Number", self.spec.model_number, persist=True)
        if self.memory.has("Firmware_Version"):
            self.memory.set_raw("Firmware_Version", self.spec.firmware, persist=True)
        for name, value in keep.items():
            self.memory.set_raw(name, value, persist=True)

    def power_cycle(self) -> None:
        eeprom = self.memory.persisted[:_EEPROM_END]
        for reg in self.spec.registers.values():
            if reg.address >= _EEPROM_END:
                self.memory.set_raw(reg.name, reg.default)
        self.memory.data[:_EEPROM_END] = eeprom
        self.actuator.set_torque(False)
        self.hardware_error = 0
        self._refresh_present()
        self._set_signed("Goal_Position", self._get_signed("Present_Position"))

    # -- values -----------------------------------------------------------------------------------------------

    def _get_signed(self, name: str) -> int:
        reg = self.memory.register(name)
        raw = self.memory.get_raw(name)
        bits = 8 * reg.size
        return raw - (1 << bits) if reg.signed and raw >= 1 << (bits - 1) else raw

    def _set_signed(self, name: str, value: int) -> None:
        reg = self.memory.register(name)
        bits = 8 * reg.size
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if reg.signed else (0, (1 << bits) - 1)
        self.memory.set_raw(name, max(lo, min(hi, int(value))))

    def _operating_mode(self) -> int:
        return self.memory.get_raw("Operating_Mode")

    def _reversed(self) -> bool:
        return bool(self.memory.get_raw("Drive_Mode") & 0x01)

    def present_from_actual(self, actual_steps: float) -> int:
        actual = round(actual_steps)
        if self._reversed():
            actual = -actual
        present = actual + self._get_signed("Homing_Offset")
        if self._operating_mode() == 3:  # single-turn position mode reports one turn
            present %= self.resolution
        return present

    def actual_from_present(self, present: int) -> float:
        actual = present - self._get_signed("Homing_Offset")
        if self._reversed():
            actual = -actual
        if self._operating_mode() == 3:
            here = self.actuator.position_steps
            actual += round((here - actual) / self.resolution) * self.resolution
        return float(actual)

    # -- time, protection -------------------------------------------------------------------------------------

    @property
    def torque_enabled(self) -> bool:
        return bool(self.memory.get_raw("Torque_Enable"))

    def _supply_voltage_v(self) -> float:
        forced = self.env.faults.supply_voltage_v
        return forced if forced is not None else self.env.supply_voltage_v

    def advance(self, now_s: float) -> None:
        dt = now_s - self._now_s if self._now_s else 0.0
        self._now_s = now_s
        self.actuator.advance(now_s)
        load = self.actuator.load_fraction
        self.thermal.advance(dt, load)
        volts = round(self._supply_voltage_v() * 10)
        if not self.memory.get_raw("Min_Voltage_Limit") <= volts <= self.memory.get_raw("Max_Voltage_Limit"):
            self._raise_hardware_error(dp.HardwareError.INPUT_VOLTAGE)
        if self.thermal.temperature_c > self.memory.get_raw("Temperature_Limit"):
            self._raise_hardware_error(dp.HardwareError.OVERHEATING)
        if self.torque_enabled and abs(load) >= 0.98:
            self._overload_since_s = self._overload_since_s if self._overload_since_s is not None else now_s
            if now_s - self._overload_since_s > 1.0:
                self._raise_hardware_error(dp.HardwareError.OVERLOAD)
        else:
            self._overload_since_s = None

    def _raise_hardware_error(self, bit: int) -> None:
        self.hardware_error |= int(bit)
        if self.memory.get_raw("Shutdown") & int(bit) and self.torque_enabled:
            self.memory.set_raw("Torque_Enable", 0)
            self.actuator.set_torque(False)

    def error_byte(self, result: int = 0) -> int:
        alert = (self.hardware_error | self.env.faults.latched_error_bits) != 0
        return result | (dp.ALERT_BIT if alert else 0)

    def _refresh_present(self) -> None:
        act = self.actuator
        self._set_signed("Present_Position", self.present_from_actual(act.position_steps))
        rpm_units = act.velocity_steps_s * 60.0 / self.resolution / _RPM_UNIT
        self._set_signed("Present_Velocity", round(-rpm_units if self._reversed() else rpm_units))
        if self.memory.has("Present_Current"):
            self._set_signed("Present_Current", round(act.load_fraction * _STALL_CURRENT_MA))
        if self.memory.has("Present_Load"):
            self._set_signed("Present_Load", round(act.load_fraction * 1000))
        self.memory.set_raw("Present_Input_Voltage", round(self._supply_voltage_v() * 10))
        self.memory.set_raw("Present_Temperature", max(0, min(255, round(self.thermal.temperature_c))))
        self.memory.set_raw("Moving", int(abs(act.velocity_steps_s) > 1.0))
        self.memory.set_raw("Hardware_Error_Status", self.hardware_error | self.env.faults.latched_error_bits)
        if self.memory.has("Realtime_Tick"):
            self.memory.set_raw("Realtime_Tick", int(self._now_s * 1000) % 32768)

    def _apply_goal(self) -> int:
        goal = self._get_signed("Goal_Position")
        if self._operating_mode() in (3,):
            lo = self.memory.get_raw("Min_Position_Limit")
            hi = self.memory.get_raw("Max_Position_Limit")
            goal = max(lo, min(hi, goal))
        profile_velocity = self.memory.get_raw("Profile_Velocity")
        limit = self.memory.get_raw("Velocity_Limit")
        speed_units = min(profile_velocity, limit) if profile_velocity else limit
        profile_accel = self.memory.get_raw("Profile_Acceleration")
        accel = profile_accel * _ACCEL_UNIT_RPM2 / 3600.0 * self.resolution if profile_accel else _FAST_ACCELERATION
        self.actuator.set_goal(self.actual_from_present(goal), _steps_s_from_rpm_units(speed_units, self.resolution), accel)
        return goal

    # -- instructions -----------------------------------------------------------------------------------------

    def read(self, address: int, length: int) -> bytes:
        if address + length > _PRESENT_AREA_START or address <= _STATUS_ADDRESS < address + length:
            self._refresh_present()  # computed registers are only brought up to date when someone reads them
        return bytes(self.memory.data[address : address + length])

    def write(self, address: int, data: bytes) -> int:
        """Apply a WRITE; returns the result error number (0 = ok) the status packet carries."""
        touched = self.memory.covered(address, len(data))
        if not touched or any(r.address < address or r.address + r.size > address + len(data) for r in touched):
            return dp.ResultError.DATA_LENGTH
        if any(not r.writable for r in touched):
            return dp.ResultError.ACCESS
        if self.torque_enabled and any(r.address < _EEPROM_END for r in touched):
            return dp.ResultError.ACCESS
        for reg in touched:
            chunk = bytes(data[reg.address - address : reg.address - address + reg.size])
            if reg.name == "Operating_Mode" and chunk[0] not in self.spec.operating_modes:
                return dp.ResultError.DATA_RANGE
        self.memory.data[address : address + len(data)] = data
        self.memory.persisted[address : min(address + len(data), _EEPROM_END)] = data[: max(0, _EEPROM_END - address)]
        names = {r.name for r in touched}
        if "Torque_Enable" in names:
            enabled = bool(self.memory.get_raw("Torque_Enable"))
            if enabled and self.hardware_error:
                self.memory.set_raw("Torque_Enable", 0)  # a latched hardware error blocks torque until reboot
                return dp.ResultError.RESULT_FAIL
            self.actuator.set_torque(enabled)
            if enabled:
                self._apply_goal()
        if names & {"Goal_Position", "Profile_Velocity", "Profile_Acceleration"} and self.torque_enabled:
            self._apply_goal()
        self._refresh_present()
        return dp.ResultError.NONE

    def reg_write(self, address: int, data: bytes) -> int:
        self._pending_reg_write = (address, bytes(data))
        self.memory.set_raw("Registered_Instruction", 1)
        return dp.ResultError.NONE

    def action(self) -> int:
        if self._pending_reg_write is None:
            return dp.ResultError.INSTRUCTION
        address, data = self._pending_reg_write
        self._pending_reg_write = None
        self.memory.set_raw("Registered_Instruction", 0)
        return self.write(address, data)

    def reboot(self) -> None:
        self.power_cycle()

    def factory_reset(self, option: int) -> None:
        self._factory_reset(option)
        self.power_cycle()

    def replies_to(self, instruction: int) -> bool:
        level = self.memory.get_raw("Status_Return_Level")
        if instruction == dp.Instruction.PING:
            return True
        if instruction in (dp.Instruction.READ, dp.Instruction.SYNC_READ, dp.Instruction.BULK_READ,
                           dp.Instruction.FAST_SYNC_READ, dp.Instruction.FAST_BULK_READ):
            return level >= 1
        return level >= 2


class DynamixelBusLogic:
    protocol_name = "dynamixel"

    def __init__(self, servos: list[DynamixelServo]):
        self.servos = servos

    decode_packets = staticmethod(dp.decode_packets)

    def _listening(self, line_baudrate: int) -> list[DynamixelServo]:
        return [s for s in self.servos if s.baudrate == line_baudrate and not s.env.faults.silent]

    @staticmethod
    def _delay_s(servo: DynamixelServo) -> float:
        return servo.memory.get_raw("Return_Delay_Time") * 2e-6

    def _status(self, servo: DynamixelServo, result: int = 0, params: bytes = b"", servo_id: int | None = None):
        sid = servo.id if servo_id is None else servo_id
        return (self._delay_s(servo), dp.status(sid, servo.error_byte(result), params))

    def handle(self, packet, line_baudrate: int, now_s: float) -> list[tuple[float, bytes]]:
        servos = self._listening(line_baudrate)
        for servo in servos:
            servo.advance(now_s)
        ins, params, target = packet.instruction, packet.params, packet.servo_id
        broadcast = target == dp.BROADCAST_ID
        addressed = [s for s in servos if broadcast or s.id == target]
        by_id = {s.id: s for s in servos}
        replies: list[tuple[float, bytes]] = []

        def reply(servo, result=0, data=b"", servo_id=None):
            if servo.replies_to(ins):
                replies.append(self._status(servo, result, data, servo_id))

        if ins == dp.Instruction.PING:
            for servo in sorted(addressed, key=lambda s: s.id):
                model = servo.spec.model_number
                fw = servo.memory.get_raw("Firmware_Version")
                reply(servo, 0, bytes((model & 0xFF, model >> 8, fw)))
        elif ins == dp.Instruction.READ and not broadcast and len(params) == 4:
            address, length = params[0] | params[1] << 8, params[2] | params[3] << 8
            for servo in addressed:
                reply(servo, 0, servo.read(address, length))
        elif ins in (dp.Instruction.WRITE, dp.Instruction.REG_WRITE) and len(params) >= 3:
            address = params[0] | params[1] << 8
            for servo in addressed:
                old_id = servo.id
                fn = servo.write if ins == dp.Instruction.WRITE else servo.reg_write
                result = fn(address, params[2:])
                if not broadcast:
                    reply(servo, result, servo_id=old_id)
        elif ins == dp.Instruction.ACTION:
            for servo in addressed:
                result = servo.action()
                if not broadcast:
                    reply(servo, result)
        elif ins == dp.Instruction.REBOOT:
            for servo in addressed:
                if not broadcast:
                    reply(servo)
                servo.reboot()
        elif ins == dp.Instruction.FACTORY_RESET:
            option = params[0] if params else 0xFF
            if not (broadcast and option == 0xFF):  # broadcast reset-all is ignored by the firmware
                for servo in addressed:
                    if not broadcast:
                        reply(servo)
                    servo.factory_reset(option)
        elif ins in (dp.Instruction.SYNC_READ, dp.Instruction.FAST_SYNC_READ) and len(params) >= 4:
            address, length = params[0] | params[1] << 8, params[2] | params[3] << 8
            listed = [by_id[i] for i in params[4:] if i in by_id]
            if ins == dp.Instruction.SYNC_READ:
                for servo in listed:
                    reply(servo, 0, servo.read(address, length))
            elif listed:
                entries = [(s.id, s.error_byte(), s.read(address, length)) for s in listed]
                replies.append((sum(self._delay_s(s) for s in listed), dp.encode_fast_sync_status(entries)))
        elif ins == dp.Instruction.SYNC_WRITE and len(params) >= 4:
            address, length = params[0] | params[1] << 8, params[2] | params[3] << 8
            for i in range(4, len(params) - length, length + 1):
                servo = by_id.get(params[i])
                if servo is not None:
                    servo.write(address, params[i + 1 : i + 1 + length])
        elif ins in (dp.Instruction.BULK_READ, dp.Instruction.FAST_BULK_READ):
            entries = []
            for i in range(0, len(params) - 4, 5):
                servo = by_id.get(params[i])
                address, length = params[i + 1] | params[i + 2] << 8, params[i + 3] | params[i + 4] << 8
                if servo is not None:
                    if ins == dp.Instruction.BULK_READ:
                        reply(servo, 0, servo.read(address, length))
                    else:
                        entries.append((servo.id, servo.error_byte(), servo.read(address, length)))
            if entries:
                replies.append((0.0, dp.encode_fast_sync_status(entries)))
        elif ins == dp.Instruction.BULK_WRITE:
            i = 0
            while i + 5 <= len(params):
                servo_id, address = params[i], params[i + 1] | params[i + 2] << 8
                length = params[i + 3] | params[i + 4] << 8
                servo = by_id.get(servo_id)
                if servo is not None:
                    servo.write(address, params[i + 5 : i + 5 + length])
                i += 5 + length
        elif not broadcast:
            for servo in addressed:
                reply(servo, dp.ResultError.INSTRUCTION)
        return replies
