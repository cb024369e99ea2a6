"""How good is the wire: replies lost or corrupt per servo over many position reads, and the retries they cost.

A bus that loses 5 % of its replies still passes a ping of every servo (retries hide it), and then breaks a
recording minutes later when three retries in a row fail. Measuring it takes the control loop's own
transaction, a sync read of every servo's position, repeated N times, counting the first try of each read as
the link's quality and the retries as what the loop would pay.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .bus_base import DEFAULT_NUM_RETRY

LIKELY_CAUSES = ("a loose, long or unshielded cable (reseat both ends, use the shortest one)",
                 "a supply that sags under load (check the 12 V / 5 V brick and its current rating)",
                 "a baud rate too high for the wiring (lower it with `lerobot-vla setup-motors`)",
                 "an unpowered USB hub or a long USB extension (plug the adapter into the computer)",
                 "the USB adapter's latency timer (FTDI: set it to 1 ms)")


@dataclass
class LinkQuality:
    reads: int  # transactions sent (each asks every servo once)
    baudrate: int
    missing: dict[str, int]  # per motor: reads whose first try brought no valid reply
    unrecovered: dict[str, int] = field(default_factory=dict)  # per motor: reads still missing after retries
    reads_with_corrupt_data: int = 0  # transactions in which a reply failed its checksum / CRC or length
    retries: int = 0  # re-requests sent, as the control loop would

    @property
    def replies_expected(self) -> int:
        return self.reads * len(self.missing)

    @property
    def loss_rate(self) -> float:
        """Fraction of replies that did not arrive valid at the first try."""
        return sum(self.missing.values()) / self.replies_expected if self.replies_expected else 0.0

    def per_motor(self) -> str:
        return ", ".join(f"'{m}' {n}/{self.reads}" for m, n in self.missing.items())

    def summary(self) -> str:
        lost = sum(self.missing.values())
        text = (f"{lost} of {self.replies_expected} replies ({self.loss_rate:.1%}) lost or corrupt over {self.reads} "
                f"position reads at {self.baudrate} baud ({self.per_motor()}); corrupt data in "
                f"{self.reads_with_corrupt_data} reads, {self.retries} retries")
        failed = sum(self.unrecovered.values())
        if failed:
            text += f"; {failed} reads failed even after {DEFAULT_NUM_RETRY} retries (LeRobot would stop there)"
        return text


def measure_link(bus, motors: list[str], reads: int, register: str = "Present_Position") -> LinkQuality:
    """Read `register` from `motors` `reads` times, as the control loop does, and count what went wrong.

    Uses one sync read per transaction where the protocol has it, else one read per servo.
    """
    address, length = bus._register(register, motors)
    ids = {bus.motors[m].id: m for m in motors}
    try:
        bus._assert_protocol_is_compatible("sync_read")
        requests = [(bus._vendor_sync_read(address, length, list(ids)), list(ids))]
    except NotImplementedError:  # Feetech SCS (protocol 1) has no sync read
        requests = [(bus._vendor_read(i, address, length), [i]) for i in ids]
    quality = LinkQuality(reads=reads, baudrate=bus.get_baudrate(), missing=dict.fromkeys(motors, 0),
                          unrecovered=dict.fromkeys(motors, 0))
    for _ in range(reads):
        corrupt_before = bus.corrupt_packets
        for request, expected in requests:
            missing = [i for i in expected if i not in bus._transact(request, expected, length)]
            for servo_id in missing:
                quality.missing[ids[servo_id]] += 1
            for _ in range(DEFAULT_NUM_RETRY):
                if not missing:
                    break
                quality.retries += 1
                again = bus._transact(bus._vendor_sync_read(address, length, missing) if len(requests) == 1
                                      else bus._vendor_read(missing[0], address, length), missing, length)
                missing = [i for i in missing if i not in again]
            for servo_id in missing:
                quality.unrecovered[ids[servo_id]] += 1
        quality.reads_with_corrupt_data += bus.corrupt_packets > corrupt_before
    return quality
