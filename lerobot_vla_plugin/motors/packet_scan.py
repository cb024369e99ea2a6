"""Walking a burst of bytes packet by packet: the one resynchronisation rule both protocols share.

Pure, no I/O. Each protocol module wraps `scan_packets` with its own decoder as `decode_packets`; the bus
drivers, the emulators and the tests all decode bursts through that, so they agree on what a burst holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


class Burst(NamedTuple):
    """What a scan found in a buffer."""

    packets: list[tuple[Any, int]]  # (packet, index just after it), in arrival order
    keep_from: int  # bytes before this index are decoded or garbage; the rest may still grow into a packet
    corrupt: int  # packets dropped because their checksum/CRC did not match


def scan_packets(decode: Callable[[Any, int], tuple[Any, int]], corrupt_error: type[Exception],
                 buffer: bytes | bytearray, start: int = 0) -> Burst:
    """Every packet `decode` finds in `buffer` from `start`, skipping corrupted ones.

    After a corrupted packet the scan resumes one byte after its header, never at the end its LEN field claims:
    a damaged LEN claims bytes that belong to the next servo's reply, and jumping there would lose that reply.
    `corrupt_error` must carry the bad packet's header index as `start`.
    """
    packets = []
    corrupt = 0
    position = start
    while True:
        try:
            packet, end = decode(buffer, position)
        except corrupt_error as error:
            corrupt += 1
            position = error.start + 1
            continue
        if packet is None:
            return Burst(packets, end, corrupt)
        packets.append((packet, end))
        position = end
