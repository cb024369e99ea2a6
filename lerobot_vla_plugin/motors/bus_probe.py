"""Who answers on a port when the expected servos do not: the other protocol, or the same one at another baud rate.

A Koch (Dynamixel) arm plugged into a port given to an SO-101 (Feetech) type, or servos left at a factory baud
rate, look exactly like an unpowered arm to a bus that only speaks its own protocol at its own rate: nothing
answers. A broadcast PING per (protocol, baud rate) tells these cases apart, so the error can name the fix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# The rates servos are usually left at: ours (1 Mbps), the factory defaults (Dynamixel X 57600, some Feetech
# batches 115200 / 500000) and LeRobot's older defaults. Each probe waits out a broadcast window (~1 s).
LIKELY_BAUDRATES = {
    "feetech": (1_000_000, 500_000, 115_200, 57_600),
    "dynamixel": (1_000_000, 57_600, 115_200, 2_000_000),
}
_DESCRIPTION = {"feetech": "Feetech (SO-100/SO-101 servos)", "dynamixel": "Dynamixel protocol 2.0 (Koch servos)"}


@dataclass(frozen=True)
class BusAnswer:
    protocol: str
    baudrate: int
    ids: tuple[int, ...]

    def explain(self, expected_protocol: str, expected_baudrate: int) -> str:
        """One sentence: what answered and what to do about it."""
        found = f"servo ids {list(self.ids)} answer as {_DESCRIPTION[self.protocol]} at {self.baudrate} baud"
        if self.protocol != expected_protocol:
            return (f"{found}: this port carries a {self.protocol} arm, not a {expected_protocol} one. Give this "
                    f"port to a {self.protocol} arm type (e.g. {_example_type(self.protocol)}), or give the "
                    f"{expected_protocol} arm's port here.")
        return (f"{found}, not at {expected_baudrate} baud: set each servo's id and baud rate with "
                "`lerobot-vla setup-motors` (same device arguments).")


def _example_type(protocol: str) -> str:
    return "vla_koch_follower / vla_koch_leader" if protocol == "dynamixel" else "vla_so101_follower / vla_so101_leader"


def bus_class(protocol: str):
    if protocol == "feetech":
        from .feetech.bus import FeetechBus

        return FeetechBus
    from .dynamixel.bus import DynamixelBus

    return DynamixelBus


def probe_order(protocol: str, baudrate: int) -> list[tuple[str, int]]:
    """The other protocol at its usual rate first (the commonest mix-up), then our protocol at other rates,
    then the other protocol at its other rates. The (protocol, rate) that just failed is left out."""
    other = "dynamixel" if protocol == "feetech" else "feetech"
    order = [(other, LIKELY_BAUDRATES[other][0])]
    order += [(protocol, rate) for rate in LIKELY_BAUDRATES[protocol]]
    order += [(other, rate) for rate in LIKELY_BAUDRATES[other][1:]]
    return [(p, r) for p, r in order if (p, r) != (protocol, baudrate)]


def find_answering_bus(port: str, protocol: str, baudrate: int) -> BusAnswer | None:
    """The first (protocol, baud rate) at which any servo answers a broadcast PING on `port`, else None.

    The port must not be held open by another bus object: two readers on one port would split the replies.
    """
    for candidate, rate in probe_order(protocol, baudrate):
        bus = bus_class(candidate)(port, {})
        try:
            bus._connect(handshake=False)
            bus.set_baudrate(rate)
            found = bus.broadcast_ping()
        except (OSError, RuntimeError) as exc:  # the port itself is the problem; the caller reports that
            logger.debug("probing %s at %d baud on %s failed: %s", candidate, rate, port, exc)
            return None
        finally:
            bus.close_port()
        if found:
            return BusAnswer(candidate, rate, tuple(sorted(found)))
    return None
