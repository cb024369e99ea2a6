"""Motor setup (id + baud rate), one servo at a time, as LeRobot does for its own arms.

LeRobot broadcast-pings every baud rate from the slowest, and each broadcast waits out the answer window of
253 possible ids (about a second, more at low rates). We first look for the servo with a quick unicast ping of
the factory id (1) and of the id it should get, at the likely rates first (the bus rate, the factory defaults:
Feetech 1 Mbps, Dynamixel 57.6 kbps); one broadcast at that rate then checks it is the only servo connected.
"""

from __future__ import annotations

_LIKELY_FIRST = (1_000_000, 57_600, 115_200, 500_000)


def scan_order(bus) -> list[int]:
    rates = list(bus.available_baudrates)
    first = [bus.default_baudrate] + [b for b in _LIKELY_FIRST if b != bus.default_baudrate]
    first = [b for b in first if b in rates]
    return first + sorted((b for b in rates if b not in first), reverse=True)


def setup_one_motor(bus, motor: str) -> tuple[int, int]:
    """Find the only servo on the bus, give it `motor`'s id and the bus baud rate; returns (old baud, old id)."""
    if not bus.is_connected:
        bus._connect(handshake=False)
    candidates = {1, bus.motors[motor].id}
    for baudrate in scan_order(bus):
        bus.set_baudrate(baudrate)
        if any(bus.ping(servo_id, num_retry=1) is not None for servo_id in candidates):
            found_baudrate, found_id = bus._find_single_motor(motor, baudrate)
            bus.setup_motor(motor, found_baudrate, found_id)
            return found_baudrate, found_id
    for baudrate in scan_order(bus):  # a servo with an unusual id: broadcast at each rate, as LeRobot does
        try:
            found_baudrate, found_id = bus._find_single_motor(motor, baudrate)
        except RuntimeError as exc:
            if str(exc).startswith("No servo found"):
                continue
            raise
        bus.setup_motor(motor, found_baudrate, found_id)
        return found_baudrate, found_id
    raise RuntimeError(f"No servo answered on {bus.port} at any baud rate. Check that only the '{motor}' servo is "
                       "connected, that the adapter board has power, and the cable is seated.")


def setup_motors(device) -> None:
    for motor in reversed(device.bus.motors):
        input(f"Connect the controller board to the '{motor}' motor only and press enter.")
        baudrate, servo_id = setup_one_motor(device.bus, motor)
        print(f"'{motor}' motor id set to {device.bus.motors[motor].id} (found as id {servo_id} at {baudrate} baud)")
