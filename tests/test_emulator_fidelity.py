"""The emulator is faithful enough that the vendor SDKs and LeRobot's own buses work against it unchanged.

Also pins the servo behaviours the emulator promises (EEPROM/Lock, ID changes, REG_WRITE/ACTION, protection),
driven through raw vendor-SDK calls so the emulator is checked by a second, independent implementation.
"""

from __future__ import annotations

import gc
import time

import pytest
from conftest import SO_JOINTS, calibration, koch_motors, so_motors
from helpers import wait_until

from lerobot_vla_plugin.motors.bus_base import EMULATED_SERVO_TIMEOUT_MS



def _patient(port_handler) -> None:
    """Give the SDK's reply timeout the margin our buses give an emulator (LeRobot patches its Feetech port the
    same way, `patch_setPacketTimeout`): the SDK's own ~34 ms is for servos on a wire, and the emulator thread
    that answers here shares a busy 2-core machine with everything else."""
    original = port_handler.setPacketTimeout

    def set_packet_timeout(packet_length):
        original(packet_length)
        port_handler.packet_timeout += EMULATED_SERVO_TIMEOUT_MS

    port_handler.setPacketTimeout = set_packet_timeout


@pytest.fixture(autouse=True)
def no_collection_pauses_between_request_and_reply():
    """The emulated servo answers from a thread of this process, so a garbage-collection pass (over 200 ms once
    the suite has loaded torch and LeRobot, longer on a loaded machine) stops the servo together with the SDK that
    waits for it; the SDK, which never retries, then reads a timeout on waking. A servo on a wire keeps answering
    through its host's pauses: keep the host's collector out of the exchange, as the wire would."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()


@pytest.fixture
def scs(so101_emulator):
    import scservo_sdk

    port = scservo_sdk.PortHandler(so101_emulator.port)
    _patient(port)
    assert port.openPort() and port.setBaudRate(1_000_000)
    yield scservo_sdk, port, scservo_sdk.PacketHandler(0)
    port.closePort()


@pytest.fixture
def dxl(koch_emulator):
    import dynamixel_sdk

    port = dynamixel_sdk.PortHandler(koch_emulator.port)
    _patient(port)
    assert port.openPort() and port.setBaudRate(1_000_000)
    yield dynamixel_sdk, port, dynamixel_sdk.PacketHandler(2.0)
    port.closePort()


# -- feetech-servo-sdk (scservo_sdk) ---------------------------------------------------------------------------


def test_scservo_sdk_ping_read_write_and_group_sync(scs, so101_emulator):
    sdk, port, packets = scs
    model, comm, error = packets.ping(port, 1)
    assert (model, comm, error) == (777, sdk.COMM_SUCCESS, 0)
    assert packets.write1ByteTxRx(port, 2, 40, 1) == (sdk.COMM_SUCCESS, 0)  # torque on
    assert packets.write2ByteTxRx(port, 2, 42, 2300) == (sdk.COMM_SUCCESS, 0)
    assert wait_until(lambda: packets.read2ByteTxRx(port, 2, 56)[0] == 2300)

    reader = sdk.GroupSyncRead(port, packets, 56, 2)
    for servo_id in range(1, 7):
        reader.addParam(servo_id)
    assert reader.txRxPacket() == sdk.COMM_SUCCESS
    assert [reader.getData(i, 56, 2) for i in range(1, 7)] == [2048, 2300, 2048, 2048, 2048, 2048]

    writer = sdk.GroupSyncWrite(port, packets, 42, 2)
    for servo_id in range(1, 7):
        writer.addParam(servo_id, [0x00, 0x09])  # 2304
    assert writer.txPacket() == sdk.COMM_SUCCESS
    assert wait_until(lambda: packets.read2ByteTxRx(port, 2, 56)[0] == 2304)
    assert so101_emulator.servo(5).memory.get_raw("Goal_Position") == 2304


def test_scs_servos_answer_read_but_not_sync_read_like_real_scs_firmware(scs_emulator):
    import scservo_sdk as sdk

    port = sdk.PortHandler(scs_emulator.port)
    _patient(port)
    assert port.openPort() and port.setBaudRate(1_000_000)
    packets = sdk.PacketHandler(1)  # the SDK's byte order is module-global: big-endian for SCS
    try:
        assert packets.read2ByteTxRx(port, 1, 3) == (1284, sdk.COMM_SUCCESS, 0)  # Model_Number, big-endian
        reader = sdk.GroupSyncRead(port, packets, 56, 2)
        for servo_id in (1, 2):
            reader.addParam(servo_id)
        assert reader.txRxPacket() == sdk.COMM_RX_TIMEOUT
        assert scs_emulator.packets_handled == 2
    finally:
        sdk.PacketHandler(0)  # back to little-endian, as every other test expects
        port.closePort()


def test_scservo_sdk_sees_error_bits(scs, so101_emulator):
    sdk, port, packets = scs
    so101_emulator.servo(4).env.faults.latched_error_bits = 0x04  # overheat
    _, comm, error = packets.read2ByteTxRx(port, 4, 56)
    assert comm == sdk.COMM_SUCCESS and error == 0x04
    assert "Overheat" in packets.getRxPacketError(error)


def test_feetech_eeprom_lock_reg_write_and_id_change(scs, so101_emulator):
    sdk, port, packets = scs
    servo = so101_emulator.servo(6)
    # Lock = 1 (power-up): an EEPROM write takes effect but is not saved.
    assert packets.write2ByteTxRx(port, 6, 11, 3000) == (sdk.COMM_SUCCESS, 0)
    servo.power_cycle()
    assert packets.read2ByteTxRx(port, 6, 11)[0] == 4095
    # Lock = 0: it is saved.
    packets.write1ByteTxRx(port, 6, 55, 0)
    packets.write2ByteTxRx(port, 6, 11, 3000)
    servo.power_cycle()
    assert packets.read2ByteTxRx(port, 6, 11)[0] == 3000
    # REG_WRITE waits for ACTION.
    packets.write1ByteTxRx(port, 6, 40, 1)
    packets.regWriteTxRx(port, 6, 42, 2, [0x00, 0x0A])  # 2560
    time.sleep(0.05)
    assert packets.read2ByteTxRx(port, 6, 56)[0] == 2048
    packets.action(port, 6)
    assert wait_until(lambda: packets.read2ByteTxRx(port, 6, 56)[0] == 2560)
    # A new ID answers at once; the old one is gone.
    packets.write1ByteTxRx(port, 6, 55, 0)
    assert packets.write1ByteTxRx(port, 6, 5, 9) == (sdk.COMM_SUCCESS, 0)
    assert packets.ping(port, 9)[1] == sdk.COMM_SUCCESS
    assert packets.ping(port, 6)[1] != sdk.COMM_SUCCESS


def test_feetech_overload_latches_and_unloads_the_motor(scs, so101_emulator):
    sdk, port, packets = scs
    servo = so101_emulator.servo(3)
    packets.write1ByteTxRx(port, 3, 40, 1)
    servo.actuator.external_load_fraction = 0.95  # the joint is pushed against a hard stop
    assert wait_until(lambda: packets.read1ByteTxRx(port, 3, 40)[0] == 0, timeout_s=3.0)
    _, _, error = packets.read2ByteTxRx(port, 3, 56)
    assert error & 0x20  # overload bit latched
    load, _, _ = packets.read2ByteTxRx(port, 3, 60)
    assert load & 0x3FF > 500  # sign-magnitude, 0.1 % units


def test_temperature_rises_under_load_and_falls_back(so101_emulator):
    servo = so101_emulator.servo(2)
    servo.actuator.external_load_fraction = 0.6
    start = servo.thermal.temperature_c
    servo.thermal.advance(60.0, servo.actuator.load_fraction)
    hot = servo.thermal.temperature_c
    assert hot > start + 10
    servo.thermal.advance(600.0, 0.0)
    assert servo.thermal.temperature_c < hot - 5


# -- dynamixel-sdk ---------------------------------------------------------------------------------------------


def test_dynamixel_sdk_ping_broadcast_read_write_sync(dxl, koch_emulator):
    sdk, port, packets = dxl
    assert packets.ping(port, 1)[:2] == (1060, sdk.COMM_SUCCESS)
    assert packets.ping(port, 3)[:2] == (1200, sdk.COMM_SUCCESS)
    found, comm = packets.broadcastPing(port)
    assert comm == sdk.COMM_SUCCESS and sorted(found) == [1, 2, 3, 4, 5, 6]
    assert found[1][0] == 1060
    assert packets.write1ByteTxRx(port, 4, 64, 1) == (sdk.COMM_SUCCESS, 0)
    assert packets.write4ByteTxRx(port, 4, 116, 2500) == (sdk.COMM_SUCCESS, 0)
    assert wait_until(lambda: packets.read4ByteTxRx(port, 4, 132)[0] == 2500)

    reader = sdk.GroupSyncRead(port, packets, 132, 4)
    for servo_id in range(1, 7):
        reader.addParam(servo_id)
    assert reader.txRxPacket() == sdk.COMM_SUCCESS
    assert reader.getData(4, 132, 4) == 2500
    writer = sdk.GroupSyncWrite(port, packets, 116, 4)
    writer.addParam(4, [0xD0, 0x07, 0, 0])  # 2000
    assert writer.txPacket() == sdk.COMM_SUCCESS
    assert wait_until(lambda: packets.read4ByteTxRx(port, 4, 132)[0] == 2000)


def test_dynamixel_sdk_reads_a_stuffed_status(dxl, koch_emulator):
    """Present_Position whose bytes hold FF FF FD: the emulator stuffs the status, the SDK unstuffs it."""
    sdk, port, packets = dxl
    assert packets.write1ByteTxRx(port, 5, 11, 4) == (sdk.COMM_SUCCESS, 0)  # extended position: no wrap to one turn
    koch_emulator.servo(5).memory.set_raw("Homing_Offset", 0xFDFFFF00 - 2048)  # present = actual + offset
    value, comm, error = packets.read4ByteTxRx(port, 5, 132)
    assert comm == sdk.COMM_SUCCESS and value == 0xFDFFFF00


def test_dynamixel_eeprom_access_error_and_reboot(dxl, koch_emulator):
    sdk, port, packets = dxl
    packets.write1ByteTxRx(port, 2, 64, 1)
    comm, error = packets.write1ByteTxRx(port, 2, 11, 4)  # Operating_Mode is EEPROM
    assert comm == sdk.COMM_SUCCESS and error == 7  # access error
    packets.write1ByteTxRx(port, 2, 64, 0)
    assert packets.write1ByteTxRx(port, 2, 11, 4) == (sdk.COMM_SUCCESS, 0)
    assert packets.write1ByteTxRx(port, 2, 11, 5)[1] == 4  # XL430 has no current-based position mode
    assert packets.reboot(port, 2)[0] == sdk.COMM_SUCCESS
    assert packets.read1ByteTxRx(port, 2, 11)[0] == 4  # EEPROM survives the reboot


# -- LeRobot's own buses ---------------------------------------------------------------------------------------


def test_lerobot_feetech_bus_works_against_the_emulator(so101_emulator):
    from lerobot.motors.feetech import FeetechMotorsBus

    bus = FeetechMotorsBus(so101_emulator.port, so_motors(), calibration())
    _patient(bus.port_handler)
    bus.connect()  # handshake: ping every id, compare firmware versions
    try:
        assert bus.is_calibrated is False
        bus.write_calibration(calibration())
        assert bus.is_calibrated
        bus.enable_torque()
        bus.sync_write("Goal_Position", {"elbow_flex": 20.0})
        assert wait_until(lambda: abs(bus.sync_read("Present_Position")["elbow_flex"] - 20.0) < 0.2)
        assert bus.broadcast_ping() == {i: 777 for i in range(1, 7)}
    finally:
        bus.disconnect()
    assert all(not s.torque_enabled for s in so101_emulator.servos)


def test_lerobot_dynamixel_bus_works_against_the_emulator(koch_emulator):
    from lerobot.motors.dynamixel import DynamixelMotorsBus

    bus = DynamixelMotorsBus(koch_emulator.port, koch_motors(), calibration())
    _patient(bus.port_handler)
    bus.connect()
    try:
        bus.write_calibration(calibration())
        assert bus.read_calibration()["gripper"].range_min == 500
        bus.enable_torque()
        bus.sync_write("Goal_Position", {"wrist_flex": 50.0})
        assert wait_until(lambda: abs(bus.sync_read("Present_Position")["wrist_flex"] - 50.0) < 0.5)
    finally:
        bus.disconnect()
    assert all(not s.torque_enabled for s in koch_emulator.servos)


def test_lerobot_and_our_bus_read_the_same_values(so101_emulator):
    from lerobot.motors.feetech import FeetechMotorsBus

    from lerobot_vla_plugin.motors.feetech.bus import FeetechBus

    for servo in so101_emulator.servos:
        servo.actuator.position_steps = 1200.0 + 111 * servo.id
    theirs = FeetechMotorsBus(so101_emulator.port, so_motors(), calibration())
    _patient(theirs.port_handler)
    theirs.connect()
    lerobot_values = theirs.sync_read("Present_Position")
    theirs.disconnect(disable_torque=False)
    ours = FeetechBus(so101_emulator.port, so_motors(), calibration())
    ours.connect()
    assert ours.sync_read("Present_Position") == lerobot_values
    assert list(lerobot_values) == list(SO_JOINTS)
    ours.disconnect(disable_torque=False)
