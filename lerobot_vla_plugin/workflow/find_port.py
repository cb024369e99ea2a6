"""`lerobot-vla find-port`: which serial adapter is which, with stable paths and known pitfalls.

LeRobot's `lerobot-find-port` diffs the port list before and after unplugging. This lists every port with its
stable /dev/serial/by-id path (ttyACM/ttyUSB numbers change on replug), USB VID:PID and what that adapter
usually is, and warns when `brltty` is running: it grabs CH340/CH34x adapters, so the port appears then
vanishes. `--unplug` also runs LeRobot's unplug-and-diff procedure.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

BY_ID_DIR = Path("/dev/serial/by-id")

# (vid, pid) -> what it usually is on these arms
KNOWN_ADAPTERS: dict[tuple[int, int], str] = {
    (0x1A86, 0x55D3): "CH343 - Waveshare/Feetech bus servo board (SO-100/SO-101)",
    (0x1A86, 0x7523): "CH340 - Feetech/Waveshare USB bus servo adapter",
    (0x1A86, 0x55D4): "CH9102 - bus servo board",
    (0x0403, 0x6014): "FTDI FT232H - ROBOTIS U2D2 (Dynamixel)",
    (0x0403, 0x6001): "FTDI FT232R - USB serial adapter",
    (0x16D0, 0x117E): "OpenRB-150 (ROBOTIS)",
}
_CH34X_VID = 0x1A86


@dataclass(frozen=True)
class SerialPort:
    device: str
    by_id: str | None
    vid: int | None
    pid: int | None
    description: str
    serial_number: str | None

    @property
    def adapter(self) -> str:
        if self.vid is None or self.pid is None:
            return "no USB ids (not a USB adapter)"
        return KNOWN_ADAPTERS.get((self.vid, self.pid), "unknown adapter")

    @property
    def usb_id(self) -> str:
        return "-" if self.vid is None or self.pid is None else f"{self.vid:04x}:{self.pid:04x}"


def by_id_links(by_id_dir: Path = BY_ID_DIR) -> dict[str, str]:
    """Map resolved device path -> stable /dev/serial/by-id link."""
    if not by_id_dir.is_dir():
        return {}
    return {os.path.realpath(link): str(link) for link in sorted(by_id_dir.iterdir())}


def describe_ports(port_infos, by_id_dir: Path = BY_ID_DIR) -> list[SerialPort]:
    """`port_infos` are pyserial ListPortInfo objects (from `serial.tools.list_ports.comports()`)."""
    links = by_id_links(by_id_dir)
    ports = []
    for info in port_infos:
        ports.append(SerialPort(device=info.device, by_id=links.get(os.path.realpath(info.device)), vid=info.vid,
                                pid=info.pid, description=info.description or "", serial_number=info.serial_number))
    return sorted(ports, key=lambda p: p.device)


def brltty_running(proc_root: Path = Path("/proc")) -> bool:
    for comm in proc_root.glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "brltty":
                return True
        except OSError:
            continue
    return False


def brltty_warning(ports: list[SerialPort], proc_root: Path = Path("/proc")) -> str | None:
    """A warning when brltty runs: it claims CH34x adapters and makes their port disappear."""
    if not brltty_running(proc_root):
        return None
    ch34x = [p.device for p in ports if p.vid == _CH34X_VID]
    which = f" (it can claim {', '.join(ch34x)})" if ch34x else " (it claims CH340/CH34x servo adapters on plug-in)"
    return ("warning: the brltty braille daemon is running" + which + ". Fix: `sudo apt remove brltty` (or "
            "`sudo systemctl mask brltty-udev.service brltty.service`), then replug the adapter.")


def format_ports(ports: list[SerialPort]) -> str:
    if not ports:
        return ("No serial ports found. Check the USB cable (some are charge-only) and that the adapter's board has "
                "power; `lsusb` shows whether the adapter enumerates at all.")
    lines = []
    for p in ports:
        access = "" if os.access(p.device, os.R_OK | os.W_OK) else (
            "  [no read/write permission: `sudo usermod -aG dialout $USER`, then log out and in]")
        lines.append(f"{p.device}  usb {p.usb_id}  {p.adapter}{access}")
        lines.append(f"    stable path: {p.by_id or '(none: not a USB serial device, or udev has no by-id link)'}")
        if p.description and p.description != "n/a":
            lines.append(f"    description: {p.description}" + (f", serial {p.serial_number}" if p.serial_number else ""))
    lines.append("Use the stable path as --robot.port / --teleop.port: it survives replugging and reboots.")
    return "\n".join(lines)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--unplug", action="store_true",
                        help="also find one adapter by unplugging it (LeRobot's procedure)")


def run(args: argparse.Namespace) -> int:
    from serial.tools import list_ports

    ports = describe_ports(list_ports.comports())
    print(format_ports(ports))
    warning = brltty_warning(ports)
    if warning:
        print(warning)
    if args.unplug:
        before = {p.device for p in ports}
        input("Unplug the USB cable of the arm you want to identify, then press ENTER.")
        after = {p.device for p in describe_ports(list_ports.comports())}
        gone = sorted(before - after)
        if len(gone) != 1:
            print(f"Could not tell: {len(gone)} ports disappeared ({', '.join(gone) or 'none'}). Try again.")
            return 1
        port = next(p for p in ports if p.device == gone[0])
        print(f"That arm's port is {port.by_id or port.device} ({port.device}). Plug it back in.")
    return 0
