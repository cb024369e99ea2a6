"""FeetechBus and DynamixelBus against the stateful emulator on a real pty: the LeRobot bus API and robustness."""

from __future__ import annotations

import logging
import random
import time

import pytest
from conftest import SO_JOINTS, calibration, koch_motors, so_motors
from helpers import wait_until

from lerobot_vla_plugin.emulator.bus import EmulatedBus, LinkFaults
from lerobot_vla_plugin.motors.bus_base import ServoBus
from lerobot_vla_plugin.motors.dynamixel.bus import DynamixelBus
from lerobot_vla_plugin.motors.errors import PortUnavailableError, ServoNotRespondingError, ServoStatusError
from lerobot_vla_plugin.motors.feetech.bus import FeetechBus

ARMS = {"feetech": ("so101", FeetechBus, so_motors), "dynamixel": ("koch-follower", DynamixelBus, koch_motors)}
# The Koch servos' firmware supports Fast Sync Read, so DynamixelBus uses it by default; keep the classic path tested.
RIGS = {**ARMS, "dynamixel-classic-sync-read": ("koch-follower", DynamixelBus, koch_motors)}
# Fault tests lose replies on purpose and pay one timeout per loss: shorter than the emulator default, still a
# wide margin over a healthy reply, and the retries (num_retry=6) absorb a reply that a busy machine made late.
FAULT_TEST_TIMEOUT_MS = 150


@pytest.fixture(params=sorted(RIGS))
def rig(request):
    """(emulator, connected bus) for each protocol."""
    arm, bus_cls, motors = RIGS[request.param]
    options = {"fast_sync_read": False} if request.param == "dynamixel-classic-sync-read" else {}
    with EmulatedBus.for_arm(arm) as emulator:
        bus = bus_cls(emulator.port, motors(), calibration(), **options)
        bus.connect()
        if request.param == "dynamixel":
            assert bus.fast_sync_read, "Koch firmware supports Fast Sync Read: it should be on"
        yield emulator, bus
        if bus.is_connected:
            bus.disconnect(disable_torque=False)


def test_sync_read_returns_every_motor_and_matches_the_servo_state(rig):
    emulator, bus = rig
    emulator.servo(3).actuator.position_steps = 1234.0
    raw = bus.sync_read("Present_Position", normalize=False)
    assert list(raw) == list(SO_JOINTS)
    assert raw["elbow_flex"] == 1234
    assert raw["shoulder_pan"] == 2048


def test_normalisation_is_lerobots_arithmetic(rig):
    """Datasets must be interchangeable with LeRobot's: same degrees / 0-100 values for the same raw steps."""
    from lerobot.motors.motors_bus import MotorsBus

    _, bus = rig
    rng = random.Random(0)
    for _ in range(200):
        ids_values = {i: rng.randrange(0, 4096) for i in range(1, 7)}
        ours = bus._normalize(dict(ids_values))
        theirs = MotorsBus._normalize(bus, dict(ids_values))
        assert ours == theirs
        back_ours = bus._unnormalize(dict(ours))
        back_theirs = MotorsBus._unnormalize(bus, dict(theirs))
        assert back_ours == back_theirs


def test_goal_moves_the_joint_only_with_torque_on(rig):
    emulator, bus = rig
    bus.write("Goal_Position", "elbow_flex", 3000, normalize=False)
    time.sleep(0.05)
    assert bus.read("Present_Position", "elbow_flex", normalize=False) == 2048  # torque off: nothing moves
    bus.enable_torque("elbow_flex")
    assert wait_until(lambda: bus.read("Present_Position", "elbow_flex", normalize=False) == 3000)


def test_torque_on_drives_to_the_stored_goal_like_a_real_servo(rig):
    """The classic jump on connect: the servo goes to whatever Goal_Position holds when torque comes on."""
    emulator, bus = rig
    bus.write("Goal_Position", "wrist_flex", 2600, normalize=False)
    emulator.servo(4).actuator.hand_position_steps = 1500.0  # someone moves the limp joint by hand
    assert wait_until(lambda: bus.read("Present_Position", "wrist_flex", normalize=False) == 1500)
    emulator.servo(4).actuator.hand_position_steps = None
    bus.enable_torque("wrist_flex")
    assert wait_until(lambda: bus.read("Present_Position", "wrist_flex", normalize=False) == 2600)


def test_sync_write_read_is_one_transfer_that_writes_and_reads(rig):
    emulator, bus = rig
    bus.enable_torque()
    transfers = []
    port_write = bus.link.write
    bus.link.write = lambda data: (transfers.append(data), port_write(data))[1]
    packets_before = emulator.packets_handled
    positions = bus.sync_write_read("Goal_Position", {m: 10.0 for m in SO_JOINTS if m != "gripper"})
    bus.link.write = port_write
    assert len(transfers) == 1, f"the tick took {len(transfers)} transfers"
    assert emulator.packets_handled - packets_before == 2  # that one transfer carried the write and the read
    assert set(positions) == set(SO_JOINTS)
    assert wait_until(lambda: abs(bus.read("Present_Position", "shoulder_pan") - 10.0) < 0.2)


class _FirstReplyLengthGrown(LinkFaults):
    """Line noise on the LEN field of the first status packet of every multi-servo reply: the packet then claims
    the start of the next servo's reply and fails its checksum/CRC."""

    def __init__(self, length_index: int, grow_by: int):
        super().__init__()
        self.length_index, self.grow_by = length_index, grow_by

    def any(self) -> bool:
        return True

    def apply(self, replies):
        if len(replies) < 2:
            return replies
        (delay_s, first), *rest = replies
        damaged = bytearray(first)
        damaged[self.length_index] += self.grow_by
        return [(delay_s, bytes(damaged)), *rest]


@pytest.mark.parametrize("protocol", ["feetech", "dynamixel-classic-sync-read"])
def test_a_corrupted_length_field_costs_only_that_servos_reply(protocol):
    """Feetech LEN + 3 and Dynamixel LEN + 2 claim the header of servo 2's reply; servo 2 must still be read."""
    arm, bus_cls, motors = RIGS[protocol]
    options = {"fast_sync_read": False} if bus_cls is DynamixelBus else {}
    with EmulatedBus.for_arm(arm) as emulator:
        bus = bus_cls(emulator.port, motors(), calibration(), num_retry=0, **options)
        bus.connect()
        emulator.faults = _FirstReplyLengthGrown(3, 3) if bus_cls is FeetechBus else _FirstReplyLengthGrown(5, 2)
        with pytest.raises(ServoNotRespondingError) as info:
            bus.sync_read("Present_Position")
        assert info.value.motors == {1: "shoulder_pan"}
        assert bus.corrupt_packets == 1
        emulator.faults = LinkFaults()
        bus.disconnect(disable_torque=False)


@pytest.mark.parametrize("hook", ["_vendor_decode_packets", "_vendor_unpack", "_vendor_sync_read",
                                  "_model_number_after_ping", "read_health"])
def test_a_bus_missing_a_vendor_hook_fails_at_construction(hook):
    namespace = {name: value for name, value in vars(FeetechBus).items()
                 if name != hook and not name.startswith(("__", "_abc"))}
    incomplete = type("IncompleteBus", (ServoBus,), namespace)
    with pytest.raises(TypeError, match=hook):
        incomplete("/dev/null", so_motors())


def test_scs_health_reads_each_servo_because_scs_has_no_sync_read(scs_emulator):
    from lerobot.motors.motors_bus import Motor, MotorNormMode

    scs_emulator.servo(1).thermal.temperature_c = 47.0
    scs_emulator.servo(2).env.faults.silent = True
    motors = {"pan": Motor(1, "scs0009", MotorNormMode.DEGREES), "tilt": Motor(2, "scs0009", MotorNormMode.DEGREES)}
    bus = FeetechBus(scs_emulator.port, motors, protocol_version=1)
    bus._connect(handshake=False)  # servo 2 is silent: the motor check would refuse to connect
    try:
        health = bus.read_health()
    finally:
        bus.close_port()
    assert health["pan"].responded and health["pan"].temperature_c == 47.0
    assert health["pan"].voltage_v > 4.0 and health["pan"].current_ma is None  # SCS has no Present_Current
    assert not health["tilt"].responded


def test_close_port_closes_without_torque_off_and_never_raises(feetech_bus, so101_emulator):
    feetech_bus.enable_torque()
    feetech_bus.close_port()
    assert not feetech_bus.is_connected
    assert so101_emulator.servo(1).torque_enabled  # no servo was talked to
    feetech_bus.close_port()  # closing a closed port is fine


def test_sync_read_accepts_replies_in_any_order(rig):
    emulator, bus = rig
    emulator.faults = LinkFaults(reorder_rate=1.0, seed=3)
    for servo in emulator.servos:
        servo.actuator.position_steps = 1000.0 + servo.id
    for _ in range(20):
        raw = bus.sync_read("Present_Position", normalize=False)
        assert raw == {j: 1001 + i for i, j in enumerate(SO_JOINTS)}


def test_lost_and_corrupt_replies_are_retried_and_never_returned(rig):
    emulator, bus = rig
    for servo in emulator.servos:
        servo.actuator.position_steps = 1500.0 + servo.id
    emulator.faults = LinkFaults(drop_rate=0.15, corrupt_rate=0.15, seed=7)
    bus.num_retry = 6
    bus.set_timeout(FAULT_TEST_TIMEOUT_MS)  # each lost reply costs one timeout
    expected = {j: 1501 + i for i, j in enumerate(SO_JOINTS)}
    for _ in range(40):
        assert bus.sync_read("Present_Position", normalize=False) == expected
    assert bus.retries > 0
    assert bus.corrupt_packets > 0


def test_truncated_and_late_replies_are_retried(rig):
    """A late reply (beyond the timeout) must not be mistaken for the answer to the next request."""
    emulator, bus = rig
    for servo in emulator.servos:
        servo.actuator.position_steps = 2500.0 - servo.id
    bus.set_timeout(FAULT_TEST_TIMEOUT_MS)
    # A delayed reply arrives after the bus gave up on it, and holds the half-duplex wire until then: rare
    # enough that retries catch up, late enough that it lands in a later transaction's window.
    late_s = FAULT_TEST_TIMEOUT_MS / 1000 + 0.05
    emulator.faults = LinkFaults(truncate_rate=0.1, delay_rate=0.04, delay_s=late_s, seed=11)
    bus.num_retry = 6
    expected = {j: 2499 - i for i, j in enumerate(SO_JOINTS)}
    for _ in range(25):
        assert bus.sync_read("Present_Position", normalize=False) == expected
        assert bus.read("Present_Position", "gripper", normalize=False) == 2494
    assert bus.retries > 0


def test_a_silent_servo_raises_one_clear_error_naming_it(rig):
    emulator, bus = rig
    emulator.servo(4).env.faults.silent = True
    requests_before = emulator.packets_handled
    with pytest.raises(ServoNotRespondingError) as info:
        bus.sync_read("Present_Position")
    assert emulator.packets_handled - requests_before == 3  # the message's "3 tries" are 3 requests on the wire
    message = str(info.value)
    assert "'wrist_flex' (id 4)" in message and emulator.port in message and "1000000 baud" in message
    assert "after 3 tries" in message  # default: 2 retries
    assert info.value.motors == {4: "wrist_flex"}


def test_health_reports_every_motor_and_survives_a_silent_one(rig):
    emulator, bus = rig
    emulator.servo(2).thermal.temperature_c = 61.0
    emulator.servo(5).env.faults.silent = True
    health = bus.read_health()
    assert set(health) == set(SO_JOINTS)
    assert health["shoulder_lift"].temperature_c == 61.0
    assert health["shoulder_lift"].voltage_v > 4.0
    assert not health["wrist_roll"].responded


def test_calibration_round_trip_and_half_turn_homing(rig):
    emulator, bus = rig
    emulator.servo(1).actuator.position_steps = 1000.0
    offsets = bus.set_half_turn_homings(["shoulder_pan"])
    assert bus.read("Present_Position", "shoulder_pan", normalize=False) == 2047
    stored = bus.read_calibration()
    assert stored["shoulder_pan"].homing_offset == offsets["shoulder_pan"]
    bus.write_calibration(calibration(range_min=700, range_max=3300, homing_offset=0))
    assert bus.is_calibrated
    assert bus.read_calibration()["gripper"].range_max == 3300


def test_unplugged_adapter_gives_a_port_error():
    with EmulatedBus.for_arm("so101") as emulator:
        bus = FeetechBus(emulator.port, so_motors(), calibration())
        bus.connect()
        emulator.unplug()
        with pytest.raises(PortUnavailableError) as info:
            bus.sync_read("Present_Position")
        assert "unplugged" in str(info.value)
        bus.close_port()


def test_missing_port_names_the_port_and_the_fix():
    bus = FeetechBus("/dev/ttyNOPE0", so_motors())
    with pytest.raises(ConnectionError) as info:
        bus.connect()
    assert "/dev/ttyNOPE0 does not exist" in str(info.value) and "find-port" in str(info.value)


def test_handshake_reports_missing_and_wrong_servos(so101_emulator):
    so101_emulator.servo(6).env.faults.silent = True
    bus = FeetechBus(so101_emulator.port, so_motors())
    with pytest.raises(RuntimeError) as info:
        bus.connect()
    assert "Missing motor IDs" in str(info.value) and "6" in str(info.value)
    assert not bus.is_connected


def test_feetech_error_bits_are_reported_with_the_motor_name(feetech_bus, so101_emulator, caplog):
    so101_emulator.servo(3).env.faults.latched_error_bits = 0x20  # overload
    with caplog.at_level(logging.WARNING):
        feetech_bus.sync_read("Present_Position")
    assert feetech_bus.status_errors == {"elbow_flex": ["overload"]}
    assert "elbow_flex" in caplog.text and "overload" in caplog.text
    so101_emulator.servo(3).env.faults.latched_error_bits = 0
    feetech_bus.sync_read("Present_Position")
    assert feetech_bus.status_errors == {}


def test_feetech_voltage_outside_the_variant_limits_sets_the_voltage_bit(feetech_bus, so101_emulator):
    so101_emulator.servo(1).env.faults.supply_voltage_v = 16.0
    health = feetech_bus.read_health(["shoulder_pan"])
    assert "input voltage" in health["shoulder_pan"].errors
    assert health["shoulder_pan"].voltage_v == 16.0


def test_dynamixel_eeprom_write_with_torque_on_fails_with_the_motor_named(dynamixel_bus):
    dynamixel_bus.enable_torque("gripper")
    with pytest.raises(ServoStatusError) as info:
        dynamixel_bus.write("Homing_Offset", "gripper", 10)
    assert "'gripper' (id 6)" in str(info.value) and "access error" in str(info.value)
    assert "torque off" in str(info.value)


def test_dynamixel_fast_sync_read_matches_sync_read(koch_emulator):
    for servo in koch_emulator.servos:
        servo.actuator.position_steps = 900.0 + 7 * servo.id
    bus = DynamixelBus(koch_emulator.port, koch_motors(), calibration(), fast_sync_read=True)
    bus.connect()
    try:
        assert bus.sync_read("Present_Position", normalize=False) == {
            j: 907 + 7 * i for i, j in enumerate(SO_JOINTS)}
    finally:
        bus.disconnect(disable_torque=False)


def test_dynamixel_value_with_stuffing_bytes_round_trips(dynamixel_bus, koch_emulator):
    """A homing offset whose bytes hold FF FF FD must be stuffed on the way out (the vendor SDK's bug)."""
    value = int.from_bytes(b"\x00\xff\xff\xfd", "little", signed=True)
    dynamixel_bus.write("Homing_Offset", "elbow_flex", value, normalize=False)
    assert dynamixel_bus.read("Homing_Offset", "elbow_flex", normalize=False) == value
    assert koch_emulator.servo(3).memory.get_raw("Homing_Offset") == int.from_bytes(b"\x00\xff\xff\xfd", "little")


def test_dynamixel_hardware_alert_latches_until_reboot(dynamixel_bus, koch_emulator):
    servo = koch_emulator.servo(2)
    dynamixel_bus.enable_torque("shoulder_lift")
    servo.thermal.temperature_c = 90.0  # above Temperature_Limit
    assert wait_until(lambda: "overheating" in " ".join(dynamixel_bus.read_health(["shoulder_lift"])["shoulder_lift"].errors))
    assert "shoulder_lift" in dynamixel_bus.status_errors
    assert not servo.torque_enabled  # Shutdown includes overheating by default
    servo.thermal.temperature_c = 30.0
    dynamixel_bus.reboot("shoulder_lift")
    assert dynamixel_bus.read_health(["shoulder_lift"])["shoulder_lift"].errors == []


@pytest.mark.parametrize("protocol", sorted(ARMS))
def test_scan_port_and_setup_motor_give_a_fresh_servo_its_id_and_baud(protocol):
    """A factory-fresh servo (id 1, factory baud) becomes id 5 at 1 Mbps through LeRobot's setup_motor flow."""
    from lerobot_vla_plugin.emulator.arms import ARMS as ARM_SLOTS
    from lerobot_vla_plugin.emulator.arms import build_servo
    from lerobot_vla_plugin.emulator.dynamixel import DynamixelBusLogic
    from lerobot_vla_plugin.emulator.feetech import FeetechBusLogic

    arm, bus_cls, motors = ARMS[protocol]
    slot = ARM_SLOTS[arm][1][4]  # wrist_roll, id 5
    factory_baud = 1_000_000 if protocol == "feetech" else 57_600
    fresh_slot = type(slot)(slot.joint, 1, slot.model, slot.supply_voltage_v, slot.voltage_limits_tenths)
    fresh = build_servo(protocol, fresh_slot, baudrate=factory_baud)
    logic = (FeetechBusLogic if protocol == "feetech" else DynamixelBusLogic)([fresh])
    class QuickScanBus(bus_cls):  # a full scan waits a broadcast window at every rate, down to 4800 baud
        available_baudrates = [115_200, factory_baud, 500_000 if protocol == "feetech" else 2_000_000]

    with EmulatedBus(logic) as emulator:
        assert QuickScanBus.scan_port(emulator.port) == {factory_baud: [1]}
        bus = bus_cls(emulator.port, {"wrist_roll": motors()["wrist_roll"]})
        bus.setup_motor("wrist_roll")
        assert fresh.id == 5 and fresh.baudrate == 1_000_000
        bus.close_port()
        fresh.power_cycle()  # survives a power cycle: the ID was saved to EEPROM
        assert fresh.id == 5


def test_dynamixel_fast_sync_read_stays_off_when_one_servo_firmware_is_too_old(koch_emulator):
    koch_emulator.servo(3).memory.set_raw("Firmware_Version", 44)  # XL330 needs >= 46
    bus = DynamixelBus(koch_emulator.port, koch_motors(), calibration())
    bus.connect()
    try:
        assert not bus.fast_sync_read
        assert len(bus.sync_read("Present_Position")) == 6
    finally:
        bus.disconnect(disable_torque=False)
