"""What our Feetech and Dynamixel buses share: LeRobot's MotorsBus API on top of our own protocol layer.

LeRobot's `SerialMotorsBus` drives a vendor SDK; we keep its public API (so LeRobot's robots, calibration and
scripts run unchanged on top) but replace the transport underneath:

- one `write` + reads until every expected status packet arrived, accepted in any order;
- a retry re-asks only the servos that did not answer; a packet with a bad checksum/CRC is never used;
- a silent servo ends in one `ServoNotRespondingError` naming servo, port and baud rate;
- error bits are reported with the motor's name (`status_errors`), and raise when they mean the command failed;
- `sync_write_read` sends a goal write and a position read in one transfer: one USB round trip per control tick.

Vendor subclasses provide packet builders, the decoder and value encoding through the `_vendor_*` hooks.
"""

from __future__ import annotations

import logging
import os
import time
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lerobot.motors.motors_bus import Motor, MotorCalibration, MotorNormMode, MotorsBus

from .errors import ServoNotRespondingError, ServoStatusError
from .packet_scan import Burst
from .serial_link import SerialLink, is_pseudo_terminal

logger = logging.getLogger(__name__)

COMM_SUCCESS = 0
COMM_RX_TIMEOUT = -6
DEFAULT_NUM_RETRY = 2
REAL_SERVO_TIMEOUT_MS = 25
# An emulator's reply is a thread or process being scheduled: on a loaded 2-core machine that can take tens of
# ms, now and then hundreds. Waiting longer costs nothing on a healthy bus, only on a silent servo.
EMULATED_SERVO_TIMEOUT_MS = 500


@dataclass
class MotorHealth:
    """One servo's vital signs, read in a single cheap transaction per bus."""

    motor: str
    servo_id: int
    responded: bool
    temperature_c: float | None = None
    voltage_v: float | None = None
    load_percent: float | None = None
    current_ma: float | None = None
    moving: bool | None = None
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _ReadPlan:
    """Everything a repeated sync read needs, computed once per (register, motors)."""

    address: int
    length: int
    ids: tuple[int, ...]
    names: tuple[str, ...]
    request: bytes
    sign: Callable[[int], int] | None  # sign decoding of the register, None when unsigned


class ServoBus(MotorsBus):
    """Base of FeetechBus / DynamixelBus. Not used directly."""

    # ms to wait for a status packet beyond its wire time. Real servos answer in < 1 ms; the margin covers USB
    # adapters (an FTDI latency timer defaults to 16 ms). LeRobot's `MotorsBus` names this `default_timeout`.
    default_timeout = REAL_SERVO_TIMEOUT_MS
    status_overhead_bytes = 6  # bytes of a status packet that are not parameters (vendor sets it)
    protocol_family = ""  # "feetech" / "dynamixel" (vendor sets it)

    def __init__(
        self,
        port: str,
        motors: dict[str, Motor],
        calibration: dict[str, MotorCalibration] | None = None,
        *,
        num_retry: int = DEFAULT_NUM_RETRY,
        timeout_ms: float | None = None,
    ):
        if num_retry < 0:
            raise ValueError(f"num_retry must be >= 0, got {num_retry}")
        self._calibration: dict[str, MotorCalibration] = {}
        self._norm_cache: dict[str, tuple] = {}
        super().__init__(port, motors, calibration)
        self.num_retry = num_retry
        self.link = SerialLink(port, self.default_baudrate)
        self._owner_timeout_ms = timeout_ms  # the owner's choice survives connect() and reconnects
        self._timeout_s = self.reply_timeout_ms() / 1000.0
        self._read_plans: dict[tuple, _ReadPlan] = {}
        self._input_dirty = False
        self._pending_bytes = b""
        self.status_errors: dict[str, list[str]] = {}
        self.corrupt_packets = 0
        self.retries = 0

    # -- calibration cache ------------------------------------------------------------------------------------

    @property
    def calibration(self) -> dict[str, MotorCalibration]:
        return self._calibration

    @calibration.setter
    def calibration(self, value: dict[str, MotorCalibration] | None) -> None:
        self._calibration = value or {}
        self._norm_cache = {}

    # -- vendor hooks: abstract, so a subclass missing one fails at construction, not mid-transaction -----------

    @abstractmethod
    def _vendor_ping(self, servo_id: int) -> bytes: ...
    @abstractmethod
    def _vendor_read(self, servo_id: int, address: int, length: int) -> bytes: ...
    @abstractmethod
    def _vendor_write(self, servo_id: int, address: int, data: bytes) -> bytes: ...
    @abstractmethod
    def _vendor_sync_read(self, address: int, length: int, ids: Sequence[int]) -> bytes: ...
    @abstractmethod
    def _vendor_sync_write(self, address: int, length: int, data_by_id: dict[int, bytes]) -> bytes: ...
    @abstractmethod
    def _vendor_decode_packets(self, buffer: bytearray, start: int) -> Burst:
        """The protocol module's `decode_packets`: every packet in the buffer, corrupted ones counted and skipped."""
    @abstractmethod
    def _vendor_unpack(self, packet) -> tuple[int, int, bytes]:
        """(id, error, params) of a decoded status packet."""
    @abstractmethod
    def _vendor_split_error(self, error: int) -> tuple[list[str], list[str]]:
        """(words meaning the command failed, words describing the servo's state)."""
    @abstractmethod
    def _vendor_to_bytes(self, value: int, length: int) -> bytes: ...
    @abstractmethod
    def _vendor_from_bytes(self, data: bytes) -> int: ...
    @abstractmethod
    def _model_number_after_ping(self, servo_id: int, params: bytes, raise_on_error: bool) -> int | None:
        """The model number of a servo that just answered a PING with `params`."""

    # -- connection -------------------------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self.link.is_open

    def _connect(self, handshake: bool = True) -> None:
        self.link.baudrate = self.default_baudrate
        self.link.open()
        self._timeout_s = self.reply_timeout_ms() / 1000.0  # the port may not have existed at construction
        if handshake:
            try:
                self._handshake()
            except Exception:
                self.close_port()
                raise

    def _assert_motors_exist(self) -> None:
        """LeRobot's check that every expected servo answers; when none does, the error also says whether the
        other protocol or another baud rate answers on this port (a Koch arm on an SO-101 port, factory rates)."""
        try:
            super()._assert_motors_exist()
        except RuntimeError as exc:
            if self.anything_answers():
                raise
            hint = self.explain_silence()
            if not hint:
                raise
            raise RuntimeError(f"{exc}\n{hint}") from None

    def anything_answers(self) -> bool:
        """Any servo at all answers a broadcast PING here (True where the protocol has no broadcast PING)."""
        try:
            return bool(self.broadcast_ping(num_retry=1))
        except NotImplementedError:
            return True

    def explain_silence(self) -> str:
        """What answers on this port instead of our servos, as one sentence ('' when nothing does). Closes the
        port: the probe opens it with a bus of each protocol in turn."""
        from .bus_probe import find_answering_bus

        baudrate = self.link.baudrate
        self.close_port()
        logger.info("No servo answers on %s at %d baud; probing other protocols and baud rates.", self.port, baudrate)
        answer = find_answering_bus(self.port, self.protocol_family, baudrate)
        return answer.explain(self.protocol_family, baudrate) if answer else ""

    def disconnect(self, disable_torque: bool = True) -> None:
        """Close the port; with `disable_torque`, torque goes off first even if some servos fail to answer."""
        if not self.is_connected:
            from lerobot.utils.errors import DeviceNotConnectedError

            raise DeviceNotConnectedError(f"{self.__class__.__name__}('{self.port}') is not connected.")
        try:
            if disable_torque:
                self.safe_torque_off()
        finally:
            self.close_port()

    def close_port(self) -> None:
        """Close the serial port without talking to the servos (torque stays as it is). Never raises: this is
        for cleanup paths, where a failing close must not hide the error being handled."""
        try:
            self.link.close()
        except Exception as exc:  # noqa: BLE001 - the port is forgotten either way
            logger.warning("Closing %s failed: %s", self.port, exc)

    def safe_torque_off(self) -> list[str]:
        """Torque off on every servo, best effort: a broadcast-style write first, then per servo with retries.

        Returns the motors that could not be confirmed off (empty on success). Never raises for a silent servo:
        this runs on every exit path, where one dead servo must not keep the others torqued.
        """
        failed = []
        try:
            self._send_torque_off_fast()
        except Exception as exc:  # noqa: BLE001 - the per-motor pass below reports what matters
            logger.debug("fast torque-off failed: %s", exc)
        for motor in self.motors:
            try:
                self.disable_torque(motor, num_retry=max(self.num_retry, 3))
            except Exception as exc:  # noqa: BLE001
                failed.append(motor)
                logger.error("Could not confirm torque off on '%s': %s", motor, exc)
        return failed

    def _send_torque_off_fast(self) -> None:
        """One sync write of Torque_Enable = 0 to all motors (no reply), before the confirmed writes."""
        self.sync_write("Torque_Enable", {m: 0 for m in self.motors}, normalize=False)

    @property
    def timeout_ms(self) -> float:
        """The reply timeout in force now."""
        return self._timeout_s * 1000.0

    @property
    def emulated(self) -> bool:
        """The port is a pseudo-terminal: the servo emulator answers, not servos on a wire."""
        return is_pseudo_terminal(self.port)

    def reply_timeout_ms(self) -> float:
        """How long to wait for a status packet beyond its wire time.

        The owner's timeout (constructor or `set_timeout(ms)`) wins; then LEROBOT_VLA_BUS_TIMEOUT_MS; then the
        default for the port: tight for real servos, wide for an emulator, whose replies come from a process that
        shares the CPU with everything else (training, video encoding) and may be scheduled late.
        """
        if self._owner_timeout_ms is not None:
            return float(self._owner_timeout_ms)
        override = os.environ.get("LEROBOT_VLA_BUS_TIMEOUT_MS")
        if override:
            try:
                return float(override)
            except ValueError:
                raise ValueError(
                    f"LEROBOT_VLA_BUS_TIMEOUT_MS={override!r} is not a number of milliseconds; unset it or give "
                    "e.g. 50."
                ) from None
        return float(EMULATED_SERVO_TIMEOUT_MS if self.emulated else self.default_timeout)

    def set_timeout(self, timeout_ms: float | None = None) -> None:
        """`set_timeout(ms)` sets the owner's timeout; `set_timeout()` (what LeRobot's `connect()` calls) keeps it,
        or falls back to the port's default, instead of discarding it."""
        if timeout_ms is not None:
            if timeout_ms <= 0:
                raise ValueError(f"timeout_ms must be positive, got {timeout_ms}")
            self._owner_timeout_ms = timeout_ms
        self._timeout_s = self.reply_timeout_ms() / 1000.0

    def get_baudrate(self) -> int:
        return self.link.baudrate

    def set_baudrate(self, baudrate: int) -> None:
        if baudrate != self.link.baudrate:
            logger.info(f"Setting bus baud rate to {baudrate}. Previously {self.link.baudrate}.")
            self.link.baudrate = baudrate

    @classmethod
    def scan_port(cls, port: str, *args, **kwargs) -> dict[int, list[int]]:
        """Broadcast-ping at every baud rate the host can set; returns {baudrate: [ids]}."""
        bus = cls(port, {}, *args, **kwargs)
        bus._connect(handshake=False)
        found = {}
        try:
            for baudrate in bus.available_baudrates:
                bus.set_baudrate(baudrate)
                ids_models = bus.broadcast_ping()
                if ids_models:
                    found[baudrate] = list(ids_models)
        finally:
            bus.close_port()
        return found

    def _find_single_motor(self, motor: str, initial_baudrate: int | None = None) -> tuple[int, int]:
        """(baud rate, id) of the only servo on the bus, checked to be the model `motor` expects (motor setup)."""
        model = self.motors[motor].model
        expected = self.model_number_table[model]
        baudrates = [initial_baudrate] if initial_baudrate else self.available_baudrates
        for baudrate in baudrates:
            self.set_baudrate(baudrate)
            found = self.broadcast_ping()
            if not found:
                continue
            if len(found) > 1:
                raise RuntimeError(
                    f"Several servos answered on {self.port} at {baudrate} baud (ids {sorted(found)}). Connect only "
                    f"the '{motor}' servo while setting it up."
                )
            servo_id, model_number = next(iter(found.items()))
            if model_number != expected:
                raise RuntimeError(
                    f"The servo found at {baudrate} baud (id {servo_id}) is model {model_number}, but '{motor}' "
                    f"should be {model} ({expected}). Connect the right servo."
                )
            return baudrate, servo_id
        raise RuntimeError(
            f"No servo found on {self.port} at any baud rate ({', '.join(map(str, baudrates))}). Check that only "
            f"'{motor}' is connected and that the adapter has power."
        )

    # -- transactions -----------------------------------------------------------------------------------------

    def _wire_time_s(self, n_bytes: int) -> float:
        return n_bytes * 10.0 / self.link.baudrate

    def _vendor_parse_exact(self, buffer: bytes, ids: Sequence[int], n_params: int) -> list[int] | None:
        """Values from a reply burst laid out exactly as expected (every servo, in order, no error bits), else
        None. The common case of a healthy bus, checked without building packet objects."""
        return None

    def _fast_sync_read(self, plan: _ReadPlan) -> tuple[list[int] | None, bool]:
        """One sync read on the hot path: write, read the expected byte count, parse it in one go.

        Returns (values, sent). Values are None when anything is unusual (short or extra bytes, an error bit, a
        bad checksum); the caller then runs the general path on the bytes that arrived (`_pending_bytes`), which
        counts this request as its first try and re-asks only the missing servos.
        """
        link = self.link
        expected = len(plan.ids) * (self.status_overhead_bytes + plan.length)
        deadline = time.perf_counter() + self._timeout_s + self._wire_time_s(len(plan.request) + expected)
        link.write(plan.request)
        buffer = link.read_some(deadline)
        while 0 < len(buffer) < expected:
            chunk = link.read_some(deadline)
            if not chunk:
                break
            buffer += chunk
        values = self._vendor_parse_exact(buffer, plan.ids, plan.length) if len(buffer) == expected else None
        if values is None:
            self._pending_bytes = buffer
            return None, True
        if self.status_errors:
            self._note_errors({i: (0, b"") for i in plan.ids}, "")
        return values, True

    def _transact(self, request: bytes, expect_ids: Sequence[int], n_params: int | None,
                  expect_extra_bytes: int = 0, decode_packets=None) -> dict[int, tuple[int, bytes]]:
        """Send `request` and collect status packets from `expect_ids` (any order) until all came or time ran out.

        Returns {id: (error, params)}. Packets from other ids, of the wrong length, or with a bad checksum are
        dropped (counted in `corrupt_packets`). An empty `request` only parses `_pending_bytes`, the bytes a hot
        path already waited for.
        """
        link = self.link
        if self._input_dirty:  # a previous transaction timed out: its late bytes must not be taken as replies
            link.discard_input()
            self._input_dirty = False
        expected_bytes = len(expect_ids) * (self.status_overhead_bytes + (n_params or 0)) + expect_extra_bytes
        deadline = time.perf_counter() + self._timeout_s + self._wire_time_s(len(request) + expected_bytes)
        if request:
            link.write(request)
        got: dict[int, tuple[int, bytes]] = {}
        if not expect_ids:
            return got
        wanted = set(expect_ids)
        buffer = bytearray(self._pending_bytes)  # bytes a failed fast path already read for this request
        self._pending_bytes = b""
        position = 0
        decode_packets = decode_packets or self._vendor_decode_packets
        unpack = self._vendor_unpack
        first = bool(buffer)
        while wanted:
            if not first:
                if not request:  # the hot path already waited out this request's deadline
                    self._input_dirty = True
                    break
                chunk = link.read_some(deadline)
                if not chunk:
                    self._input_dirty = True
                    break
                buffer += chunk
            first = False
            packets, position, corrupt = decode_packets(buffer, position)
            self.corrupt_packets += corrupt
            for packet, _ in packets:
                servo_id, error, params = unpack(packet)
                if servo_id in wanted and (n_params is None or len(params) == n_params):
                    got[servo_id] = (error, params)
                    wanted.discard(servo_id)
        return got

    def _collect_broadcast(self, request: bytes, reply_bytes: int) -> list:
        """Send a broadcast request and decode every reply within the protocol's full answer window.

        Servos answer a broadcast PING one after another, the vendor SDKs budget up to ~3 ms per possible ID,
        so the window is waited out in full: stopping at the first quiet gap would miss high IDs on a real bus.
        """
        if self._input_dirty:
            self.link.discard_input()
        window_s = self._wire_time_s(reply_bytes * 253) + 0.003 * 253 + 0.016
        deadline = time.perf_counter() + window_s
        self.link.write(request)
        buffer, position, packets = bytearray(), 0, []
        while True:
            chunk = self.link.read_some(deadline)
            if not chunk:
                break
            buffer += chunk
            found, position, corrupt = self._vendor_decode_packets(buffer, position)
            self.corrupt_packets += corrupt
            packets += [packet for packet, _ in found]
        self._input_dirty = False
        return packets

    def _exchange(self, build: Callable[[Sequence[int]], bytes], ids: Sequence[int], n_params: int | None, *,
                  what: str, num_retry: int | None, raise_on_silence: bool = True,
                  already_sent: bool = False) -> dict[int, tuple[int, bytes]]:
        """`_transact` with retries that re-ask only the servos still missing. With `already_sent`, the first
        try is the request the hot path sent (its replies are in `_pending_bytes`)."""
        tries = 1 + (self.num_retry if num_retry is None else num_retry)
        got: dict[int, tuple[int, bytes]] = {}
        missing = list(ids)
        corrupt_before = self.corrupt_packets
        for attempt in range(tries):
            if attempt:
                self.retries += 1
            request = b"" if attempt == 0 and already_sent else build(missing)
            got.update(self._transact(request, missing, n_params))
            missing = [i for i in missing if i not in got]
            if not missing:
                break
        self._note_errors(got, what)
        if missing and raise_on_silence:
            raise ServoNotRespondingError(
                motors={i: self._id_to_name_dict.get(i, f"id {i}") for i in missing}, port=self.port,
                baudrate=self.link.baudrate, tries=tries, what=what,
                corrupt_packets=self.corrupt_packets - corrupt_before,
                timeout_ms=self._timeout_s * 1000.0, emulated=self.emulated,
            )
        return got

    def _note_errors(self, got: dict[int, tuple[int, bytes]], what: str) -> None:
        """Record state error bits per motor (warn on change); raise when an error means the command failed."""
        for servo_id, (error, _) in got.items():
            motor = self._id_to_name_dict.get(servo_id, f"id {servo_id}")
            if not error:
                if motor in self.status_errors:
                    del self.status_errors[motor]
                continue
            failure, state = self._vendor_split_error(error)
            if state and self.status_errors.get(motor) != state:
                logger.warning("Servo '%s' (id %d) on %s reports %s", motor, servo_id, self.port, ", ".join(state))
            if state:
                self.status_errors[motor] = state
            if failure:
                raise ServoStatusError(motor=motor, servo_id=servo_id, errors=failure + state, port=self.port,
                                       what=what)

    # -- LeRobot's low-level API (used by LeRobot's setup_motor, calibration and robot code) ------------------

    def _read(self, address: int, length: int, motor_id: int, *, num_retry: int | None = None,
              raise_on_error: bool = True, err_msg: str = "") -> tuple[int, int, int]:
        what = err_msg or f"read of {length} bytes at address {address}"
        got = self._exchange(lambda _: self._vendor_read(motor_id, address, length), [motor_id], length,
                             what=what, num_retry=num_retry, raise_on_silence=raise_on_error)
        if motor_id not in got:
            return 0, COMM_RX_TIMEOUT, 0
        error, params = got[motor_id]
        return self._vendor_from_bytes(params), COMM_SUCCESS, error

    def _write(self, addr: int, length: int, motor_id: int, value: int, *, num_retry: int | None = None,
               raise_on_error: bool = True, err_msg: str = "") -> tuple[int, int]:
        data = self._vendor_to_bytes(value, length)
        what = err_msg or f"write of {value} at address {addr}"
        got = self._exchange(lambda _: self._vendor_write(motor_id, addr, data), [motor_id], None, what=what,
                             num_retry=num_retry, raise_on_silence=raise_on_error)
        if motor_id not in got:
            return COMM_RX_TIMEOUT, 0
        return COMM_SUCCESS, got[motor_id][0]

    def _sync_read(self, addr: int, length: int, motor_ids: list[int], *, num_retry: int | None = None,
                   raise_on_error: bool = True, err_msg: str = "") -> tuple[dict[int, int], int]:
        got = self._exchange(lambda ids: self._vendor_sync_read(addr, length, ids), motor_ids, length,
                             what=err_msg or f"sync read at address {addr}", num_retry=num_retry,
                             raise_on_silence=raise_on_error)
        values = {i: self._vendor_from_bytes(got[i][1]) for i in motor_ids if i in got}
        return values, COMM_SUCCESS if len(values) == len(motor_ids) else COMM_RX_TIMEOUT

    def _sync_write(self, addr: int, length: int, ids_values: dict[int, int], num_retry: int = 0,
                    raise_on_error: bool = True, err_msg: str = "") -> int:
        data = {i: self._vendor_to_bytes(v, length) for i, v in ids_values.items()}
        self.link.write(self._vendor_sync_write(addr, length, data))
        return COMM_SUCCESS

    def _serialize_data(self, value: int, length: int) -> list[int]:
        return list(self._vendor_to_bytes(value, length))

    # -- public API -------------------------------------------------------------------------------------------

    def ping(self, motor, num_retry: int = 0, raise_on_error: bool = False) -> int | None:
        servo_id = self._get_motor_id(motor)
        got = self._exchange(lambda _: self._vendor_ping(servo_id), [servo_id], None, what="ping",
                             num_retry=num_retry, raise_on_silence=raise_on_error)
        if servo_id not in got:
            return None
        return self._model_number_after_ping(servo_id, got[servo_id][1], raise_on_error)

    def _get_motor_id(self, motor) -> int:
        return motor if isinstance(motor, int) else self.motors[motor].id

    def _register(self, data_name: str, names: Sequence[str]) -> tuple[int, int]:
        models = {self.motors[n].model for n in names}
        address_sizes = set()
        for model in models:
            table = self.model_ctrl_table[model]
            if data_name not in table:
                raise KeyError(f"Servo model {model} has no register named {data_name!r}.")
            address_sizes.add(table[data_name])
        if len(address_sizes) != 1:
            raise NotImplementedError(
                f"{data_name!r} sits at different addresses on {sorted(models)}; read these motors separately."
            )
        return address_sizes.pop()

    def _motor_names(self, motors) -> tuple[str, ...]:
        if motors is None:
            return tuple(self.motors)
        if isinstance(motors, (str, int)):
            motors = [motors]
        return tuple(m if isinstance(m, str) else self._id_to_name(m) for m in motors)

    def _read_plan(self, data_name: str, names: tuple[str, ...]) -> _ReadPlan:
        key = (data_name, names)
        plan = self._read_plans.get(key)
        if plan is None:
            address, length = self._register(data_name, names)
            ids = tuple(self.motors[n].id for n in names)
            plan = _ReadPlan(address, length, ids, names, self._vendor_sync_read(address, length, ids),
                             self._sign_decoder(data_name, names))
            self._read_plans[key] = plan
        return plan

    def _shared_encoding(self, data_name: str, names: Sequence[str]) -> int | None:
        """The `model_encoding_table` entry of a register (Feetech: sign bit, Dynamixel: size in bytes) common to
        these motors, or None when the register is unsigned."""
        entries = {self.model_encoding_table.get(self.motors[n].model, {}).get(data_name) for n in names}
        if len(entries) != 1:
            raise NotImplementedError(f"{data_name!r} is encoded differently on {list(names)}; access them separately.")
        return entries.pop()

    def _sign_decoder(self, data_name: str, names: Sequence[str]) -> Callable[[int], int] | None:
        return None

    def _sign_encoder(self, data_name: str, names: Sequence[str]) -> Callable[[int], int] | None:
        return None

    def read(self, data_name: str, motor: str, *, normalize: bool = True, num_retry: int | None = None):
        return self._read_registers(data_name, (motor,), normalize, num_retry, single=True)[motor]

    def sync_read(self, data_name: str, motors=None, *, normalize: bool = True,
                  num_retry: int | None = None) -> dict:
        return self._read_registers(data_name, self._motor_names(motors), normalize, num_retry, single=False)

    def _read_registers(self, data_name: str, names: tuple[str, ...], normalize: bool, num_retry: int | None,
                        single: bool) -> dict:
        """READ (one motor) or SYNC_READ (several), decoded and optionally normalised, in motor order."""
        self._require_connected()
        plan = self._read_plan(data_name, names)
        raw, sent = None, False
        if single:
            servo_id = plan.ids[0]
            build = lambda _: self._vendor_read(servo_id, plan.address, plan.length)  # noqa: E731
        else:
            self._assert_protocol_is_compatible("sync_read")
            if not self._input_dirty:
                raw, sent = self._fast_sync_read(plan)
            full = plan.request
            build = lambda ids: full if len(ids) == len(plan.ids) else self._vendor_sync_read(  # noqa: E731
                plan.address, plan.length, ids)
        if raw is None:
            got = self._exchange(build, plan.ids, plan.length, what=f"reading {data_name}", num_retry=num_retry,
                                 already_sent=sent)
            raw = [self._vendor_from_bytes(got[i][1]) for i in plan.ids]
        if plan.sign is not None:
            raw = [plan.sign(v) for v in raw]
        if normalize and data_name in self.normalized_data:
            return dict(zip(names, self._normalize_list(names, raw)))
        return dict(zip(names, raw))

    def write(self, data_name: str, motor: str, value, *, normalize: bool = True, num_retry: int | None = None):
        self._require_connected()
        names = (motor,)
        address, length = self._register(data_name, names)
        raw = self._to_raw(data_name, names, [value], normalize)[0]
        servo_id = self.motors[motor].id
        data = self._vendor_to_bytes(raw, length)
        self._exchange(lambda _: self._vendor_write(servo_id, address, data), [servo_id], None,
                       what=f"writing {data_name}={value}", num_retry=num_retry)

    def sync_write(self, data_name: str, values, *, normalize: bool = True, num_retry: int | None = None) -> None:
        self._require_connected()
        self.link.write(self._sync_write_packet(data_name, values, normalize))

    def sync_write_read(self, write_name: str, values: dict, read_name: str = "Present_Position", *,
                        normalize: bool = True, num_retry: int | None = None) -> dict:
        """Write one register on several motors and read another from all motors, in one USB transfer.

        This is a control tick: goals out, positions back, one round trip. A retry re-reads only (the write
        carries no reply and is not repeated).
        """
        self._require_connected()
        names = tuple(self.motors)
        plan = self._read_plan(read_name, names)
        self._assert_protocol_is_compatible("sync_read")
        combined = self._sync_write_packet(write_name, values, normalize) + plan.request
        first = [True]

        def build(ids):
            if first[0]:
                first[0] = False
                return combined
            return self._vendor_sync_read(plan.address, plan.length, ids)

        got = self._exchange(build, plan.ids, plan.length, what=f"writing {write_name} and reading {read_name}",
                             num_retry=num_retry)
        raw = [self._vendor_from_bytes(got[i][1]) for i in plan.ids]
        if plan.sign is not None:
            raw = [plan.sign(v) for v in raw]
        if normalize and read_name in self.normalized_data:
            return dict(zip(names, self._normalize_list(names, raw)))
        return dict(zip(names, raw))

    def _sync_write_packet(self, data_name: str, values, normalize: bool) -> bytes:
        if not isinstance(values, dict):
            values = {m: values for m in self.motors}
        names = tuple(m if isinstance(m, str) else self._id_to_name(m) for m in values)
        address, length = self._register(data_name, names)
        raws = self._to_raw(data_name, names, list(values.values()), normalize)
        to_bytes = self._vendor_to_bytes
        data = {self.motors[n].id: to_bytes(r, length) for n, r in zip(names, raws)}
        return self._vendor_sync_write(address, length, data)

    def _to_raw(self, data_name: str, names: Sequence[str], values: list, normalize: bool) -> list[int]:
        if normalize and data_name in self.normalized_data:
            raws = self._unnormalize_list(names, values)
        else:
            raws = [int(v) for v in values]
        encode = self._sign_encoder(data_name, names)
        return [encode(r) for r in raws] if encode else raws

    def _require_connected(self) -> None:
        if not self.link.is_open:
            from lerobot.utils.errors import DeviceNotConnectedError

            raise DeviceNotConnectedError(
                f"{self.__class__.__name__}('{self.port}') is not connected. Call `connect()` first."
            )

    # -- normalisation: LeRobot's arithmetic exactly, with per-motor constants computed once -----------------

    def _norm_constants(self, motor: str) -> tuple:
        constants = self._norm_cache.get(motor)
        if constants is None:
            if not self._calibration:
                raise RuntimeError(f"{self} has no calibration registered.")
            cal = self._calibration[motor]
            if cal.range_max == cal.range_min:
                raise ValueError(f"Invalid calibration for motor '{motor}': min and max are equal.")
            drive = bool(self.apply_drive_mode and cal.drive_mode)
            max_res = self.model_resolution_table[self.motors[motor].model] - 1
            constants = (self.motors[motor].norm_mode, cal.range_min, cal.range_max, drive, max_res)
            self._norm_cache[motor] = constants
        return constants

    def _normalize_list(self, names: Sequence[str], raws: Sequence[int]) -> list[float]:
        out = []
        for motor, val in zip(names, raws):
            mode, min_, max_, drive, max_res = self._norm_constants(motor)
            if mode is MotorNormMode.DEGREES:
                out.append((val - (min_ + max_) / 2) * 360 / max_res)
                continue
            bounded = min(max_, max(min_, val))
            if mode is MotorNormMode.RANGE_M100_100:
                norm = (((bounded - min_) / (max_ - min_)) * 200) - 100
                out.append(-norm if drive else norm)
            elif mode is MotorNormMode.RANGE_0_100:
                norm = ((bounded - min_) / (max_ - min_)) * 100
                out.append(100 - norm if drive else norm)
            else:
                raise NotImplementedError(mode)
        return out

    def _unnormalize_list(self, names: Sequence[str], values: Sequence[float]) -> list[int]:
        out = []
        for motor, val in zip(names, values):
            mode, min_, max_, drive, max_res = self._norm_constants(motor)
            if mode is MotorNormMode.DEGREES:
                out.append(int((val * max_res / 360) + (min_ + max_) / 2))
            elif mode is MotorNormMode.RANGE_M100_100:
                val = -val if drive else val
                bounded = min(100.0, max(-100.0, val))
                out.append(int(((bounded + 100) / 200) * (max_ - min_) + min_))
            elif mode is MotorNormMode.RANGE_0_100:
                val = 100 - val if drive else val
                bounded = min(100.0, max(0.0, val))
                out.append(int((bounded / 100) * (max_ - min_) + min_))
            else:
                raise NotImplementedError(mode)
        return out

    def _normalize(self, ids_values: dict[int, int]) -> dict[int, float]:
        names = [self._id_to_name(i) for i in ids_values]
        return dict(zip(ids_values, self._normalize_list(names, list(ids_values.values()))))

    def _unnormalize(self, ids_values: dict[int, float]) -> dict[int, int]:
        names = [self._id_to_name(i) for i in ids_values]
        return dict(zip(ids_values, self._unnormalize_list(names, list(ids_values.values()))))

    # -- health -----------------------------------------------------------------------------------------------

    @abstractmethod
    def read_health(self, motors=None) -> dict[str, MotorHealth]:
        """Temperature, voltage, load/current and error bits of every motor, in as few transactions as possible.

        Silent servos come back with `responded=False` instead of raising, so a monitor can decide what to do.
        """
