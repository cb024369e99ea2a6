"""The physical link between host and servos: a pseudo-terminal plus a model of wire and USB timing.

A pty has no timing of its own (1000 bytes "at 9600 baud" pass in 0.1 ms), so the link schedules every reply at
the time a real half-duplex bus would deliver it: the request's bytes on the wire, each servo's return delay and
reply bytes, then the latency a USB serial adapter adds before the host sees the reply (its frame / latency
timer). On real hardware that latency, times the number of round trips per control tick, decides the loop rate.
"""

from __future__ import annotations

import array
import errno
import fcntl
import heapq
import os
import select
import threading
import time
import tty
from dataclasses import dataclass

BITS_PER_BYTE = 10  # 8N1: start bit, 8 data bits, stop bit
_TCGETS2 = 0x802C542A  # Linux ioctl: termios2 with the exact c_ispeed / c_ospeed (pyserial sets rates this way)


def read_line_baudrate(fd: int) -> int:
    """The baud rate the client configured on the pty, so servos can ignore a host talking at the wrong rate."""
    buf = array.array("i", [0] * 64)
    fcntl.ioctl(fd, _TCGETS2, buf)
    return buf[10]  # c_ospeed


@dataclass
class TimingModel:
    """Wire and USB timing. `enabled=False` answers as fast as the pty allows."""

    enabled: bool = False
    usb_latency_s: float = 0.001

    def wire_time_s(self, n_bytes: int, baudrate: int) -> float:
        return n_bytes * BITS_PER_BYTE / baudrate if self.enabled else 0.0


class PtyLink:
    """Owns the pty pair and a thread that turns host bytes into scheduled replies.

    `handle(data, now) -> list[(delay_s, reply_bytes)]` is supplied by the bus emulator; this class only moves
    bytes and keeps time. The slave fd stays open for the link's whole life: without it the master reads EIO
    whenever no client has the port open and the loop would spin.
    """

    def __init__(self, handle, timing: TimingModel):
        self._handle = handle
        self.timing = timing
        self.master_fd, self.slave_fd = os.openpty()
        # Raw mode at once: bytes written before a client opens the port would otherwise sit in canonical mode.
        tty.setraw(self.slave_fd)
        tty.setraw(self.master_fd)
        self.port = os.ttyname(self.slave_fd)
        self._wake_r, self._wake_w = os.pipe()
        self._stop = threading.Event()
        self._pending: list[tuple[float, int, bytes]] = []  # (due time, sequence, bytes) min-heap
        self._sequence = 0
        self._wire_free_at = 0.0
        self._lock = threading.Lock()
        self.unplugged = False
        self.bytes_received = 0
        self.bytes_sent = 0
        self._thread = threading.Thread(target=self._serve, name=f"servo-bus {self.port}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=2.0)
        for fd in (self.master_fd, self.slave_fd, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def unplug(self) -> None:
        """Simulate pulling the USB cable: the device node disappears and open handles fail with EIO."""
        with self._lock:
            self.unplugged = True
            self._pending.clear()
        self._stop.set()
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=2.0)
        for fd in (self.master_fd, self.slave_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    # -- scheduling -------------------------------------------------------------------------------------------

    def line_baudrate(self) -> int:
        return read_line_baudrate(self.slave_fd)

    def schedule(
        self, request_bytes: int, replies: list[tuple[float, bytes]], received_at: float, baudrate: int
    ) -> None:
        """Queue replies behind the request on a half-duplex wire, then add the adapter's latency."""
        wire = self.timing.wire_time_s
        with self._lock:
            start = max(received_at, self._wire_free_at)
            t = start + wire(request_bytes, baudrate)
            for extra_delay_s, data in replies:
                t += extra_delay_s + wire(len(data), baudrate)
                due = t + (self.timing.usb_latency_s if self.timing.enabled else 0.0)
                heapq.heappush(self._pending, (due, self._sequence, data))
                self._sequence += 1
            self._wire_free_at = t

    # -- thread -----------------------------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                next_due = self._pending[0][0] if self._pending else None
            timeout = None if next_due is None else max(0.0, next_due - time.perf_counter())
            try:
                readable, _, _ = select.select([self.master_fd, self._wake_r], [], [], timeout)
            except (OSError, ValueError):
                return
            if self._wake_r in readable:
                os.read(self._wake_r, 64)
            if self.master_fd in readable:
                try:
                    data = os.read(self.master_fd, 4096)
                except OSError as exc:
                    if exc.errno == errno.EIO:  # no client has the port open right now
                        time.sleep(0.001)
                        continue
                    return
                if data:
                    now = time.perf_counter()
                    self.bytes_received += len(data)
                    self._handle(data, now)
            self._flush_due()

    def _flush_due(self) -> None:
        now = time.perf_counter()
        out = bytearray()
        with self._lock:
            while self._pending and self._pending[0][0] <= now:
                out += heapq.heappop(self._pending)[2]
        if out:
            try:
                os.write(self.master_fd, bytes(out))
                self.bytes_sent += len(out)
            except OSError:
                pass
