"""DynamixelBus: LeRobot's MotorsBus API for X-series servos (Protocol 2.0).

Port handling is pyserial (as dynamixel-sdk's PortHandler does); packets are ours, because the SDK's Python
transmit path does not byte-stuff and its unstuffing can drop bytes. A status ERR number (bits 0-6) means the
instruction failed and raises with the motor named; the alert bit (7) means a latched hardware error and is
recorded per motor. Optional Fast Sync Read (firmware ≥ 45/46) reads all servos in one combined reply.
"""

from __future__ import annotations


from lerobot.motors.motors_bus import Motor, MotorCalibration

from ..bus_base import MotorHealth, ServoBus
from . import protocol as dp
from .tables import MODEL_BAUDRATE_TABLE, MODEL_CONTROL_TABLE, MODEL_ENCODING_TABLE, MODEL_NUMBER_TABLE
from .tables import MODEL_RESOLUTION, SCAN_BAUDRATES


def _decode_unstuffed(buffer, start):
    return dp.decode_packets(buffer, start, stuffed=False)


def _ends_with_fast_sync_read(request: bytes) -> bool:
    """True when the last packet of a request (possibly write + read in one transfer) is a Fast Sync Read."""
    packets = dp.decode_packets(request).packets
    return bool(packets) and packets[-1][0].instruction == dp.Instruction.FAST_SYNC_READ


class DynamixelBus(ServoBus):
    protocol_family = "dynamixel"
    apply_drive_mode = False
    available_baudrates = list(SCAN_BAUDRATES)
    default_baudrate = 1_000_000
    model_baudrate_table = MODEL_BAUDRATE_TABLE
    model_ctrl_table = MODEL_CONTROL_TABLE
    model_encoding_table = MODEL_ENCODING_TABLE
    model_number_table = MODEL_NUMBER_TABLE
    model_resolution_table = MODEL_RESOLUTION
    normalized_data = ["Goal_Position", "Present_Position"]
    status_overhead_bytes = 11

    def __init__(self, port: str, motors: dict[str, Motor], calibration: dict[str, MotorCalibration] | None = None,
                 *, fast_sync_read: bool | None = None, **kwargs):
        """`fast_sync_read=None` turns Fast Sync Read on at connect when every servo's firmware supports it."""
        super().__init__(port, motors, calibration, **kwargs)
        self._fast_sync_read_choice = fast_sync_read
        self.fast_sync_read = bool(fast_sync_read)

    # -- vendor hooks -----------------------------------------------------------------------------------------

    def _vendor_ping(self, servo_id): return dp.ping(servo_id)
    def _vendor_read(self, servo_id, address, length): return dp.read(servo_id, address, length)
    def _vendor_write(self, servo_id, address, data): return dp.write(servo_id, address, data)
    def _vendor_sync_write(self, address, length, data_by_id): return dp.sync_write(address, length, data_by_id)
    _vendor_decode_packets = staticmethod(dp.decode_packets)

    def _vendor_sync_read(self, address, length, ids):
        return (dp.fast_sync_read if self.fast_sync_read else dp.sync_read)(address, length, ids)

    @staticmethod
    def _vendor_unpack(packet):
        return packet.servo_id, packet.error or 0, packet.params

    def _fast_sync_read(self, plan):
        """The byte-exact hot path expects one status packet per servo; a Fast Sync Read reply is one combined
        packet, parsed by the general path (`_transact` below)."""
        return (None, False) if self.fast_sync_read else super()._fast_sync_read(plan)

    def _vendor_parse_exact(self, buffer, ids, n_params):
        size = 11 + n_params
        length_field = (n_params + 4).to_bytes(2, "little")
        values = []
        offset = 0
        for servo_id in ids:
            packet = buffer[offset : offset + size]
            # A stuffed reply is longer than `size`, so it fails these checks and takes the general path.
            if (packet[:4] != dp.HEADER or packet[4] != servo_id or packet[5:7] != length_field
                    or packet[7] != dp.STATUS or packet[8]
                    or dp.crc16(packet[:-2]) != packet[-2] | packet[-1] << 8):
                return None
            values.append(int.from_bytes(packet[9 : 9 + n_params], "little"))
            offset += size
        return values

    def _vendor_split_error(self, error: int):
        failure = dp.describe_error(error & 0x7F) if error & 0x7F else []
        state = ["hardware alert (see Hardware_Error_Status)"] if error & dp.ALERT_BIT else []
        return failure, state

    def _vendor_to_bytes(self, value: int, length: int) -> bytes:
        return int(value).to_bytes(length, "little")

    def _vendor_from_bytes(self, data: bytes) -> int:
        return int.from_bytes(data, "little")

    def _sign_decoder(self, data_name, names):
        size = self._shared_encoding(data_name, names)
        if size is None:
            return None
        bits = 8 * size
        return lambda raw: raw - (1 << bits) if raw >= 1 << (bits - 1) else raw

    def _sign_encoder(self, data_name, names):
        size = self._shared_encoding(data_name, names)
        if size is None:
            return None
        mask = (1 << (8 * size)) - 1
        return lambda value: value & mask

    def _model_number_after_ping(self, servo_id: int, params: bytes, raise_on_error: bool) -> int | None:
        return params[0] | params[1] << 8 if len(params) >= 2 else None

    # -- transactions that differ for Fast Sync Read ----------------------------------------------------------

    def _transact(self, request, expect_ids, n_params, expect_extra_bytes=0, decode_packets=None):
        """A Fast Sync Read is answered by one unstuffed packet from the broadcast id, split here per servo."""
        if not (self.fast_sync_read and _ends_with_fast_sync_read(request)):
            return super()._transact(request, expect_ids, n_params, expect_extra_bytes, decode_packets)
        reply = super()._transact(request, [dp.BROADCAST_ID], None, expect_extra_bytes, _decode_unstuffed)
        if dp.BROADCAST_ID not in reply:
            return {}
        error, params = reply[dp.BROADCAST_ID]
        packet = dp.Packet(dp.BROADCAST_ID, dp.STATUS, error, params)
        try:
            return {i: v for i, v in dp.parse_fast_sync_status(packet, n_params).items() if i in expect_ids}
        except ValueError:
            self.corrupt_packets += 1
            return {}


    # -- LeRobot abstract hooks ---------------------------------------------------------------------------------

    def _assert_protocol_is_compatible(self, instruction_name: str) -> None:
        pass

    def _encode_sign(self, data_name, ids_values):
        for i in ids_values:
            size = self.model_encoding_table.get(self._id_to_model(i), {}).get(data_name)
            if size is not None:
                ids_values[i] &= (1 << (8 * size)) - 1
        return ids_values

    def _decode_sign(self, data_name, ids_values):
        for i in ids_values:
            size = self.model_encoding_table.get(self._id_to_model(i), {}).get(data_name)
            if size is not None and ids_values[i] >= 1 << (8 * size - 1):
                ids_values[i] -= 1 << (8 * size)
        return ids_values

    def _split_into_byte_chunks(self, value: int, length: int) -> list[int]:
        return list(self._vendor_to_bytes(value, length))

    def _handshake(self) -> None:
        self._assert_motors_exist()
        if self._fast_sync_read_choice is None:
            self.fast_sync_read = self._all_support_fast_sync_read()
            self._read_plans.clear()

    def _all_support_fast_sync_read(self) -> bool:
        """Fast Sync Read needs X330 firmware >= 46 and X430/X540 >= 45: one combined reply instead of one
        status packet per servo (6 Koch servos: 56 instead of 90 bytes for a position read)."""
        firmware = self.sync_read("Firmware_Version", normalize=False)
        return all(
            version >= (46 if self.motors[motor].model.startswith(("xl330", "xc330")) else 45)
            for motor, version in firmware.items()
        )

    def broadcast_ping(self, num_retry: int = 0, raise_on_error: bool = False) -> dict[int, int] | None:
        """{id: model number} of every servo answering a broadcast PING (14-byte replies carry the model)."""
        found: dict[int, int] = {}
        for _ in range(1 + num_retry):
            for packet in self._collect_broadcast(dp.ping(dp.BROADCAST_ID), 14):
                if packet.error is not None and len(packet.params) >= 2:
                    found[packet.servo_id] = packet.params[0] | packet.params[1] << 8
            if found:
                break
        if not found:
            if raise_on_error:
                raise ConnectionError(f"No servo answered a broadcast ping on {self.port} at {self.link.baudrate} baud.")
            return None
        return found

    def configure_motors(self, return_delay_time: int = 0) -> None:
        for motor in self.motors:
            self.write("Return_Delay_Time", motor, return_delay_time)

    @property
    def is_calibrated(self) -> bool:
        return self.calibration == self.read_calibration()

    def read_calibration(self) -> dict[str, MotorCalibration]:
        offsets = self.sync_read("Homing_Offset", normalize=False)
        mins = self.sync_read("Min_Position_Limit", normalize=False)
        maxes = self.sync_read("Max_Position_Limit", normalize=False)
        drive_modes = self.sync_read("Drive_Mode", normalize=False)
        return {
            m: MotorCalibration(id=motor.id, drive_mode=int(drive_modes[m]), homing_offset=int(offsets[m]),
                                range_min=int(mins[m]), range_max=int(maxes[m]))
            for m, motor in self.motors.items()
        }

    def write_calibration(self, calibration_dict: dict[str, MotorCalibration], cache: bool = True) -> None:
        for motor, cal in calibration_dict.items():
            self.write("Homing_Offset", motor, cal.homing_offset)
            self.write("Min_Position_Limit", motor, cal.range_min)
            self.write("Max_Position_Limit", motor, cal.range_max)
        if cache:
            self.calibration = calibration_dict

    def _get_half_turn_homings(self, positions):
        """Dynamixel: Present = Actual + Homing_Offset, so the centring offset is half a turn − pos."""
        return {m: int((self.model_resolution_table[self._get_motor_model(m)] - 1) / 2) - pos
                for m, pos in positions.items()}

    def disable_torque(self, motors=None, num_retry: int | None = None) -> None:
        for motor in self._get_motors_list(motors):
            self.write("Torque_Enable", motor, 0, num_retry=num_retry)

    def _disable_torque(self, motor: int, model: str, num_retry: int | None = None) -> None:
        address, length = self.model_ctrl_table[model]["Torque_Enable"]
        self._write(address, length, motor, 0, num_retry=num_retry)

    def enable_torque(self, motors=None, num_retry: int | None = None) -> None:
        for motor in self._get_motors_list(motors):
            self.write("Torque_Enable", motor, 1, num_retry=num_retry)

    def reboot(self, motor: str) -> None:
        """Clear a latched hardware error (the only way on X-series); torque is off afterwards."""
        servo_id = self.motors[motor].id
        self._exchange(lambda _: dp.reboot(servo_id), [servo_id], None, what="reboot", num_retry=None)

    # -- health -----------------------------------------------------------------------------------------------

    def read_health(self, motors=None) -> dict[str, MotorHealth]:
        """Two sync reads: Hardware_Error_Status, then Moving (122) .. Present_Temperature (146)."""
        names = self._motor_names(motors)
        ids = [self.motors[n].id for n in names]
        errors = self._exchange(lambda missing: self._vendor_sync_read(70, 1, missing), ids, 1,
                                what="reading health", num_retry=None, raise_on_silence=False)
        vitals = self._exchange(lambda missing: self._vendor_sync_read(122, 25, missing), ids, 25,
                                what="reading health", num_retry=None, raise_on_silence=False)
        health = {}
        for name, servo_id in zip(names, ids):
            if servo_id not in vitals:
                health[name] = MotorHealth(name, servo_id, responded=False)
                continue
            data = vitals[servo_id][1]
            has_current = "Present_Current" in self.model_ctrl_table[self.motors[name].model]
            effort = int.from_bytes(data[4:6], "little", signed=True)
            hw_bits = errors[servo_id][1][0] if servo_id in errors else 0
            health[name] = MotorHealth(
                name, servo_id, responded=True, temperature_c=float(data[24]),
                voltage_v=int.from_bytes(data[22:24], "little") / 10.0,
                load_percent=None if has_current else effort / 10.0,
                current_ma=float(effort) if has_current else None,
                moving=bool(data[0]), errors=dp.describe_hardware_error(hw_bits),
            )
        return health
