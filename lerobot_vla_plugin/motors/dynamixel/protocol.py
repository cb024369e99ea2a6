"""Dynamixel Protocol 2.0 wire format: pure functions, no I/O.

Shared by the driver (`DynamixelBus`) and the byte-level servo emulator, so both speak exactly the same
dialect. Everything here follows the ROBOTIS e-manual, including the parts the official SDK gets wrong:

* byte stuffing is applied on transmit (the SDK's Python TX path drops it) and removed exactly on receive
  (``unstuff(stuff(x)) == x`` for every ``x``);
* the CRC is computed over the packet *as it travels on the wire*, i.e. after stuffing;
* Fast Sync/Bulk Read replies are one unstuffed packet from the broadcast id with a running CRC after
  every device's block.

Packet layout (little-endian)::

    instruction: FF FF FD 00 | ID | LEN_L LEN_H | INST | PARAM...       | CRC_L CRC_H
    status:      FF FF FD 00 | ID | LEN_L LEN_H | 0x55 | ERR | PARAM... | CRC_L CRC_H

``LEN`` counts INST (+ ERR) + PARAM + 2 CRC bytes after stuffing; the whole packet is ``LEN + 7`` bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum, IntFlag

from ..packet_scan import Burst, scan_packets

HEADER = b"\xff\xff\xfd\x00"
BROADCAST_ID = 0xFE
MAX_ID = 252
STATUS = 0x55
ALERT_BIT = 0x80

# Largest LEN accepted on receive. A corrupted LEN field would otherwise make a decoder wait for up to
# 64 KiB that never come; the largest real packet (a fast sync read of 252 servos × 4 bytes) is ~2 KiB.
MAX_PACKET_LENGTH = 4096

_HEADER_LENGTH = 7  # FF FF FD 00 ID LEN_L LEN_H
_RESERVED_RUN = b"\xff\xff\xfd"
_STUFFED_RUN = b"\xff\xff\xfd\xfd"
_CLEAR_MULTI_TURN_KEY = b"\x01\x44\x58\x4c\x22"


class Instruction(IntEnum):
    PING = 0x01
    READ = 0x02
    WRITE = 0x03
    REG_WRITE = 0x04
    ACTION = 0x05
    FACTORY_RESET = 0x06
    REBOOT = 0x08
    CLEAR = 0x10
    STATUS = 0x55
    SYNC_READ = 0x82
    SYNC_WRITE = 0x83
    FAST_SYNC_READ = 0x8A
    BULK_READ = 0x92
    BULK_WRITE = 0x93
    FAST_BULK_READ = 0x9A


class ResultError(IntEnum):
    """Error number in bits 0-6 of a status packet's ERR byte."""

    NONE = 0
    RESULT_FAIL = 1
    INSTRUCTION = 2
    CRC = 3
    DATA_RANGE = 4
    DATA_LENGTH = 5
    DATA_LIMIT = 6
    ACCESS = 7


class HardwareError(IntFlag):
    """Bits of Hardware_Error_Status (address 70); any of them sets ALERT_BIT in every status packet."""

    INPUT_VOLTAGE = 0x01
    OVERHEATING = 0x04
    MOTOR_ENCODER = 0x08
    ELECTRICAL_SHOCK = 0x10
    OVERLOAD = 0x20


class FactoryResetOption(IntEnum):
    ALL = 0xFF
    ALL_BUT_ID = 0x01
    ALL_BUT_ID_AND_BAUDRATE = 0x02


_RESULT_ERROR_WORDS = {
    ResultError.RESULT_FAIL: "result fail (the servo could not process the instruction)",
    ResultError.INSTRUCTION: "instruction error (unknown instruction, or ACTION without REG_WRITE)",
    ResultError.CRC: "CRC error (the servo received a corrupted packet)",
    ResultError.DATA_RANGE: "data range error (value outside the register's range)",
    ResultError.DATA_LENGTH: "data length error (data shorter than the register)",
    ResultError.DATA_LIMIT: "data limit error (value beyond a configured limit)",
    ResultError.ACCESS: (
        "access error (read-only or undefined address, or an EEPROM write while Torque_Enable is 1)"
    ),
}

_HARDWARE_ERROR_WORDS = {
    HardwareError.INPUT_VOLTAGE: "input voltage error (supply outside Min/Max_Voltage_Limit)",
    HardwareError.OVERHEATING: "overheating (internal temperature above Temperature_Limit)",
    HardwareError.MOTOR_ENCODER: "motor encoder error",
    HardwareError.ELECTRICAL_SHOCK: "electrical shock (short circuit or damaged motor)",
    HardwareError.OVERLOAD: "overload (load above the maximum output for too long)",
}


def describe_error(error: int) -> list[str]:
    """Words for a status packet's ERR byte; empty when it reports success."""
    words = []
    number = error & ~ALERT_BIT
    if number:
        try:
            words.append(_RESULT_ERROR_WORDS[ResultError(number)])
        except ValueError:
            words.append(f"unknown error number {number}")
    if error & ALERT_BIT:
        words.append("hardware alert (read Hardware_Error_Status at address 70; reboot the servo to clear it)")
    return words


def describe_hardware_error(bits: int) -> list[str]:
    """Words for a Hardware_Error_Status value; empty when no error is latched."""
    words = [text for flag, text in _HARDWARE_ERROR_WORDS.items() if bits & flag]
    unknown = bits & ~sum(_HARDWARE_ERROR_WORDS)
    words.extend(f"unknown hardware error bit {bit}" for bit in range(8) if unknown & (1 << bit))
    return words


# --------------------------------------------------------------------------------------------------- CRC


def _make_crc_table() -> tuple[int, ...]:
    table = []
    for high_byte in range(256):
        crc = high_byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _make_crc_table()


def crc16(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-16/BUYPASS (poly 0x8005, init 0, no reflection); pass a previous result as `crc` to continue."""
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ byte]
    return crc


# --------------------------------------------------------------------------------------------- stuffing


def stuff(body: bytes) -> bytes:
    """Insert 0xFD after every FF FF FD so the body can never be mistaken for a packet header.

    FF FF FD cannot overlap itself and an inserted FD can never start or finish a new FF FF FD, so a plain
    left-to-right replacement is exact and `unstuff` undoes it for every input.
    """
    return bytes(body).replace(_RESERVED_RUN, _STUFFED_RUN)


def unstuff(body: bytes) -> bytes:
    """Remove the 0xFD that `stuff` inserted after each FF FF FD; exact inverse of `stuff`."""
    return bytes(body).replace(_STUFFED_RUN, _RESERVED_RUN)


# -------------------------------------------------------------------------------------------- packets


@dataclass(frozen=True, slots=True)
class Packet:
    """One decoded packet. Status packets have ``instruction == STATUS`` and the ERR byte in `error`;
    instruction packets have ``error is None``. `params` are unstuffed."""

    servo_id: int
    instruction: int
    error: int | None
    params: bytes

    @property
    def is_status(self) -> bool:
        return self.instruction == STATUS


class CRCError(ValueError):
    """A packet whose CRC does not match: corrupted on the wire. `start`/`end` delimit the bad packet."""

    def __init__(self, message: str, *, servo_id: int, start: int, end: int):
        super().__init__(message)
        self.servo_id = servo_id
        self.start = start
        self.end = end


def _check_id(servo_id: int, *, allow_broadcast: bool = True) -> None:
    if not (0 <= servo_id <= MAX_ID or (allow_broadcast and servo_id == BROADCAST_ID)):
        allowed = f"0..{MAX_ID}" + (f" or {BROADCAST_ID} (broadcast)" if allow_broadcast else "")
        raise ValueError(f"Dynamixel id {servo_id} is invalid: use {allowed}.")


def _frame(servo_id: int, body: bytes) -> bytes:
    length = len(body) + 2
    if length > 0xFFFF:
        raise ValueError(f"Packet body of {len(body)} bytes does not fit the 16-bit LEN field; split it.")
    packet = HEADER + bytes((servo_id, length & 0xFF, length >> 8)) + body
    crc = crc16(packet)
    return packet + bytes((crc & 0xFF, crc >> 8))


def encode_instruction(servo_id: int, instruction: int, params: bytes = b"") -> bytes:
    """Complete instruction packet: the body is stuffed first, then the CRC covers the stuffed bytes."""
    _check_id(servo_id)
    if not 0 <= instruction <= 0xFF:
        raise ValueError(f"Instruction {instruction} does not fit in one byte.")
    return _frame(servo_id, stuff(bytes((instruction,)) + bytes(params)))


def encode_status(servo_id: int, error: int, params: bytes = b"", *, stuffed: bool = True) -> bytes:
    """Complete status packet. `stuffed=False` is only for Fast Sync/Bulk Read replies, which are sent raw."""
    _check_id(servo_id)
    if not 0 <= error <= 0xFF:
        raise ValueError(f"Status error byte {error} does not fit in one byte.")
    body = bytes((STATUS, error)) + bytes(params)
    return _frame(servo_id, stuff(body) if stuffed else body)


def _header_prefix_length(buffer: bytes | bytearray, floor: int) -> int:
    """Index from which the tail of `buffer` could still grow into a header (so it must be kept)."""
    end = len(buffer)
    for kept in (3, 2, 1):
        if end - kept >= floor and buffer.endswith(HEADER[:kept]):
            return end - kept
    return max(end, floor)


def _plausible_frame(buffer: bytes | bytearray, head: int) -> int:
    """End index of the frame announced at `head`, or -1 when its id or LEN cannot be a real packet."""
    servo_id = buffer[head + 4]
    length = buffer[head + 5] | (buffer[head + 6] << 8)
    if (servo_id > MAX_ID and servo_id != BROADCAST_ID) or length < 3 or length > MAX_PACKET_LENGTH:
        return -1
    return head + _HEADER_LENGTH + length


def _crc_matches(buffer: bytes | bytearray, head: int, packet_end: int) -> bool:
    crc_at = packet_end - 2
    return crc16(buffer[head:crc_at]) == buffer[crc_at] | (buffer[crc_at + 1] << 8)


def _complete_packet_after(buffer: bytes | bytearray, head: int) -> int:
    """Start of a complete, CRC-valid packet after `head`, or -1.

    Used when the frame at `head` is still incomplete: if a valid packet already follows it, the LEN at
    `head` was corrupted and waiting for more bytes would swallow good packets.
    """
    end = len(buffer)
    candidate = buffer.find(HEADER, head + 1)
    while 0 <= candidate and candidate + _HEADER_LENGTH <= end:
        packet_end = _plausible_frame(buffer, candidate)
        if 0 <= packet_end <= end and _crc_matches(buffer, candidate, packet_end):
            return candidate
        candidate = buffer.find(HEADER, candidate + 1)
    return -1


def decode_packet(
    buffer: bytes | bytearray | memoryview, start: int = 0, *, stuffed: bool = True
) -> tuple[Packet | None, int]:
    """Decode the first packet at or after `start`.

    Returns ``(packet, index after it)``, or ``(None, keep_from)`` when no complete packet is there yet
    (bytes before `keep_from` are garbage and can be dropped). Raises `CRCError` for a corrupted packet;
    resume the search at ``error.start + 1``. Headers with an impossible id or LEN are skipped as garbage.
    Pass ``stuffed=False`` for Fast Sync/Bulk Read replies, which the servos send without stuffing.
    """
    if isinstance(buffer, memoryview):
        buffer = buffer.tobytes()
    end = len(buffer)
    search_from = start
    while True:
        head = buffer.find(HEADER, search_from)
        if head < 0:
            return None, _header_prefix_length(buffer, search_from)
        if head + _HEADER_LENGTH > end:
            return None, head
        packet_end = _plausible_frame(buffer, head)
        if packet_end < 0:
            search_from = head + 1
            continue
        servo_id = buffer[head + 4]
        if packet_end > end:
            following = _complete_packet_after(buffer, head)
            if following >= 0:
                raise CRCError(
                    f"Corrupted packet from id {servo_id}: its length field runs past a valid packet "
                    f"at byte {following}.",
                    servo_id=servo_id,
                    start=head,
                    end=following,
                )
            return None, head
        if not _crc_matches(buffer, head, packet_end):
            raise CRCError(
                f"CRC mismatch in a packet from id {servo_id} (bytes {head}..{packet_end}): "
                "corrupted on the wire; retry the transaction.",
                servo_id=servo_id,
                start=head,
                end=packet_end,
            )
        body = buffer[head + _HEADER_LENGTH : packet_end - 2]
        if stuffed and _RESERVED_RUN in body:
            body = unstuff(body)
        instruction = body[0]
        if instruction != STATUS:
            return Packet(servo_id, instruction, None, bytes(body[1:])), packet_end
        if len(body) < 2:  # a status without its ERR byte is not a packet
            search_from = head + 1
            continue
        return Packet(servo_id, STATUS, body[1], bytes(body[2:])), packet_end


def decode_packets(buffer: bytes | bytearray, start: int = 0, *, stuffed: bool = True) -> Burst:
    """Every packet in `buffer` from `start`; corrupted packets are counted and skipped, and the scan resumes
    one byte after their header (see `scan_packets`). `stuffed=False` for Fast Sync/Bulk Read replies."""
    return scan_packets(lambda data, position: decode_packet(data, position, stuffed=stuffed), CRCError, buffer,
                        start)


class PacketStream:
    """Incremental decoder for a byte stream: feed whatever the port returned, get whole packets back.

    Corrupted packets are counted in `bad_crcs` and skipped; the search restarts right after their header
    so that a corrupted LEN field cannot swallow the packets that follow. Set `stuffed` to False while
    expecting a Fast Sync/Bulk Read reply.
    """

    def __init__(self, *, stuffed: bool = True):
        self.stuffed = stuffed
        self.bad_crcs = 0
        self._buffer = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        self._buffer += data
        burst = decode_packets(self._buffer, stuffed=self.stuffed)
        self.bad_crcs += burst.corrupt
        del self._buffer[: burst.keep_from]
        return [packet for packet, _ in burst.packets]

    @property
    def pending(self) -> int:
        """Bytes held back because they may still become (part of) a packet."""
        return len(self._buffer)

    def clear(self) -> None:
        """Drop buffered bytes, e.g. after a timeout, so stale bytes cannot prefix the next reply."""
        self._buffer.clear()


# ------------------------------------------------------------------------------------------- builders


def _u16(value: int) -> bytes:
    return value.to_bytes(2, "little")


def ping(servo_id: int) -> bytes:
    return encode_instruction(servo_id, Instruction.PING)


def read(servo_id: int, address: int, length: int) -> bytes:
    return encode_instruction(servo_id, Instruction.READ, _u16(address) + _u16(length))


def write(servo_id: int, address: int, data: bytes) -> bytes:
    return encode_instruction(servo_id, Instruction.WRITE, _u16(address) + bytes(data))


def reg_write(servo_id: int, address: int, data: bytes) -> bytes:
    return encode_instruction(servo_id, Instruction.REG_WRITE, _u16(address) + bytes(data))


def action(servo_id: int) -> bytes:
    return encode_instruction(servo_id, Instruction.ACTION)


def reboot(servo_id: int) -> bytes:
    return encode_instruction(servo_id, Instruction.REBOOT)


def factory_reset(servo_id: int, option: int) -> bytes:
    try:
        option = FactoryResetOption(option)
    except ValueError:
        choices = ", ".join(f"0x{o.value:02X} ({o.name.lower()})" for o in FactoryResetOption)
        raise ValueError(f"Factory reset option 0x{option:02X} is invalid: use one of {choices}.") from None
    return encode_instruction(servo_id, Instruction.FACTORY_RESET, bytes((option,)))


def clear_multi_turn(servo_id: int) -> bytes:
    return encode_instruction(servo_id, Instruction.CLEAR, _CLEAR_MULTI_TURN_KEY)


def _sync_read_params(address: int, length: int, ids: Sequence[int]) -> bytes:
    for servo_id in ids:
        _check_id(servo_id, allow_broadcast=False)
    return _u16(address) + _u16(length) + bytes(ids)


def sync_read(address: int, length: int, ids: Sequence[int]) -> bytes:
    return encode_instruction(BROADCAST_ID, Instruction.SYNC_READ, _sync_read_params(address, length, ids))


def fast_sync_read(address: int, length: int, ids: Sequence[int]) -> bytes:
    params = _sync_read_params(address, length, ids)
    return encode_instruction(BROADCAST_ID, Instruction.FAST_SYNC_READ, params)


def sync_write(address: int, length: int, data_by_id: Mapping[int, bytes]) -> bytes:
    params = bytearray(_u16(address) + _u16(length))
    for servo_id, data in data_by_id.items():
        _check_id(servo_id, allow_broadcast=False)
        if len(data) != length:
            raise ValueError(f"Sync write data for id {servo_id} has {len(data)} bytes, expected {length}.")
        params.append(servo_id)
        params += data
    return encode_instruction(BROADCAST_ID, Instruction.SYNC_WRITE, bytes(params))


def _bulk_read_params(items: Sequence[tuple[int, int, int]]) -> bytes:
    params = bytearray()
    for servo_id, address, length in items:
        _check_id(servo_id, allow_broadcast=False)
        params.append(servo_id)
        params += _u16(address) + _u16(length)
    return bytes(params)


def bulk_read(items: Sequence[tuple[int, int, int]]) -> bytes:
    """One packet reading `(id, address, length)` from each servo; every servo replies separately."""
    return encode_instruction(BROADCAST_ID, Instruction.BULK_READ, _bulk_read_params(items))


def fast_bulk_read(items: Sequence[tuple[int, int, int]]) -> bytes:
    """Like `bulk_read`, but the servos answer with one combined, unstuffed status packet."""
    return encode_instruction(BROADCAST_ID, Instruction.FAST_BULK_READ, _bulk_read_params(items))


def bulk_write(items: Sequence[tuple[int, int, bytes]]) -> bytes:
    params = bytearray()
    for servo_id, address, data in items:
        _check_id(servo_id, allow_broadcast=False)
        params.append(servo_id)
        params += _u16(address) + _u16(len(data)) + bytes(data)
    return encode_instruction(BROADCAST_ID, Instruction.BULK_WRITE, bytes(params))


def status(servo_id: int, error: int = 0, params: bytes = b"") -> bytes:
    return encode_status(servo_id, error, params)


# ------------------------------------------------------------------------------- fast sync/bulk read


def encode_fast_sync_status(entries: Sequence[tuple[int, int, bytes]]) -> bytes:
    """The single reply to FAST_SYNC_READ / FAST_BULK_READ, as the chained servos put it on the wire.

    Layout after INST: ``ERR1 ID1 DATA1 CRC | ERR2 ID2 DATA2 CRC | ... | ERRn IDn DATAn`` + packet CRC.
    Every block ends with the CRC of the whole packet so far (each servo continues the running CRC of the
    one before it), which makes the last block's CRC the ordinary packet CRC. Not stuffed.
    """
    if not entries:
        raise ValueError("A fast sync status needs at least one (id, error, data) entry.")
    length = 1 + sum(len(data) + 4 for _, _, data in entries)
    if length > 0xFFFF:
        raise ValueError(f"Fast sync status of {length} bytes does not fit the 16-bit LEN field.")
    packet = bytearray(HEADER + bytes((BROADCAST_ID, length & 0xFF, length >> 8, STATUS)))
    crc = crc16(packet)
    for servo_id, error, data in entries:
        _check_id(servo_id, allow_broadcast=False)
        block = bytes((error, servo_id)) + bytes(data)
        crc = crc16(block, crc)
        packet += block
        packet += bytes((crc & 0xFF, crc >> 8))
        crc = crc16(packet[-2:], crc)
    return bytes(packet)


def _fast_blocks(packet: Packet) -> bytes:
    """Blocks of a fast status as sent (ERR ID DATA CRC ...), minus the final packet CRC."""
    if packet.servo_id != BROADCAST_ID or packet.instruction != STATUS or packet.error is None:
        raise ValueError(
            f"Not a fast sync/bulk status: id {packet.servo_id}, instruction 0x{packet.instruction:02X} "
            f"(expected a status packet from the broadcast id {BROADCAST_ID})."
        )
    return bytes((packet.error,)) + packet.params


def _split_fast_blocks(blocks: bytes, lengths: Sequence[int]) -> list[tuple[int, int, bytes]]:
    entries = []
    position = 0
    for length in lengths:
        if position + 2 + length > len(blocks):
            break
        error, servo_id = blocks[position], blocks[position + 1]
        entries.append((servo_id, error, blocks[position + 2 : position + 2 + length]))
        position += length + 4
    return entries


def parse_fast_sync_status(packet: Packet, length: int) -> dict[int, tuple[int, bytes]]:
    """Split a decoded fast sync reply into ``{id: (error, data)}``, in reply order.

    The running per-block CRCs are not re-checked: the packet CRC already covers every byte.
    """
    blocks = _fast_blocks(packet)
    block_size = length + 4
    count, remainder = divmod(len(blocks) + 2, block_size)
    if remainder or count == 0:
        raise ValueError(
            f"Fast sync status carries {len(blocks) + 2} bytes of blocks, not a multiple of {block_size} "
            f"(ERR + ID + {length} data bytes + CRC): the read length does not match the request."
        )
    return _collect(_split_fast_blocks(blocks, [length] * count))


def parse_fast_bulk_status(
    packet: Packet, items: Sequence[tuple[int, int, int]]
) -> dict[int, tuple[int, bytes]]:
    """Split a decoded fast bulk reply into ``{id: (error, data)}``; `items` is the request's list."""
    blocks = _fast_blocks(packet)
    expected = sum(length + 4 for _, _, length in items) - 2
    if len(blocks) != expected:
        raise ValueError(
            f"Fast bulk status carries {len(blocks)} bytes of blocks, expected {expected} for {len(items)} "
            "requested reads: the reply does not match the request."
        )
    entries = _split_fast_blocks(blocks, [length for _, _, length in items])
    requested = [servo_id for servo_id, _, _ in items]
    replied = [servo_id for servo_id, _, _ in entries]
    if replied != requested:
        raise ValueError(f"Fast bulk status answers ids {replied}, but ids {requested} were requested.")
    return _collect(entries)


def _collect(entries: list[tuple[int, int, bytes]]) -> dict[int, tuple[int, bytes]]:
    result: dict[int, tuple[int, bytes]] = {}
    for servo_id, error, data in entries:
        if servo_id in result:
            raise ValueError(f"Fast status answers id {servo_id} twice: the reply is corrupted.")
        result[servo_id] = (error, data)
    return result


# ----------------------------------------------------------------------------------------------- values


def encode_value(value: int, size: int, *, signed: bool = False) -> bytes:
    """Little-endian register bytes; negative values in two's complement when `signed`."""
    try:
        return int(value).to_bytes(size, "little", signed=signed)
    except OverflowError:
        bits = 8 * size
        low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        kind = "signed" if signed else "unsigned"
        raise ValueError(
            f"Value {value} does not fit a {size}-byte {kind} register (range {low}..{high})."
        ) from None


def decode_value(data: bytes, *, signed: bool = False) -> int:
    return int.from_bytes(data, "little", signed=signed)
