"""A virtual servo bus served on a pseudo-terminal: stateful servos, wire timing, fault injection.

Usage in tests::

    with EmulatedBus.for_arm("so101") as bus:
        FeetechBus(port=bus.port, motors=...).connect()
        bus.servo(3).env.faults.silent = True        # servo 3 stops answering

The host side can be any program that opens a serial port: our drivers, LeRobot's buses, the vendor SDKs.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass

from .link import PtyLink, TimingModel

logger = logging.getLogger(__name__)


@dataclass
class LinkFaults:
    """Faults on the reply path, each applied per status packet with its own probability."""

    drop_rate: float = 0.0
    corrupt_rate: float = 0.0
    truncate_rate: float = 0.0
    delay_rate: float = 0.0
    delay_s: float = 0.05
    reorder_rate: float = 0.0  # shuffle the replies of one multi-servo transaction
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("drop_rate", "corrupt_rate", "truncate_rate", "delay_rate", "reorder_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value} must be a probability between 0 and 1")
        self._rng = random.Random(self.seed)

    def any(self) -> bool:
        return any((self.drop_rate, self.corrupt_rate, self.truncate_rate, self.delay_rate, self.reorder_rate))

    def apply(self, replies: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
        rng = self._rng
        if len(replies) > 1 and rng.random() < self.reorder_rate:
            replies = rng.sample(replies, len(replies))
        out = []
        for delay_s, data in replies:
            if rng.random() < self.drop_rate:
                continue
            if rng.random() < self.corrupt_rate:
                corrupted = bytearray(data)
                index = rng.randrange(2, len(corrupted))  # keep the header so the host sees a bad packet
                corrupted[index] ^= 1 << rng.randrange(8)
                data = bytes(corrupted)
            if rng.random() < self.truncate_rate:
                data = data[: rng.randrange(1, len(data))]
            if rng.random() < self.delay_rate:
                delay_s += self.delay_s
            out.append((delay_s, data))
        return out


class EmulatedBus:
    """Servos of one protocol on one pty. `logic` is FeetechBusLogic or DynamixelBusLogic."""

    def __init__(self, logic, *, timing: TimingModel | None = None, faults: LinkFaults | None = None, clock=None):
        self.logic = logic
        self.timing = timing or TimingModel()
        self.faults = faults or LinkFaults()
        self.clock = clock or time.perf_counter
        self.lock = threading.RLock()
        self._buffer = bytearray()
        self.packets_handled = 0
        self.bad_packets = 0
        self.handler_errors = 0
        self._link = PtyLink(self._on_bytes, self.timing)

    @classmethod
    def for_arm(cls, arm: str, **kwargs) -> "EmulatedBus":
        from .arms import build_arm_logic

        return cls(build_arm_logic(arm), **kwargs)

    # -- lifecycle --------------------------------------------------------------------------------------------

    @property
    def port(self) -> str:
        return self._link.port

    def start(self) -> "EmulatedBus":
        self._link.start()
        return self

    def stop(self) -> None:
        if not self._link.unplugged:
            self._link.stop()

    def unplug(self) -> None:
        """The adapter disappears: the port path vanishes and an open host handle gets I/O errors."""
        self._link.unplug()

    def __enter__(self) -> "EmulatedBus":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- servos -----------------------------------------------------------------------------------------------

    @property
    def servos(self) -> list:
        return self.logic.servos

    def servo(self, servo_id: int):
        for servo in self.logic.servos:
            if servo.id == servo_id:
                return servo
        raise KeyError(f"no emulated servo with id {servo_id} on {self.port}")

    def advance(self, now_s: float | None = None) -> None:
        """Bring every servo's motion up to `now` (the link does this on every packet anyway)."""
        with self.lock:
            now_s = self.clock() if now_s is None else now_s
            for servo in self.logic.servos:
                servo.advance(now_s)

    # -- byte path --------------------------------------------------------------------------------------------

    def _on_bytes(self, data: bytes, received_at: float) -> None:
        buffer = self._buffer
        buffer += data
        baudrate = self._link.line_baudrate()
        start = 0
        with self.lock:
            burst = self.logic.decode_packets(buffer)
            self.bad_packets += burst.corrupt  # real servos ignore a corrupt instruction
            for packet, end in burst.packets:
                try:
                    replies = self.logic.handle(packet, baudrate, self.clock())
                except Exception:  # a bug in one servo model must not silence the whole bus
                    self.handler_errors += 1
                    logger.exception("emulated bus %s failed to handle %r", self.port, packet)
                    replies = []
                if not self.timing.enabled:  # return delays are part of the timing model
                    replies = [(0.0, data) for _, data in replies]
                self.packets_handled += 1
                if self.faults.any():
                    replies = self.faults.apply(replies)
                self._link.schedule(end - start, replies, received_at, baudrate)
                start = end
        del buffer[: burst.keep_from]
