"""`lerobot-vla emulate`: serve a virtual arm's servo bus on a pty until stopped (Ctrl-C or SIGTERM)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from .arms import ARMS

    parser.add_argument("--arm", choices=sorted(ARMS), default="so101", help="servo chain to emulate (default so101)")
    parser.add_argument("--protocol", choices=["feetech", "dynamixel"],
                        help="optional check: fail if the arm does not use this protocol")
    parser.add_argument("--timing", action="store_true",
                        help="model wire time at the servos' baud rate and the USB adapter latency")
    parser.add_argument("--usb-latency-ms", type=float, default=1.0, help="USB adapter latency per reply (default 1)")
    parser.add_argument("--drop-rate", type=float, default=0.0, help="probability of dropping a status packet")
    parser.add_argument("--corrupt-rate", type=float, default=0.0, help="probability of flipping a bit in a reply")
    parser.add_argument("--seed", type=int, default=0, help="seed for fault injection")
    parser.add_argument("--port-file", help="also write the pty path to this file (for scripts)")


def run(args: argparse.Namespace) -> int:
    from .arms import arm_protocol
    from .bus import EmulatedBus, LinkFaults
    from .link import TimingModel

    protocol = arm_protocol(args.arm)
    if args.protocol and args.protocol != protocol:
        print(f"error: arm {args.arm!r} uses the {protocol} protocol, not {args.protocol}", file=sys.stderr)
        return 2
    timing = TimingModel(enabled=args.timing, usb_latency_s=args.usb_latency_ms / 1000.0)
    faults = LinkFaults(drop_rate=args.drop_rate, corrupt_rate=args.corrupt_rate, seed=args.seed)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with EmulatedBus.for_arm(args.arm, timing=timing, faults=faults) as bus:
        if args.port_file:
            with open(args.port_file, "w") as f:
                f.write(bus.port)
        ids = ", ".join(f"{s.id}:{s.spec.name}" for s in bus.servos)
        print(bus.port, flush=True)
        print(f"{args.arm} ({protocol}) servos {ids} at 1 Mbps; timing model {'on' if args.timing else 'off'}. "
              "Ctrl-C to stop.", file=sys.stderr, flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0
