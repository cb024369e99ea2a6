"""Emulated Feetech STS/SCS servos: register semantics and instruction handling on the shared protocol module.

Behaviour follows the real servo where it matters to a host: Present = Actual − Homing_Offset (wrapped to one
turn), goals clamped to the position limits, torque-on drives to whatever Goal_Position holds (the classic
"jump on connect"), Lock decides whether EEPROM writes survive a reboot, ID and baud changes apply after the
reply, Response_Status_Level, REG_WRITE/ACTION, and protection that unloads the motor on overload/overheat.
"""

from __future__ import annotations

from lerobot_vla_plugin.motors.feetech import protocol as fp
from lerobot_vla_plugin.motors.feetech.tables import ModelSpec

from .servo import ControlTableMemory, ServoEnvironment, ServoMotion, Thermal

_FAST_ACCELERATION = 1_000_000.0  # Acceleration = 0 means "no limit"
_PRESENT_AREA_START = 56  # Present_* and other computed registers live from here on
_STATUS_ADDRESS = 65
STALL_CURRENT_A = 2.7  # STS3215 12 V variant, secondary figure; only scales Present_Current


class FeetechServo:
    """One STS/SCS servo. `actuator` moves the shaft (the built-in ServoMotion or a physics joint)."""

    def __init__(self, servo_id: int, spec: ModelSpec, *, actuator=None, environment: ServoEnvironment | None = None,
                 initial_position: int = 2048):
        self.spec = spec
        self.env = environment or ServoEnvironment()
        self.actuator = actuator or ServoMotion(position_steps=float(initial_position))
        self.thermal = Thermal()
        self.memory = ControlTableMemory(256, spec.registers.values(), big_endian=spec.big_endian)
        self._now_s = 0.0
        self._overload_since_s: float | None = None
        self._pending_reg_write: tuple[int, bytes] | None = None
        self._factory_reset(keep_id=None)
        self.memory.set_raw("ID", servo_id, persist=True)
        self.power_cycle()

    # -- identity ---------------------------------------------------------------------------------------------

    @property
    def id(self) -> int:
        return self.memory.get_raw("ID")

    @property
    def baudrate(self) -> int:
        return self.spec.baudrates.get(self.memory.get_raw("Baud_Rate"), 1_000_000)

    @property
    def resolution(self) -> int:
        return self.spec.resolution

    # -- lifecycle --------------------------------------------------------------------------------------------

    def _factory_reset(self, keep_id: int | None) -> None:
        for reg in self.spec.registers.values():
            self.memory.set_raw(reg.name, reg.default, persist=reg.eeprom)
        self.memory.set_raw("Model_Number", self.spec.model_number, persist=True)
        if keep_id is not None:
            self.memory.set_raw("ID", keep_id, persist=True)

    def power_cycle(self) -> None:
        """EEPROM comes back from flash, RAM from defaults; goal := present, as at a real power-up."""
        for reg in self.spec.registers.values():
            if reg.eeprom:
                chunk = self.memory.persisted[reg.address : reg.address + reg.size]
                self.memory.data[reg.address : reg.address + reg.size] = chunk
            else:
                self.memory.set_raw(reg.name, reg.default)
        if self.memory.has("Max_Torque_Limit") and self.memory.has("Torque_Limit"):
            self.memory.set_raw("Torque_Limit", self.memory.get_raw("Max_Torque_Limit"))
        if self.memory.has("Lock"):
            self.memory.set_raw("Lock", 1)
        self.latched_status = 0
        self.actuator.set_torque(False)
        self._refresh_present()
        self._encode("Goal_Position", self._decode("Present_Position"))

    # -- value helpers ----------------------------------------------------------------------------------------

    def _decode(self, name: str) -> int:
        reg = self.memory.register(name)
        raw = self.memory.get_raw(name)
        return fp.decode_sign_magnitude(raw, reg.sign_bit) if reg.sign_bit is not None else raw

    def _encode(self, name: str, value: int) -> None:
        reg = self.memory.register(name)
        if reg.sign_bit is not None:
            magnitude_max = (1 << reg.sign_bit) - 1
            value = max(-magnitude_max, min(magnitude_max, int(value)))
            raw = fp.encode_sign_magnitude(value, reg.sign_bit)
        else:
            raw = max(0, min((1 << (8 * reg.size)) - 1, int(value)))
        self.memory.set_raw(name, raw)

    def _homing_offset(self) -> int:
        return self._decode("Homing_Offset") if self.memory.has("Homing_Offset") else 0

    def _multi_turn(self) -> bool:
        return self.memory.has("Phase") and bool(self.memory.get_raw("Phase") & 0x10)

    def present_from_actual(self, actual_steps: float) -> int:
        present = round(actual_steps) - self._homing_offset()
        return present if self._multi_turn() else present % self.resolution

    def actual_from_present(self, present: int) -> float:
        """Inverse of present_from_actual, choosing the turn nearest the shaft (no spurious full turns)."""
        actual = present + self._homing_offset()
        if not self._multi_turn():
            here = self.actuator.position_steps
            turns = round((here - actual) / self.resolution)
            actual += turns * self.resolution
        return float(actual)

    # -- time -------------------------------------------------------------------------------------------------

    def advance(self, now_s: float) -> None:
        dt = now_s - self._now_s if self._now_s else 0.0
        self._now_s = now_s
        self.actuator.advance(now_s)
        load = self.actuator.load_fraction
        self.thermal.advance(dt, load)
        self._protect(now_s, load)

    def _supply_voltage_v(self) -> float:
        forced = self.env.faults.supply_voltage_v
        return forced if forced is not None else self.env.supply_voltage_v

    def status_bits(self) -> int:
        bits = self.latched_status | self.env.faults.latched_error_bits
        volts_tenths = round(self._supply_voltage_v() * 10)
        if self.memory.has("Max_Voltage_Limit") and not (
            self.memory.get_raw("Min_Voltage_Limit") <= volts_tenths <= self.memory.get_raw("Max_Voltage_Limit")
        ):
            bits |= fp.StatusError.VOLTAGE
        return bits & 0x7F  # bit 7 must stay clear: the vendor SDK drops status packets that set it

    def _protect(self, now_s: float, load: float) -> None:
        """Overload / overheat protection: latch the bit, and unload (torque off) when configured to."""
        unload_mask = self.memory.get_raw("Unloading_Condition") if self.memory.has("Unloading_Condition") else 0
        if self.memory.has("Overload_Torque"):
            threshold = self.memory.get_raw("Overload_Torque") / 100.0
            hold_s = self.memory.get_raw("Protection_Time") * 0.010 if self.memory.has("Protection_Time") else 0.2
            if self.torque_enabled and abs(load) > max(threshold, 0.01):
                self._overload_since_s = self._overload_since_s if self._overload_since_s is not None else now_s
                if now_s - self._overload_since_s >= hold_s:
                    self._latch(fp.StatusError.OVERLOAD, unload_mask)
            else:
                self._overload_since_s = None
        if self.memory.has("Max_Temperature_Limit"):
            if self.thermal.temperature_c > self.memory.get_raw("Max_Temperature_Limit"):
                self._latch(fp.StatusError.OVERHEAT, unload_mask)

    def _latch(self, bit: int, unload_mask: int) -> None:
        self.latched_status |= int(bit)
        if unload_mask & int(bit) and self.torque_enabled:
            self._set_torque(False)

    @property
    def torque_enabled(self) -> bool:
        return bool(self.memory.get_raw("Torque_Enable") & 0x01)

    def _set_torque(self, enabled: bool) -> None:
        self.memory.set_raw("Torque_Enable", int(enabled))
        self.actuator.set_torque(enabled)
        if enabled:
            self._apply_goal()

    def _refresh_present(self) -> None:
        act = self.actuator
        self._encode("Present_Position", self.present_from_actual(act.position_steps))
        if self.memory.has("Present_Velocity"):
            self._encode("Present_Velocity", round(act.velocity_steps_s))
        if self.memory.has("Present_Load"):
            self._encode("Present_Load", round(act.load_fraction * 1000))
        if self.memory.has("Present_Voltage"):
            self.memory.set_raw("Present_Voltage", max(0, min(255, round(self._supply_voltage_v() * 10))))
        if self.memory.has("Present_Temperature"):
            self.memory.set_raw("Present_Temperature", max(0, min(255, round(self.thermal.temperature_c))))
        if self.memory.has("Moving"):
            self.memory.set_raw("Moving", int(abs(act.velocity_steps_s) > 1.0))
        if self.memory.has("Present_Current"):
            self.memory.set_raw("Present_Current", round(abs(act.load_fraction) * STALL_CURRENT_A / 0.0065))
        if self.memory.has("Status"):
            self.memory.set_raw("Status", self.status_bits())

    def _apply_goal(self) -> None:
        goal = self._decode("Goal_Position")
        lo = self.memory.get_raw("Min_Position_Limit")
        hi = self.memory.get_raw("Max_Position_Limit")
        if not (lo == 0 and hi == 0) and lo <= hi:  # both zero = multi-turn: no limits
            goal = max(lo, min(hi, goal))
        speed = self._decode("Goal_Velocity") if self.memory.has("Goal_Velocity") else 0
        max_speed = abs(speed) if speed else 3400.0
        accel = self.memory.get_raw("Acceleration") * 100.0 if self.memory.has("Acceleration") else 0.0
        self.actuator.set_goal(self.actual_from_present(goal), max_speed, accel or _FAST_ACCELERATION)

    # -- instructions -----------------------------------------------------------------------------------------

    def read(self, address: int, length: int) -> bytes:
        if address + length > _PRESENT_AREA_START or address <= _STATUS_ADDRESS < address + length:
            self._refresh_present()  # computed registers are only brought up to date when someone reads them
        return bytes(self.memory.data[address : address + length])

    def write(self, address: int, data: bytes) -> None:
        """Apply a WRITE: writable bytes change, then the side effects of each touched register run."""
        touched = self.memory.covered(address, len(data))
        locked = self.memory.has("Lock") and self.memory.get_raw("Lock") == 1
        for reg in touched:
            if not reg.writable:
                continue
            lo = max(reg.address, address)
            hi = min(reg.address + reg.size, address + len(data))
            self.memory.data[lo:hi] = data[lo - address : hi - address]
            if reg.eeprom and not locked:
                self.memory.persisted[lo:hi] = data[lo - address : hi - address]
        for reg in touched:
            if not reg.writable:
                continue
            if reg.name == "Torque_Enable":
                value = self.memory.get_raw("Torque_Enable")
                if value == 128:  # "current position becomes 2048"
                    offset = round(self.actuator.position_steps) - 2048
                    self.memory.set_raw("Torque_Enable", 0)
                    self._encode("Homing_Offset", offset)
                    if not locked:
                        reg_h = self.memory.register("Homing_Offset")
                        a = reg_h.address
                        self.memory.persisted[a : a + reg_h.size] = self.memory.data[a : a + reg_h.size]
                    self._set_torque(False)
                else:
                    self._set_torque(bool(value & 0x01))
            elif reg.name in ("Goal_Position", "Goal_Velocity", "Acceleration", "Min_Position_Limit",
                              "Max_Position_Limit", "Homing_Offset") and self.torque_enabled:
                self._apply_goal()
        self._refresh_present()

    def reg_write(self, address: int, data: bytes) -> None:
        self._pending_reg_write = (address, bytes(data))

    def action(self) -> None:
        if self._pending_reg_write is not None:
            address, data = self._pending_reg_write
            self._pending_reg_write = None
            self.write(address, data)

    def factory_reset(self) -> None:
        servo_id = self.id
        self._factory_reset(keep_id=servo_id)
        self.power_cycle()

    @property
    def replies_to_writes(self) -> bool:
        return not self.memory.has("Response_Status_Level") or self.memory.get_raw("Response_Status_Level") >= 1


class FeetechBusLogic:
    """Routes decoded instruction packets to the servos on one emulated bus and builds their status replies.

    Returns `(return_delay_s, reply_bytes)` pairs in wire order; the link adds wire and USB timing.
    """

    protocol_name = "feetech"

    def __init__(self, servos: list[FeetechServo]):
        self.servos = servos

    decode_packets = staticmethod(fp.decode_packets)

    def _listening(self, line_baudrate: int) -> list[FeetechServo]:
        return [s for s in self.servos if s.baudrate == line_baudrate and not s.env.faults.silent]

    @staticmethod
    def _delay_s(servo: FeetechServo) -> float:
        return servo.memory.get_raw("Return_Delay_Time") * 2e-6 if servo.memory.has("Return_Delay_Time") else 0.0

    def _status(self, servo: FeetechServo, params: bytes = b"", servo_id: int | None = None):
        return (self._delay_s(servo), fp.status(servo.id if servo_id is None else servo_id, servo.status_bits(), params))

    def handle(self, packet, line_baudrate: int, now_s: float) -> list[tuple[float, bytes]]:
        servos = self._listening(line_baudrate)
        for servo in servos:
            servo.advance(now_s)
        instruction, params, target = packet.code, packet.params, packet.servo_id
        broadcast = target == fp.BROADCAST_ID
        addressed = [s for s in servos if broadcast or s.id == target]
        replies: list[tuple[float, bytes]] = []

        if instruction == fp.Instruction.PING:
            for servo in sorted(addressed, key=lambda s: s.id):
                replies.append(self._status(servo))
        elif instruction == fp.Instruction.READ and len(params) == 2 and not broadcast:
            for servo in addressed:
                replies.append(self._status(servo, servo.read(params[0], params[1])))
        elif instruction in (fp.Instruction.WRITE, fp.Instruction.REG_WRITE) and params:
            for servo in addressed:
                old_id = servo.id
                (servo.write if instruction == fp.Instruction.WRITE else servo.reg_write)(params[0], params[1:])
                if not broadcast and servo.replies_to_writes:
                    replies.append(self._status(servo, servo_id=old_id))  # the reply still carries the old ID
        elif instruction == fp.Instruction.ACTION:
            for servo in addressed:
                servo.action()
                if not broadcast and servo.replies_to_writes:
                    replies.append(self._status(servo))
        elif instruction == fp.Instruction.SYNC_WRITE and len(params) >= 2:
            address, length = params[0], params[1]
            by_id = {s.id: s for s in servos}
            for i in range(2, len(params) - length, length + 1):
                servo = by_id.get(params[i])
                if servo is not None:
                    servo.write(address, params[i + 1 : i + 1 + length])
        elif instruction == fp.Instruction.SYNC_READ and len(params) >= 2:
            address, length = params[0], params[1]
            by_id = {s.id: s for s in servos if not s.spec.big_endian}  # SCS firmware has no SYNC_READ: silence
            for servo_id in params[2:]:  # replies in the order the IDs were listed
                servo = by_id.get(servo_id)
                if servo is not None:
                    replies.append(self._status(servo, servo.read(address, length)))
        elif instruction == fp.Instruction.RESET:
            for servo in addressed:
                servo.factory_reset()
                if not broadcast:
                    replies.append(self._status(servo))
        elif instruction == fp.Instruction.REBOOT:
            for servo in addressed:
                servo.power_cycle()
        return replies
