"""`lerobot-vla emulate`: serve a virtual arm's servo bus on a pty until stopped (Ctrl-C or SIGTERM)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

DEFAULT_EPISODES_FILE = "outputs/virtual_so101/episodes.jsonl"
DEFAULT_EPISODE_PAUSE_S = 0.5

PHYSICS_HELP = """\
virtual SO-101 under stock lerobot-* commands (--physics): episodes, success, calibration

  Episodes: stock lerobot-record never tells the arm where an episode ends, but between two episodes it saves the
  last one and touches no servo meanwhile. A pause of --episode-pause-s (default 0.5 s) in the control traffic
  (Present_Position reads, Goal_Position writes) ends an episode: its outcome is printed and appended to
  --episodes-file, and the scene is reset to the next seed with a new scripted demonstration, which starts with
  the next control packet. The reset phase (--dataset.reset_time_s) belongs to the episode before it. A new
  lerobot-record run starts a new episode the same way. With tiny episodes saved in under 0.5 s (no cameras, no
  video) lower --episode-pause-s; it must stay above one control period and above the longest stall of the
  recording machine, or one episode splits in two.

  Success: one JSON line per episode (session, episode, task, instruction, scene_seed, success, failure_mode,
  time_to_success_s, simulated_s, wall_s, ticks, target_touched, target_lifted, other_touched), failure modes as in
  `lerobot-vla eval`. Evaluating a policy with stock `lerobot-record --policy.path=...`: use --scenes evaluation
  (scenes never used for recording) and --dataset.reset_time_s=0.

  Calibration: stock `lerobot-calibrate --robot.type=vla_so101_follower` (or --teleop.type=vla_so101_leader) on
  the virtual arm: press ENTER at the middle-of-range prompt (the arm is held there), and again once the emulator
  prints that every joint has been through its range. The file goes to
  $HF_LEROBOT_CALIBRATION/robots/vla_so101_follower/<--robot.id>.json (teleoperators/vla_so101_leader/<--teleop.id>.json
  for the leader; HF_LEROBOT_CALIBRATION defaults to ~/.cache/huggingface/lerobot/calibration). The virtual arm
  starts calibrated: --follower-calibration/--leader-calibration write its matching files to those paths instead.
"""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from .arms import ARMS

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = PHYSICS_HELP
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
    physics.add_argument("--episode-seed", type=int, default=0,
                         help="seed of the scene layouts and demonstrations: episode k uses scene seed k from here")
    physics.add_argument("--scenes", choices=["recording", "evaluation"], default="recording",
                         help="scene seed range (default recording; evaluation: scenes lerobot-vla record never "
                              "uses, for a policy run with stock lerobot-record --policy.path)")
    physics.add_argument("--episode-pause-s", type=float, default=DEFAULT_EPISODE_PAUSE_S,
                         help="a pause this long in the control traffic ends an episode and sets up the next scene "
                              f"(default {DEFAULT_EPISODE_PAUSE_S}; see below)")
    physics.add_argument("--episodes-file", default=DEFAULT_EPISODES_FILE,
                         help=f"append each episode's outcome here as a JSON line (default {DEFAULT_EPISODES_FILE})")
    physics.add_argument("--camera-socket", help="unix socket path for the cameras (default: printed)")
    physics.add_argument("--follower-calibration", metavar="JSON",
                         help="write the follower's LeRobot calibration file here (e.g. ~/.cache/huggingface/"
                              "lerobot/calibration/robots/vla_so101_follower/<id>.json, <id> being --robot.id)")
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
    from .episode_cycle import EpisodeCycle
    from .link import TimingModel
    from .virtual_arm import VirtualSO101

    timing = TimingModel(enabled=args.timing, usb_latency_s=args.usb_latency_ms / 1000.0)
    faults = LinkFaults(drop_rate=args.drop_rate, corrupt_rate=args.corrupt_rate, seed=args.seed)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    virtual = VirtualSO101(lockstep=args.lockstep, control_hz=args.control_hz, leader=args.leader, task=args.task,
                           seed=args.episode_seed, camera_socket=args.camera_socket or True, timing=timing,
                           faults=faults, say=say)
    try:
        episodes = EpisodeCycle(virtual, pause_s=args.episode_pause_s, seed=args.episode_seed, scenes=args.scenes,
                                results_path=args.episodes_file, say=say)
    except ValueError as exc:
        print(f"error: {exc}; raise --episode-pause-s", file=sys.stderr)
        return 2
    with virtual:
        episodes.start()
        if args.follower_calibration:
            virtual.write_calibration_file(args.follower_calibration, "follower")
        if args.leader_calibration and args.leader:
            virtual.write_calibration_file(args.leader_calibration, "leader")
        if args.port_file:
            with open(args.port_file, "w") as f:
                f.write(virtual.follower_port)
        info = {"follower_port": virtual.follower_port, "leader_port": virtual.leader_port,
                "camera_socket": virtual.camera_socket, "lockstep": virtual.lockstep,
                "control_period_s": virtual.control_period_s, "cameras": list(virtual.frames.cameras),
                "episodes_file": str(episodes.results_path)}
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
        say(f"episodes: a {args.episode_pause_s:g} s pause in control traffic ends one (lerobot-record saving "
            f"it) and sets up the next scene ({args.scenes} seeds from {args.episode_seed}); outcomes are appended "
            f"to {episodes.results_path}")
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            episodes.stop()
    return 0
