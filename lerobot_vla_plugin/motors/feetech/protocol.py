"""Feetech SCS/STS wire protocol: packet framing, checksums, instruction builders and register values.

Pure functions with no I/O, shared by the bus driver and the byte-level servo emulator so both speak exactly
the same bytes. Byte order (STS/SMS little-endian, SCS big-endian) is a per-call argument, never module state,
so buses of both families can live in one process.

Frame (instruction and status alike)::

    FF FF | ID | LEN | INSTRUCTION or ERROR | PARAM 1..N | CHECKSUM      LEN = N + 2, total = LEN + 4
    CHECKSUM = ~(ID + LEN + INSTRUCTION/ERROR + sum(PARAM)) & 0xFF
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum, IntFlag

from ..packet_scan import Burst, scan_packets

HEADER = b"\xff\xff"
BROADCAST_ID = 0xFE
MAX_ID = 0xFD  # highest id a servo can hold (the vendor SDK stops at 0xFC)
# LEN is one byte and counts the code and checksum bytes, so a packet carries at most 253 parameter bytes.
MAX_PARAMS = 0xFF - 2
_MIN_LENGTH = 2  # LEN of a packet without parameters (code + checksum)


class Instruction(IntEnum):
    PING = 0x01
    READ = 0x02
    WRITE = 0x03
    REG_WRITE = 0x04
    ACTION = 0x05
    RESET = 0x06  # factory reset of everything except the ID
    REBOOT = 0x08
    SYNC_READ = 0x82
    SYNC_WRITE = 0x83


class StatusError(IntFlag):
    """Bits of a status packet's error byte (also the Status register, address 65)."""

    VOLTAGE = 0x01
    ANGLE_SENSOR = 0x02
    OVERHEAT = 0x04
    OVERCURRENT = 0x08
    OVERLOAD = 0x20


_ERROR_WORDS = (
    (StatusError.VOLTAGE, "input voltage"),
    (StatusError.ANGLE_SENSOR, "angle sensor"),
    (StatusError.OVERHEAT, "overheat"),
    (StatusError.OVERCURRENT, "overcurrent"),
    (StatusError.OVERLOAD, "overload"),
)
_KNOWN_ERROR_BITS = sum(flag for flag, _ in _ERROR_WORDS)


def describe_error(error: int) -> list[str]:
    """Human words for the bits set in a status error byte, in bit order (empty when there is no error).

    Undocumented bits are reported as "unknown bit N" rather than dropped, so a firmware surprise stays visible.
    """
    words = [word for flag, word in _ERROR_WORDS if error & flag]
    unknown = error & ~_KNOWN_ERROR_BITS & 0xFF
    words.extend(f"unknown bit {bit}" for bit in range(8) if unknown >> bit & 1)
    return words


@dataclass(frozen=True, slots=True)
class Packet:
    """One decoded frame. ``code`` is the instruction (host → servo) or the error byte (servo → host)."""

    servo_id: int
    code: int
    params: bytes


class ChecksumError(ValueError):
    """A complete frame whose checksum does not match its bytes.

    ``start``/``end`` delimit the bad frame in the decoded buffer so a reader can skip it and keep going.
    """

    def __init__(self, servo_id: int, start: int, end: int, expected: int, received: int):
        super().__init__(
            f"Corrupted Feetech packet from servo id {servo_id}: checksum byte is 0x{received:02X} but the frame's "
            f"bytes give 0x{expected:02X}. Usual causes are electrical noise, a baud-rate mismatch or two servos "
            "sharing one id; check the wiring and power, then run the motor setup to give every servo its own id."
        )
        self.servo_id = servo_id
        self.start = start
        self.end = end
        self.expected = expected
        self.received = received


def checksum(body: bytes | bytearray) -> int:
    """Checksum of ``body`` = ID, LEN, instruction/error and parameters (no header, no checksum byte)."""
    return ~sum(body) & 0xFF


def encode_packet(servo_id: int, code: int, params: bytes | bytearray = b"") -> bytes:
    """Frame one packet; instruction and status packets share this layout."""
    if not 0 <= servo_id <= BROADCAST_ID:
        raise ValueError(f"Servo id {servo_id} is out of range: use 0..{MAX_ID}, or {BROADCAST_ID} for broadcast.")
    if len(params) > MAX_PARAMS:
        raise ValueError(
            f"A Feetech packet carries at most {MAX_PARAMS} parameter bytes, got {len(params)}; "
            "split the transfer into several packets."
        )
    body = bytes((servo_id, len(params) + 2, code)) + params
    return HEADER + body + bytes((~sum(body) & 0xFF,))


def decode_packet(buffer: bytes | bytearray, start: int = 0) -> tuple[Packet | None, int]:
    """Decode the next frame found at or after ``start``.

    Returns ``(packet, index just after it)``, or ``(None, index to keep bytes from)`` when no complete frame is
    there yet: bytes before that index are garbage and may be dropped. A candidate header whose id byte is 0xFF
    (``FF FF FF``: the real header starts one byte later) or whose LEN is below 2 is skipped as garbage.
    Raises ``ChecksumError`` for a complete frame with a bad checksum; resume the search at ``error.start + 1``
    (`decode_packets` does).

    An 8-bit checksum cannot protect the LEN byte itself: a corrupted LEN may frame a shorter "packet" that
    happens to check out (about 1 in 256). Callers that know the expected reply length must check it.
    """
    size = len(buffer)
    find = buffer.find
    while True:
        head = find(HEADER, start)
        if head < 0:
            # A trailing 0xFF may be the first half of the next header.
            if size > start and buffer[size - 1] == 0xFF:
                return None, size - 1
            return None, max(start, size)
        if head + 3 >= size:  # id or LEN not received yet
            if head + 2 < size and buffer[head + 2] == 0xFF:
                start = head + 1
                continue
            return None, head
        servo_id = buffer[head + 2]
        length = buffer[head + 3]
        if servo_id == 0xFF or length < _MIN_LENGTH:
            start = head + 1
            continue
        end = head + 4 + length
        if end > size:
            return None, head
        code = buffer[head + 4]
        params = buffer[head + 5 : end - 1]
        received = buffer[end - 1]
        # Equivalent to ~(sum) & 0xFF == received, with one operation less on the hot path.
        total = servo_id + length + code + sum(params)
        if (total + received) & 0xFF != 0xFF:
            raise ChecksumError(servo_id, head, end, ~total & 0xFF, received)
        return Packet(servo_id, code, bytes(params)), end


def decode_packets(buffer: bytes | bytearray, start: int = 0) -> Burst:
    """Every frame in ``buffer`` from ``start``; frames with a bad checksum are counted and skipped, and the scan
    resumes one byte after their header (see `scan_packets`)."""
    return scan_packets(decode_packet, ChecksumError, buffer, start)


class PacketStream:
    """Incremental decoder for bytes that arrive in arbitrary chunks (serial reads, pty reads).

    Frames with a bad checksum are dropped and counted in ``bad_checksums``; garbage between frames is skipped.
    """

    __slots__ = ("_buffer", "bad_checksums")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.bad_checksums = 0

    def feed(self, data: bytes | bytearray) -> list[Packet]:
        """Append ``data`` and return every frame completed by it, in arrival order."""
        self._buffer += data
        burst = decode_packets(self._buffer)
        self.bad_checksums += burst.corrupt
        del self._buffer[: burst.keep_from]
        return [packet for packet, _ in burst.packets]

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buffer)

    def clear(self) -> None:
        """Forget buffered bytes (e.g. after a port flush); the checksum counter is kept."""
        self._buffer.clear()


# --- instruction and status builders (complete wire bytes) -------------------------------------------------------


def _check_byte(value: int, what: str) -> None:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{what} {value} does not fit in one byte (0..255).")


def ping(servo_id: int) -> bytes:
    return encode_packet(servo_id, Instruction.PING)


def read(servo_id: int, address: int, length: int) -> bytes:
    _check_byte(address, "Register address")
    _check_byte(length, "Read length")
    return encode_packet(servo_id, Instruction.READ, bytes((address, length)))


def write(servo_id: int, address: int, data: bytes | bytearray) -> bytes:
    _check_byte(address, "Register address")
    return encode_packet(servo_id, Instruction.WRITE, bytes((address,)) + data)


def reg_write(servo_id: int, address: int, data: bytes | bytearray) -> bytes:
    """A write the servo holds until ACTION, so several servos can start moving together."""
    _check_byte(address, "Register address")
    return encode_packet(servo_id, Instruction.REG_WRITE, bytes((address,)) + data)


def action(servo_id: int = BROADCAST_ID) -> bytes:
    return encode_packet(servo_id, Instruction.ACTION)


def reset(servo_id: int) -> bytes:
    """Factory reset of every register except the ID."""
    return encode_packet(servo_id, Instruction.RESET)


def reboot(servo_id: int) -> bytes:
    return encode_packet(servo_id, Instruction.REBOOT)


def sync_read(address: int, length: int, servo_ids: Sequence[int]) -> bytes:
    """One broadcast request; each listed servo answers with its own status packet, in list order."""
    _check_byte(address, "Register address")
    _check_byte(length, "Read length")
    for servo_id in servo_ids:
        if not 0 <= servo_id <= MAX_ID:
            raise ValueError(f"Servo id {servo_id} cannot be sync-read: use ids 0..{MAX_ID}.")
    return encode_packet(BROADCAST_ID, Instruction.SYNC_READ, bytes((address, length, *servo_ids)))


def sync_write(address: int, length: int, data_by_id: Mapping[int, bytes]) -> bytes:
    """One broadcast packet writing ``length`` bytes at ``address`` of several servos (LEN = (length+1)·n + 4)."""
    _check_byte(address, "Register address")
    _check_byte(length, "Write length")
    params = bytearray((address, length))
    for servo_id, data in data_by_id.items():
        if len(data) != length:
            raise ValueError(
                f"Sync write of {length} bytes at address {address} got {len(data)} bytes for servo {servo_id}; "
                "every servo must receive exactly the declared length."
            )
        if not 0 <= servo_id <= MAX_ID:
            raise ValueError(f"Servo id {servo_id} cannot be sync-written: use ids 0..{MAX_ID}.")
        params.append(servo_id)
        params += data
    return encode_packet(BROADCAST_ID, Instruction.SYNC_WRITE, params)


def status(servo_id: int, error: int = 0, params: bytes | bytearray = b"") -> bytes:
    """A servo's reply. Error bit 7 must stay clear: the vendor SDK discards such replies as garbage."""
    if error & 0x80:
        raise ValueError(f"Status error byte 0x{error:02X} sets bit 7, which servos never send; clear it.")
    return encode_packet(servo_id, error, params)


# --- register values ----------------------------------------------------------------------------------------------


def encode_sign_magnitude(value: int, sign_bit: int) -> int:
    """Feetech's signed encoding: magnitude in the low bits, the sign in bit ``sign_bit``."""
    limit = (1 << sign_bit) - 1
    if not -limit <= value <= limit:
        raise ValueError(
            f"Value {value} does not fit a sign-magnitude register with sign bit {sign_bit}: "
            f"the allowed range is -{limit}..{limit}."
        )
    return (1 << sign_bit) | -value if value < 0 else value


def decode_sign_magnitude(raw: int, sign_bit: int) -> int:
    """Inverse of ``encode_sign_magnitude``; "-0" reads as 0 and bits above the sign bit are ignored."""
    if raw < 0:
        raise ValueError(f"Raw register value {raw} is negative; raw values are unsigned (0..65535 for 2 bytes).")
    magnitude = raw & ((1 << sign_bit) - 1)
    return -magnitude if raw >> sign_bit & 1 else magnitude


def encode_value(value: int, size: int, *, big_endian: bool = False, sign_bit: int | None = None) -> bytes:
    """Register value → bytes; STS/SMS servos are little-endian, SCS servos big-endian."""
    if sign_bit is not None:
        value = encode_sign_magnitude(value, sign_bit)
    if not 0 <= value < 1 << (8 * size):
        raise ValueError(
            f"Value {value} does not fit an unsigned {size}-byte register: the allowed range is "
            f"0..{(1 << (8 * size)) - 1}."
        )
    return value.to_bytes(size, "big" if big_endian else "little")


def decode_value(data: bytes | bytearray, *, big_endian: bool = False, sign_bit: int | None = None) -> int:
    """Bytes → register value, undoing the sign-magnitude encoding when ``sign_bit`` is given."""
    raw = int.from_bytes(data, "big" if big_endian else "little")
    if sign_bit is not None:
        return decode_sign_magnitude(raw, sign_bit)
    return raw
