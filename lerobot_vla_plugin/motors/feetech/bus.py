"""FeetechBus: LeRobot's MotorsBus API for STS/SMS/SCS servos, over pyserial and our protocol module.

No vendor SDK at run time: two PyPI packages install the same `scservo_sdk` module with different APIs, and the
one LeRobot uses keeps the byte order in a module global and drops out-of-order sync replies.
Feetech error bits describe the servo's state (the command itself was executed), so they are recorded and
warned about per motor, never turned into a failed transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from lerobot.motors.motors_bus import Motor, MotorCalibration

from ..bus_base import MotorHealth, ServoBus
from . import protocol as fp
from .tables import MODEL_BAUDRATE_TABLE, MODEL_CONTROL_TABLE, MODEL_ENCODING_TABLE, MODEL_NUMBER_TABLE
from .tables import MODEL_PROTOCOL, MODEL_RESOLUTION, SCAN_BAUDRATES

logger = logging.getLogger(__name__)

_HEALTH_ADDRESS, _HEALTH_LENGTH = 56, 15  # Present_Position (56) .. Present_Current (69-70) in one read
_SCS_HEALTH_LENGTH = 11  # SCS servos end at Moving (66): they have no Present_Current


class FeetechBus(ServoBus):
    protocol_family = "feetech"
    apply_drive_mode = True
    available_baudrates = list(SCAN_BAUDRATES)
    default_baudrate = 1_000_000
    model_baudrate_table = MODEL_BAUDRATE_TABLE
    model_ctrl_table = MODEL_CONTROL_TABLE
    model_encoding_table = MODEL_ENCODING_TABLE
    model_number_table = MODEL_NUMBER_TABLE
    model_resolution_table = MODEL_RESOLUTION
    normalized_data = ["Goal_Position", "Present_Position"]
    status_overhead_bytes = 6

    def __init__(self, port: str, motors: dict[str, Motor], calibration: dict[str, MotorCalibration] | None = None,
                 protocol_version: int = 0, **kwargs):
        super().__init__(port, motors, calibration, **kwargs)
        self.protocol_version = protocol_version
        wrong = [m for m, motor in self.motors.items() if MODEL_PROTOCOL[motor.model] != protocol_version]
        if wrong:
            raise ValueError(
                f"Motors {wrong} do not use Feetech protocol {protocol_version} (0 = STS/SMS little-endian, "
                "1 = SCS big-endian); one bus carries one family."
            )
        self._big_endian = protocol_version == 1

    # -- vendor hooks -----------------------------------------------------------------------------------------

    def _vendor_ping(self, servo_id): return fp.ping(servo_id)
    def _vendor_read(self, servo_id, address, length): return fp.read(servo_id, address, length)
    def _vendor_write(self, servo_id, address, data): return fp.write(servo_id, address, data)
    def _vendor_sync_read(self, address, length, ids): return fp.sync_read(address, length, ids)
    def _vendor_sync_write(self, address, length, data_by_id): return fp.sync_write(address, length, data_by_id)
    _vendor_decode_packets = staticmethod(fp.decode_packets)

    @staticmethod
    def _vendor_unpack(packet):
        return packet.servo_id, packet.code, packet.params

    def _vendor_parse_exact(self, buffer, ids, n_params):
        size = 6 + n_params
        order = "big" if self._big_endian else "little"
        values = []
        offset = 0
        for servo_id in ids:
            if (buffer[offset] != 0xFF or buffer[offset + 1] != 0xFF or buffer[offset + 2] != servo_id
                    or buffer[offset + 3] != n_params + 2 or buffer[offset + 4]
                    or ~sum(buffer[offset + 2 : offset + size - 1]) & 0xFF != buffer[offset + size - 1]):
                return None
            values.append(int.from_bytes(buffer[offset + 5 : offset + 5 + n_params], order))
            offset += size
        return values

    def _vendor_split_error(self, error: int):
        return [], fp.describe_error(error)

    def _vendor_to_bytes(self, value: int, length: int) -> bytes:
        return int(value).to_bytes(length, "big" if self._big_endian else "little")

    def _vendor_from_bytes(self, data: bytes) -> int:
        return int.from_bytes(data, "big" if self._big_endian else "little")

    def _sign_decoder(self, data_name: str, names: Sequence[str]):
        bit = self._shared_encoding(data_name, names)
        return None if bit is None else lambda raw: fp.decode_sign_magnitude(raw, bit)

    def _sign_encoder(self, data_name: str, names: Sequence[str]):
        bit = self._shared_encoding(data_name, names)
        return None if bit is None else lambda value: fp.encode_sign_magnitude(value, bit)

    def _model_number_after_ping(self, servo_id: int, params: bytes, raise_on_error: bool) -> int | None:
        """A Feetech PING reply carries no model number: read it (address 3) as the vendor SDK does."""
        value, comm, _ = self._read(3, 2, servo_id, raise_on_error=raise_on_error, err_msg="reading Model_Number")
        return value if comm == 0 else None

    # -- LeRobot abstract hooks ---------------------------------------------------------------------------------

    def _assert_protocol_is_compatible(self, instruction_name: str) -> None:
        if instruction_name in ("sync_read", "broadcast_ping") and self.protocol_version == 1:
            raise NotImplementedError(
                f"'{instruction_name}' is not available on Feetech SCS servos (protocol 1); read them one by one."
            )

    def _encode_sign(self, data_name, ids_values):
        table = self.model_encoding_table
        for i in ids_values:
            bit = table.get(self._id_to_model(i), {}).get(data_name)
            if bit is not None:
                ids_values[i] = fp.encode_sign_magnitude(ids_values[i], bit)
        return ids_values

    def _decode_sign(self, data_name, ids_values):
        table = self.model_encoding_table
        for i in ids_values:
            bit = table.get(self._id_to_model(i), {}).get(data_name)
            if bit is not None:
                ids_values[i] = fp.decode_sign_magnitude(ids_values[i], bit)
        return ids_values

    def _split_into_byte_chunks(self, value: int, length: int) -> list[int]:
        return list(self._vendor_to_bytes(value, length))

    def _handshake(self) -> None:
        self._assert_motors_exist()
        self._assert_same_firmware()

    def _assert_same_firmware(self) -> None:
        versions = self.read_firmware_versions()
        if len(set(versions.values())) > 1:
            listing = ", ".join(f"{m}={v}" for m, v in versions.items())
            raise RuntimeError(
                f"Servos on {self.port} run different firmware versions ({listing}). Mixed firmware behaves "
                "differently under the same commands; update them with Feetech's FD software to one version."
            )

    def read_firmware_versions(self) -> dict[str, str]:
        versions = {}
        for motor, m in self.motors.items():
            major, _, _ = self._read(0, 1, m.id, err_msg="reading Firmware_Major_Version")
            minor, _, _ = self._read(1, 1, m.id, err_msg="reading Firmware_Minor_Version")
            versions[motor] = f"{major}.{minor}"
        return versions

    def broadcast_ping(self, num_retry: int = 0, raise_on_error: bool = False) -> dict[int, int] | None:
        """Every servo answers a broadcast PING in turn; then each one's model number is read."""
        self._assert_protocol_is_compatible("broadcast_ping")
        found: dict[int, int] = {}
        for _ in range(1 + num_retry):
            found = self._collect_broadcast_ping()
            if found:
                break
        if not found:
            if raise_on_error:
                raise ConnectionError(f"No servo answered a broadcast ping on {self.port} at {self.link.baudrate} baud.")
            return None
        models = {}
        for servo_id in sorted(found):
            value, comm, _ = self._read(3, 2, servo_id, raise_on_error=False)
            if comm == 0:
                models[servo_id] = value
        return models

    def _collect_broadcast_ping(self) -> dict[int, int]:
        """{id: error byte} of every servo answering a broadcast PING (6-byte replies)."""
        return {p.servo_id: p.code for p in self._collect_broadcast(fp.ping(fp.BROADCAST_ID), 6) if not p.params}

    def configure_motors(self, return_delay_time: int = 0, maximum_acceleration: int = 254,
                         acceleration: int = 254) -> None:
        for motor in self.motors:
            self.write("Return_Delay_Time", motor, return_delay_time)
            if self.protocol_version == 0:
                self.write("Maximum_Acceleration", motor, maximum_acceleration)
            self.write("Acceleration", motor, acceleration)

    @property
    def is_calibrated(self) -> bool:
        stored = self.read_calibration()
        if set(stored) != set(self.calibration):
            return False
        return all(
            self.calibration[m].range_min == c.range_min and self.calibration[m].range_max == c.range_max
            and (self.protocol_version == 1 or self.calibration[m].homing_offset == c.homing_offset)
            for m, c in stored.items()
        )

    def read_calibration(self) -> dict[str, MotorCalibration]:
        names = tuple(self.motors)
        if self.protocol_version == 0:
            offsets = self.sync_read("Homing_Offset", names, normalize=False)
        else:
            offsets = dict.fromkeys(names, 0)
        mins = self.sync_read("Min_Position_Limit", names, normalize=False) if self.protocol_version == 0 else {
            m: self.read("Min_Position_Limit", m, normalize=False) for m in names}
        maxes = self.sync_read("Max_Position_Limit", names, normalize=False) if self.protocol_version == 0 else {
            m: self.read("Max_Position_Limit", m, normalize=False) for m in names}
        return {
            m: MotorCalibration(id=self.motors[m].id, drive_mode=0, homing_offset=int(offsets[m]),
                                range_min=int(mins[m]), range_max=int(maxes[m]))
            for m in names
        }

    def write_calibration(self, calibration_dict: dict[str, MotorCalibration], cache: bool = True) -> None:
        for motor, cal in calibration_dict.items():
            if self.protocol_version == 0:
                self.write("Homing_Offset", motor, cal.homing_offset)
            self.write("Min_Position_Limit", motor, cal.range_min)
            self.write("Max_Position_Limit", motor, cal.range_max)
        if cache:
            self.calibration = calibration_dict

    def _get_half_turn_homings(self, positions):
        """Feetech: Present = Actual − Homing_Offset, so the offset that centres a joint is pos − half a turn."""
        return {m: pos - int((self.model_resolution_table[self._get_motor_model(m)] - 1) / 2)
                for m, pos in positions.items()}

    def disable_torque(self, motors=None, num_retry: int | None = None) -> None:
        for motor in self._get_motors_list(motors):
            self.write("Torque_Enable", motor, 0, num_retry=num_retry)
            self.write("Lock", motor, 0, num_retry=num_retry)

    def _disable_torque(self, motor: int, model: str, num_retry: int | None = None) -> None:
        for name in ("Torque_Enable", "Lock"):
            address, length = self.model_ctrl_table[model][name]
            self._write(address, length, motor, 0, num_retry=num_retry)

    def enable_torque(self, motors=None, num_retry: int | None = None) -> None:
        for motor in self._get_motors_list(motors):
            self.write("Torque_Enable", motor, 1, num_retry=num_retry)
            self.write("Lock", motor, 1, num_retry=num_retry)

    # -- health -----------------------------------------------------------------------------------------------

    def read_health(self, motors=None) -> dict[str, MotorHealth]:
        names = self._motor_names(motors)
        ids = [self.motors[n].id for n in names]
        if self.protocol_version == 1:  # SCS servos have no SYNC_READ: one READ per servo
            length = _SCS_HEALTH_LENGTH
            got = {}
            for servo_id in ids:
                got |= self._exchange(lambda _, i=servo_id: fp.read(i, _HEALTH_ADDRESS, length), [servo_id], length,
                                      what="reading health", num_retry=None, raise_on_silence=False)
        else:
            length = _HEALTH_LENGTH
            got = self._exchange(lambda missing: fp.sync_read(_HEALTH_ADDRESS, length, missing), ids, length,
                                 what="reading health", num_retry=None, raise_on_silence=False)
        order = "big" if self._big_endian else "little"
        health = {}
        for name, servo_id in zip(names, ids):
            if servo_id not in got:
                health[name] = MotorHealth(name, servo_id, responded=False)
                continue
            error, data = got[servo_id]
            load = fp.decode_sign_magnitude(int.from_bytes(data[4:6], order), 10)
            health[name] = MotorHealth(
                name, servo_id, responded=True, temperature_c=float(data[7]), voltage_v=data[6] / 10.0,
                load_percent=load / 10.0,
                current_ma=int.from_bytes(data[13:15], order) * 6.5 if length == _HEALTH_LENGTH else None,
                moving=bool(data[10]), errors=fp.describe_error(error | data[9]),
            )
        return health
