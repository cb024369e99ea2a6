"""The serial port under a servo bus: pyserial to open and configure, raw fd I/O on the hot path.

On POSIX the port is read with `select` + `os.read` on pyserial's file descriptor: one system call per chunk
instead of pyserial's per-call bookkeeping, which matters when a whole control tick is one write and one read.
"""

from __future__ import annotations

import errno
import os
import select
import stat
import sys
import time

import serial

from .errors import PortUnavailableError


_LINUX_PTY_SLAVE_MAJORS = range(136, 144)  # Unix98 pty slaves (/dev/pts/N), see Documentation/admin-guide/devices.txt


def is_pseudo_terminal(port: str) -> bool:
    """True when `port` is a pseudo-terminal: the servo emulator (or a socat/ser2net bridge) answers there, a
    process on a possibly busy computer rather than servos on a wire, so replies need a wider margin."""
    try:
        info = os.stat(port)
    except OSError:
        return False
    if not stat.S_ISCHR(info.st_mode):
        return False
    real = os.path.realpath(port)
    if real.startswith("/dev/pts/"):
        return True
    if sys.platform == "darwin":
        return os.path.basename(real).startswith("ttys")  # macOS pty slaves are /dev/ttysNNN
    return sys.platform.startswith("linux") and os.major(info.st_rdev) in _LINUX_PTY_SLAVE_MAJORS


class SerialLink:
    def __init__(self, port: str, baudrate: int):
        self.port = port
        self._baudrate = baudrate
        self._serial: serial.Serial | None = None
        self._fd: int | None = None

    @property
    def is_open(self) -> bool:
        return self._serial is not None and self._serial.is_open

    def open(self) -> None:
        try:
            self._serial = serial.Serial(self.port, self._baudrate, bytesize=8, timeout=0, write_timeout=1.0)
        except serial.SerialException as exc:
            raise PortUnavailableError(_explain_open_failure(self.port, exc)) from exc
        self._fd = getattr(self._serial, "fd", None)
        self.discard_input()

    def close(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            finally:
                self._serial = None
                self._fd = None

    @property
    def baudrate(self) -> int:
        return self._baudrate

    @baudrate.setter
    def baudrate(self, value: int) -> None:
        self._baudrate = value
        if self._serial is not None:
            self._serial.baudrate = value

    def discard_input(self) -> None:
        if self._serial is not None:
            self._serial.reset_input_buffer()

    def write(self, data: bytes) -> None:
        try:
            if self._fd is not None:
                view = memoryview(data)
                while view:
                    try:
                        written = os.write(self._fd, view)
                    except BlockingIOError:  # the driver's buffer is full: wait until the line drains
                        if not select.select((), (self._fd,), (), 1.0)[1]:
                            raise OSError(errno.ETIMEDOUT, "output stalled for 1 s") from None
                        continue
                    view = view[written:]
            else:
                self._serial.write(data)
        except OSError as exc:
            raise PortUnavailableError(
                f"Writing to {self.port} failed ({exc}). The USB adapter was probably unplugged or lost power; "
                "reconnect it and restart."
            ) from exc

    def drain(self) -> None:
        """Block until the driver has handed every written byte to the device."""
        if self._serial is not None:
            self._serial.flush()

    def read_some(self, deadline: float) -> bytes:
        """Whatever arrives before `deadline` (perf_counter seconds); b"" on timeout."""
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return b""
        if self._fd is None:
            self._serial.timeout = remaining
            return self._serial.read(max(1, self._serial.in_waiting))
        try:
            readable, _, _ = select.select((self._fd,), (), (), remaining)
            if not readable:
                return b""
            data = os.read(self._fd, 4096)
        except OSError as exc:
            if exc.errno == errno.EINTR:
                return b""
            raise PortUnavailableError(
                f"Reading from {self.port} failed ({exc}). The USB adapter was probably unplugged or lost power; "
                "reconnect it and restart."
            ) from exc
        if not data:  # readable but empty: the device went away
            raise PortUnavailableError(f"{self.port} closed unexpectedly: the USB adapter was unplugged.")
        return data


def _explain_open_failure(port: str, exc: Exception) -> str:
    text = str(exc)
    if not os.path.exists(port):
        return (f"Serial port {port} does not exist. Plug in the servo adapter, then run `lerobot-vla find-port` "
                "to see which port it is.")
    if "Permission denied" in text or getattr(exc, "errno", None) == errno.EACCES:
        return (f"No permission to open {port}. Add yourself to the group owning it (`sudo usermod -aG dialout "
                f"$USER`, then log in again) or run `sudo chmod 666 {port}` for this session.")
    if "busy" in text.lower() or "lock" in text.lower():
        return f"{port} is in use by another program (another LeRobot process, a serial monitor?). Close it first."
    return f"Could not open {port}: {text}"
