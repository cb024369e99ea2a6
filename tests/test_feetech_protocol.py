"""Feetech SCS/STS protocol layer and control tables, specified by vectors, properties and LeRobot's own tables."""

import importlib.util
from pathlib import Path

import pytest
import scservo_sdk
from hypothesis import given, settings
from hypothesis import strategies as st

from lerobot_vla_plugin.motors.feetech import protocol, tables
from lerobot_vla_plugin.motors.feetech.protocol import (
    BROADCAST_ID,
    ChecksumError,
    Instruction,
    Packet,
    PacketStream,
    StatusError,
    decode_packet,
    encode_packet,
)


def _load_lerobot_module(relative_path: str):
    """Load one of LeRobot's dependency-free modules straight from its file.

    Importing it through ``lerobot.motors`` would pull in torch and take seconds; the file itself is the same code.
    """
    package_dir = Path(importlib.util.find_spec("lerobot").submodule_search_locations[0])
    path = package_dir / relative_path
    spec = importlib.util.spec_from_file_location(f"lerobot_reference_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lerobot_tables = _load_lerobot_module("motors/feetech/tables.py")
lerobot_encoding = _load_lerobot_module("motors/encoding_utils.py")

FAST = settings(max_examples=60, deadline=None)

packets = st.builds(
    Packet,
    servo_id=st.integers(0, 253),
    code=st.integers(0, 255),
    params=st.binary(max_size=100),
)
# Line noise that holds no header byte: anything containing 0xFF may legitimately start a frame.
noise = st.binary(max_size=12).map(lambda data: data.replace(b"\xff", b""))


def wire(packet: Packet) -> bytes:
    return encode_packet(packet.servo_id, packet.code, packet.params)


# --- hardware.md §1.1 vectors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("built", "expected_hex"),
    [
        (protocol.ping(1), "FF FF 01 02 01 FB"),
        (protocol.status(1), "FF FF 01 02 00 FC"),
        (protocol.read(1, 0x38, 2), "FF FF 01 04 02 38 02 BE"),
        (protocol.status(1, 0, protocol.encode_value(1304, 2)), "FF FF 01 04 00 18 05 DD"),
        (protocol.read(1, 3, 2), "FF FF 01 04 02 03 02 F3"),
        (protocol.action(), "FF FF FE 02 05 FA"),
        (protocol.ping(BROADCAST_ID), "FF FF FE 02 01 FE"),
        # Hand-computed: ~(1+5+3+42+0+8) & 0xFF = 0xC4.
        (protocol.write(1, 42, b"\x00\x08"), "FF FF 01 05 03 2A 00 08 C4"),
        (protocol.reg_write(1, 42, b"\x00\x08"), "FF FF 01 05 04 2A 00 08 C3"),
        (protocol.reset(1), "FF FF 01 02 06 F6"),
        (protocol.reboot(1), "FF FF 01 02 08 F4"),
        (protocol.sync_read(0x38, 2, [1, 2]), "FF FF FE 06 82 38 02 01 02 3C"),
    ],
)
def test_builders_produce_reference_bytes(built, expected_hex):
    assert built == bytes.fromhex(expected_hex)


def test_reference_reply_decodes_to_present_position_1304():
    packet, end = decode_packet(bytes.fromhex("FF FF 01 04 00 18 05 DD"))
    assert packet == Packet(servo_id=1, code=0, params=b"\x18\x05")
    assert end == 8
    assert protocol.decode_value(packet.params) == 1304


def test_checksum_excludes_header():
    assert protocol.checksum(bytes.fromhex("01 04 02 38 02")) == 0xBE


# --- framing properties --------------------------------------------------------------------------------------------


@FAST
@given(packet=packets, prefix=noise)
def test_encode_decode_round_trip(packet, prefix):
    data = prefix + wire(packet)
    assert len(wire(packet)) == len(packet.params) + 6
    assert decode_packet(data) == (packet, len(data))
    assert decode_packet(bytearray(data)) == (packet, len(data))


@FAST
@given(
    frames=st.lists(st.tuples(noise, packets), max_size=6),
    tail_noise=noise,
    cuts=st.lists(st.integers(0, 800), max_size=10),
)
def test_stream_decodes_the_same_packets_whatever_the_chunking(frames, tail_noise, cuts):
    data = b"".join(prefix + wire(packet) for prefix, packet in frames) + tail_noise
    bounds = [0, *sorted(cut for cut in cuts if cut <= len(data)), len(data)]
    stream = PacketStream()
    decoded = []
    for low, high in zip(bounds, bounds[1:], strict=False):
        decoded += stream.feed(data[low:high])
    assert decoded == [packet for _, packet in frames]
    assert stream.bad_checksums == 0
    assert stream.pending == 0  # trailing noise holds no header byte, so nothing is kept


@FAST
@given(packet=packets)
def test_stream_fed_one_byte_at_a_time(packet):
    stream = PacketStream()
    decoded = [decoded for byte in wire(packet) for decoded in stream.feed(bytes((byte,)))]
    assert decoded == [packet]


def _span_of(packet: Packet, end: int) -> tuple[int, int]:
    return end - len(packet.params) - 6, end


@FAST
@given(packet=packets)
def test_single_bit_flip_is_never_accepted_as_the_frame(packet):
    original = wire(packet)
    for index in range(len(original)):
        for bit in range(8):
            corrupted = bytearray(original)
            corrupted[index] ^= 1 << bit
            try:
                decoded, end = decode_packet(corrupted)
            except ChecksumError as error:
                assert error.start >= 0 and error.end <= len(corrupted)
                continue
            corrupts_payload = index >= 4 or (index == 2 and corrupted[2] != 0xFF)
            # ID, code, parameters and checksum are covered by the checksum: detection is certain there.
            assert not corrupts_payload, f"flip of bit {bit} in byte {index} went undetected"
            if decoded is None:
                continue
            # Header or LEN damage: any frame found elsewhere never spans the original bytes, and a LEN flip
            # always changes the parameter count, which a reader expecting a reply length rejects.
            assert _span_of(decoded, end) != (0, len(original))
            if index == 3:
                assert len(decoded.params) != len(packet.params)


def test_checksum_error_carries_servo_id_and_frame_end():
    bad = bytearray(protocol.status(3, 0, b"\x10\x20"))
    bad[-1] ^= 0x01
    with pytest.raises(ChecksumError, match="servo id 3") as caught:
        decode_packet(b"\x00" + bytes(bad))
    assert (caught.value.servo_id, caught.value.start, caught.value.end) == (3, 1, len(bad) + 1)


def test_stream_drops_a_corrupted_frame_counts_it_and_keeps_the_next():
    bad = bytearray(protocol.status(1, 0, b"\x00\x08"))
    bad[5] ^= 0x40
    good = protocol.status(2, 0, b"\x00\x08")
    stream = PacketStream()
    assert stream.feed(bytes(bad) + good) == [Packet(2, 0, b"\x00\x08")]
    assert stream.bad_checksums == 1


def _with_grown_length(reply: bytes, grow_by: int) -> bytes:
    damaged = bytearray(reply)
    damaged[3] += grow_by  # LEN
    return bytes(damaged)


def test_a_corrupted_length_field_does_not_swallow_the_next_servos_reply():
    """LEN + 3 makes servo 1's reply claim the header and id of servo 2's reply (and fail its checksum): the
    scan must resume just after servo 1's header, not at the claimed end, or servo 2's good reply is lost."""
    good = protocol.status(2, 0, b"\x00\x08")
    burst = _with_grown_length(protocol.status(1, 0, b"\x34\x12"), 3) + good
    with pytest.raises(ChecksumError) as caught:
        decode_packet(burst)
    assert caught.value.end > len(burst) - len(good)  # the claimed end lies inside servo 2's reply
    packets, keep_from, corrupt = protocol.decode_packets(burst)
    assert [packet for packet, _ in packets] == [Packet(2, 0, b"\x00\x08")]
    assert (keep_from, corrupt) == (len(burst), 1)
    stream = PacketStream()
    assert stream.feed(burst) == [Packet(2, 0, b"\x00\x08")]
    assert stream.bad_checksums == 1 and stream.pending == 0


def test_triple_ff_is_a_header_followed_by_the_id():
    for prefix in (b"\xff", b"\xff\xff", b"\xff\xff\xff\xff"):
        assert decode_packet(prefix + protocol.ping(1)) == (Packet(1, Instruction.PING, b""), len(prefix) + 6)


def test_length_below_two_is_garbage_and_decoding_resyncs():
    data = b"\xff\xff\x01\x01\x00" + protocol.ping(5)
    assert decode_packet(data) == (Packet(5, Instruction.PING, b""), len(data))


def test_incomplete_frames_report_where_to_keep_bytes_from():
    frame = protocol.read(1, 0x38, 2)
    assert decode_packet(b"\x00\x01" + frame[:5]) == (None, 2)
    assert decode_packet(b"\x00\x01" + frame[:3]) == (None, 2)
    assert decode_packet(b"\x00\x01\xff") == (None, 2)  # a lone 0xFF may start the next header
    assert decode_packet(b"\x00\x01\x02") == (None, 3)
    assert decode_packet(frame + frame, start=len(frame)) == (Packet(1, Instruction.READ, b"\x38\x02"), 16)


def test_status_refuses_error_bit_7_and_encode_refuses_bad_ids_and_oversized_params():
    with pytest.raises(ValueError, match="bit 7"):
        protocol.status(1, 0x80)
    with pytest.raises(ValueError, match="Servo id 255"):
        encode_packet(255, Instruction.PING)
    with pytest.raises(ValueError, match="at most 253"):
        encode_packet(1, Instruction.WRITE, bytes(254))


# --- sync instructions -------------------------------------------------------------------------------------------


@FAST
@given(length=st.integers(1, 8), servo_ids=st.lists(st.integers(0, 253), unique=True, min_size=1, max_size=6))
def test_sync_write_length_formula_and_layout(length, servo_ids):
    data_by_id = {servo_id: bytes([servo_id]) * length for servo_id in servo_ids}
    frame = protocol.sync_write(42, length, data_by_id)
    assert frame[3] == (length + 1) * len(servo_ids) + 4
    packet, end = decode_packet(frame)
    assert (packet.servo_id, packet.code, end) == (BROADCAST_ID, Instruction.SYNC_WRITE, len(frame))
    assert packet.params[:2] == bytes((42, length))
    records = [packet.params[i : i + length + 1] for i in range(2, len(packet.params), length + 1)]
    assert records == [bytes([servo_id]) + data_by_id[servo_id] for servo_id in servo_ids]


def test_sync_write_rejects_wrong_data_length_and_oversized_packets():
    with pytest.raises(ValueError, match="got 1 bytes for servo 4"):
        protocol.sync_write(42, 2, {3: b"\x00\x00", 4: b"\x00"})
    with pytest.raises(ValueError, match="at most 253"):
        protocol.sync_write(42, 4, {servo_id: bytes(4) for servo_id in range(51)})


# --- values ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sign_bit", [10, 11, 15])
def test_sign_magnitude_full_range_round_trip_matches_lerobot_and_vendor_sdk(sign_bit):
    limit = (1 << sign_bit) - 1
    for value in range(-limit, limit + 1):
        raw = protocol.encode_sign_magnitude(value, sign_bit)
        assert raw == lerobot_encoding.encode_sign_magnitude(value, sign_bit) == scservo_sdk.SCS_TOSCS(value, sign_bit)
        assert protocol.decode_sign_magnitude(raw, sign_bit) == value
    assert protocol.decode_sign_magnitude(1 << sign_bit, sign_bit) == 0  # "-0"
    for outside in (limit + 1, -limit - 1):
        with pytest.raises(ValueError, match=rf"{outside}.*-{limit}\.\.{limit}"):
            protocol.encode_sign_magnitude(outside, sign_bit)


def test_little_and_big_endian_are_per_call():
    assert protocol.encode_value(0x1234, 2) == b"\x34\x12"
    assert protocol.encode_value(0x1234, 2, big_endian=True) == b"\x12\x34"
    assert protocol.decode_value(b"\x34\x12") == protocol.decode_value(b"\x12\x34", big_endian=True) == 0x1234
    assert protocol.encode_value(0x12345678, 4) == bytes.fromhex("78 56 34 12")
    assert protocol.encode_value(-100, 2, sign_bit=15) == bytes.fromhex("64 80")
    assert protocol.encode_value(-100, 2, big_endian=True, sign_bit=15) == bytes.fromhex("80 64")
    assert protocol.decode_value(bytes.fromhex("80 64"), big_endian=True, sign_bit=15) == -100
    assert protocol.decode_value(bytes.fromhex("E8 0B"), sign_bit=11) == -1000  # Homing_Offset -1000


def test_encode_value_names_the_allowed_range():
    with pytest.raises(ValueError, match=r"Value 256 .* 0\.\.255"):
        protocol.encode_value(256, 1)
    with pytest.raises(ValueError, match=r"Value -1 .* 0\.\.65535"):
        protocol.encode_value(-1, 2)
    with pytest.raises(ValueError, match=r"-2048 .* -2047\.\.2047"):
        protocol.encode_value(-2048, 2, sign_bit=11)


def test_error_bits_have_human_names_in_bit_order():
    assert protocol.describe_error(0) == []
    assert protocol.describe_error(StatusError.OVERLOAD | StatusError.OVERHEAT) == ["overheat", "overload"]
    assert protocol.describe_error(0x2F) == ["input voltage", "angle sensor", "overheat", "overcurrent", "overload"]
    assert protocol.describe_error(0x10) == ["unknown bit 4"]


# --- control tables ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", tables.MODELS.values(), ids=tables.MODELS)
def test_registers_do_not_overlap_and_defaults_fit(spec):
    occupied = {}
    for register in spec.registers.values():
        for address in range(register.address, register.address + register.size):
            assert address not in occupied, f"{register.name} overlaps {occupied[address]} at {address}"
            occupied[address] = register.name
        if register.sign_bit is None:
            assert 0 <= register.default < 1 << (8 * register.size), register.name
        else:
            assert abs(register.default) < 1 << register.sign_bit, register.name
        assert register.eeprom == (register.address < 40)
        assert spec.register_at(register.address) is register
    assert spec.register("Lock").address == spec.lock_address
    assert spec.register("Model_Number").default == spec.model_number
    assert tables.MODEL_BY_NUMBER[spec.model_number] is spec


@pytest.mark.parametrize(
    ("model", "lerobot_table"),
    [
        ("sts3215", lerobot_tables.STS_SMS_SERIES_CONTROL_TABLE),
        ("sts3250", lerobot_tables.STS_SMS_SERIES_CONTROL_TABLE),
        ("sm8512bl", lerobot_tables.STS_SMS_SERIES_CONTROL_TABLE),
        ("scs0009", lerobot_tables.SCS_SERIES_CONTROL_TABLE),
    ],
)
def test_every_lerobot_register_name_has_the_same_address_and_size(model, lerobot_table):
    spec = tables.MODELS[model]
    for name, (address, size) in lerobot_table.items():
        register = spec.register(name)
        assert (register.address, register.size) == (address, size), name
        assert tables.MODEL_CONTROL_TABLE[model][name] == (address, size)


def test_lerobot_shaped_views_agree_with_lerobot():
    for name in lerobot_tables.MODEL_CONTROL_TABLE:
        assert tables.MODEL_RESOLUTION[name] == lerobot_tables.MODEL_RESOLUTION[name]
        assert tables.MODEL_ENCODING_TABLE[name] == lerobot_tables.MODEL_ENCODING_TABLE[name]
        assert tables.MODEL_PROTOCOL[name] == lerobot_tables.MODEL_PROTOCOL[name]
    assert tables.MODEL_NUMBER_TABLE == lerobot_tables.MODEL_NUMBER_TABLE
    assert tables.SCAN_BAUDRATES == lerobot_tables.SCAN_BAUDRATES


def test_baud_table_follows_feetech_for_indices_5_to_7():
    by_baud = tables.MODEL_BAUDRATE_TABLE["sts3215"]
    lerobot_by_baud = lerobot_tables.STS_SMS_SERIES_BAUDRATE_TABLE
    for baudrate in (1_000_000, 500_000, 250_000, 128_000, 115_200):
        assert by_baud[baudrate] == lerobot_by_baud[baudrate]
    assert tables.MODELS["sts3215"].baudrates[5] == 76_800
    assert (by_baud[57_600], by_baud[38_400]) == (6, 7)


def test_sts3215_factory_memory_image():
    spec = tables.MODELS["sts3215"]
    memory = spec.default_memory()
    assert memory[0:2] == bytes(spec.firmware) == b"\x03\x0a"
    assert memory[3:5] == b"\x09\x03"  # model 777, little-endian
    assert (memory[5], memory[6], memory[8]) == (1, 0, 1)  # ID 1, 1 Mbps, reply to everything
    assert memory[9:13] == bytes.fromhex("00 00 FF 0F")  # position limits 0..4095
    assert (memory[18], memory[spec.lock_address]) == (12, 1)
    assert spec.default_memory(servo_id=6)[5] == 6
    assert not spec.register("Present_Position").writable and spec.register("Goal_Position").writable
    scs_memory = tables.MODELS["scs0009"].default_memory()
    assert scs_memory[3:5] == (1284).to_bytes(2, "big")


def test_unknown_register_name_suggests_close_names():
    with pytest.raises(KeyError, match="Present_Position"):
        tables.MODELS["sts3215"].register("Present_Postion")
    assert tables.MODELS["sts3215"].register("Moving_Velocity").address == 80
    assert tables.MODELS["sts3215"].register_at(57) is None
