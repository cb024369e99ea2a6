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
    physics = parser.add_argument_group("virtual SO-101 (MuJoCo physics; --arm so101 only)")
    physics.add_argument("--physics", action="store_true",
                         help="back the servos with a simulated arm on a table with cubes and a bowl, and serve "
                              "its cameras on a unix socket (camera type vla_sim_camera)")
    physics.add_argument("--leader", action="store_true",
                         help="also serve a leader arm moved by a scripted operator doing the pick-and-place")
    physics.add_argument("--lockstep", action="store_true",
                         help="simulated time advances one control period per follower Present_Position sync "
                              "read instead of following the wall clock (correct data on a slow machine)")
    physics.add_argument("--control-hz", type=float, default=30.0,
                         help="control rate of one lockstep tick (default 30, match lerobot-record's --dataset.fps)")
    physics.add_argument("--task", choices=["red", "blue"], default="red", help="which cube goes in the bowl")
    physics.add_argument("--episode-seed", type=int, default=0, help="seed of the scene layouts and demonstrations")
    physics.add_argument("--camera-socket", help="unix socket path for the cameras (default: printed)")
    physics.add_argument("--follower-calibration", metavar="JSON",
                         help="write the follower's LeRobot calibration file here (e.g. "
                              "~/.cache/huggingface/lerobot/calibration/robots/<robot name>/<id>.json)")
    physics.add_argument("--leader-calibration", metavar="JSON",
                         help="write the leader's calibration file here (e.g. ~/.cache/huggingface/lerobot/"
                              "calibration/teleoperators/vla_so101_leader/<id>.json, <id> being --teleop.id)")
    physics.add_argument("--info-file", help="write ports and socket path as JSON to this file (for scripts)")


def run(args: argparse.Namespace) -> int:
    from .arms import arm_protocol
    from .bus import EmulatedBus, LinkFaults
    from .link import TimingModel

    protocol = arm_protocol(args.arm)
    if args.protocol and args.protocol != protocol:
        print(f"error: arm {args.arm!r} uses the {protocol} protocol, not {args.protocol}", file=sys.stderr)
        return 2
    if args.physics:
        return _run_physics(args)
    if args.leader or args.lockstep:
        print("error: --leader and --lockstep need --physics (the scripted leader and lockstep time come from "
              "the simulated arm)", file=sys.stderr)
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


def _run_physics(args: argparse.Namespace) -> int:
    """The virtual SO-101: follower (+ scripted leader) ptys and the camera socket, until stopped."""
    import json

    if args.arm != "so101":
        print(f"error: --physics simulates an SO-101; use --arm so101 (got {args.arm!r})", file=sys.stderr)
        return 2
    from .bus import LinkFaults
    from .link import TimingModel
    from .virtual_arm import VirtualSO101

    timing = TimingModel(enabled=args.timing, usb_latency_s=args.usb_latency_ms / 1000.0)
    faults = LinkFaults(drop_rate=args.drop_rate, corrupt_rate=args.corrupt_rate, seed=args.seed)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    virtual = VirtualSO101(lockstep=args.lockstep, control_hz=args.control_hz, leader=args.leader, task=args.task,
                           seed=args.episode_seed, camera_socket=args.camera_socket or True, timing=timing,
                           faults=faults)
    with virtual:
        virtual.new_episode()
        if args.follower_calibration:
            virtual.write_calibration_file(args.follower_calibration, "follower")
        if args.leader_calibration and args.leader:
            virtual.write_calibration_file(args.leader_calibration, "leader")
        if args.port_file:
            with open(args.port_file, "w") as f:
                f.write(virtual.follower_port)
        info = {"follower_port": virtual.follower_port, "leader_port": virtual.leader_port,
                "camera_socket": virtual.camera_socket, "lockstep": virtual.lockstep,
                "control_period_s": virtual.control_period_s, "cameras": list(virtual.frames.cameras)}
        if args.info_file:
            with open(args.info_file, "w") as f:
                json.dump(info, f)
        print(virtual.follower_port, flush=True)  # first line: the follower port, as without --physics
        print(f"leader_port={virtual.leader_port or ''}", flush=True)
        print(f"camera_socket={virtual.camera_socket}", flush=True)
        clock = f"lockstep at {args.control_hz:g} Hz (one tick per follower position read)" if args.lockstep \
            else "wall clock"
        print(f"virtual SO-101, task {virtual.task!r}, {clock}; cameras {', '.join(info['cameras'])}. "
              "Servos are calibrated (use --follower-calibration/--leader-calibration to write the matching "
              "LeRobot files). Camera example: "
              f"--robot.cameras='{{front: {{type: vla_sim_camera, camera: front, socket_path: "
              f"{virtual.camera_socket}, width: 640, height: 480, fps: 30}}}}'. Ctrl-C to stop.",
              file=sys.stderr, flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0
