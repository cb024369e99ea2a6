"""`lerobot-vla bench bus`: our buses vs LeRobot's on the same emulated servos, timing model off and on.

The emulator runs in its own process (as a real bus would be outside the host's interpreter), so its work does
not compete with the measured code for the GIL. Per configuration it measures, for 6 motors:

- bare: a pyserial write of the sync-read packet and a read of the expected reply bytes (the pty floor);
- sync_read(Present_Position) and sync_write(Goal_Position), both normalised (a write counts as done when the
  driver has handed its bytes to the device: LeRobot's SDK flushes before each send, ours is timed with a drain);
- a control tick: goals written with a per-step clamp, positions read back. LeRobot's SO follower does
  sync_read (for the clamp) + sync_write + sync_read; ours clamps against the last observation and sends write +
  read in one transfer.
and the wire-limited rate from packet sizes at the bus baud rate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
CONFIGS = {"feetech": "so101", "dynamixel": "koch-follower"}
MAX_STEP_DEG = 5.0


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", choices=["feetech", "dynamixel", "both"], default="both")
    parser.add_argument("--iterations", type=int, default=2000, help="per measurement, timing model off")
    parser.add_argument("--iterations-timed", type=int, default=300, help="per measurement, timing model on")
    parser.add_argument("--usb-latency-ms", type=float, default=1.0)


@contextmanager
def emulator_process(arm: str, timing: bool, usb_latency_ms: float):
    with tempfile.TemporaryDirectory() as tmp:
        port_file = os.path.join(tmp, "port")
        cmd = [sys.executable, "-m", "lerobot_vla_plugin.emulator", "--arm", arm, "--port-file", port_file,
               "--usb-latency-ms", str(usb_latency_ms)] + (["--timing"] if timing else [])
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 30
            while not os.path.exists(port_file) or not open(port_file).read():
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"emulator for {arm} did not start")
                time.sleep(0.05)
            yield open(port_file).read()
        finally:
            proc.terminate()
            proc.wait(timeout=5)


def _motors(protocol: str):
    from lerobot.motors.motors_bus import Motor, MotorCalibration, MotorNormMode

    models = ["sts3215"] * 6 if protocol == "feetech" else ["xl430-w250"] * 2 + ["xl330-m288"] * 4
    motors = {j: Motor(i + 1, models[i], MotorNormMode.RANGE_0_100 if j == "gripper" else MotorNormMode.DEGREES)
              for i, j in enumerate(JOINTS)}
    calibration = {j: MotorCalibration(i + 1, 0, 0, 500, 3500) for i, j in enumerate(JOINTS)}
    return motors, calibration


def _time(fn, iterations: int) -> tuple[list[float], int]:
    """Per-call durations, and how many calls raised a communication error (timed like any other call)."""
    warmup = min(50, iterations)
    failures = 0
    samples = []
    clock = time.perf_counter
    for i in range(warmup + iterations):
        start = clock()
        try:
            fn()
        except ConnectionError:
            failures += i >= warmup
        if i >= warmup:
            samples.append(clock() - start)
    return samples, failures


def _stats(measured: tuple[list[float], int]) -> dict:
    samples, failures = measured
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {"per_s": 1.0 / statistics.fmean(ordered), "p50_us": p50 * 1e6, "p99_us": p99 * 1e6,
            "failures": failures}


def _packet_sizes(protocol: str) -> tuple[int, int, int]:
    """(sync_read request, its 6 replies, sync_write) bytes for Present/Goal_Position on 6 servos."""
    if protocol == "feetech":
        from lerobot_vla_plugin.motors.feetech import protocol as p

        ids = list(range(1, 7))
        request = p.sync_read(56, 2, ids)
        replies = b"".join(p.status(i, 0, b"\x00\x08") for i in ids)
        write = p.sync_write(42, 2, {i: b"\x00\x08" for i in ids})
    else:
        from lerobot_vla_plugin.motors.dynamixel import protocol as p

        ids = list(range(1, 7))
        request = p.sync_read(132, 4, ids)
        replies = b"".join(p.status(i, 0, b"\x00\x08\x00\x00") for i in ids)
        write = p.sync_write(116, 4, {i: b"\x00\x08\x00\x00" for i in ids})
    return len(request), len(replies), len(write)


def _let_wire_drain(protocol: str, writes: int) -> None:
    """Writes carry no reply, so a burst of them leaves the emulated wire busy: wait until it is idle again."""
    time.sleep(writes * _packet_sizes(protocol)[2] * 10e-6 + 0.2)


def _bare(port: str, protocol: str, iterations: int) -> dict:
    import serial

    if protocol == "feetech":
        from lerobot_vla_plugin.motors.feetech import protocol as p

        request, reply_len = p.sync_read(56, 2, list(range(1, 7))), 6 * 8
    else:
        from lerobot_vla_plugin.motors.dynamixel import protocol as p

        request, reply_len = p.sync_read(132, 4, list(range(1, 7))), 6 * 15
    ser = serial.Serial(port, 1_000_000, timeout=1.0)
    try:
        def round_trip():
            ser.write(request)
            if len(ser.read(reply_len)) != reply_len:
                raise ConnectionError("bare round trip timed out")
        return _stats(_time(round_trip, iterations))
    finally:
        ser.close()


def _ours(port: str, protocol: str, iterations: int, **options) -> dict[str, dict]:
    motors, calibration = _motors(protocol)
    if protocol == "feetech":
        from lerobot_vla_plugin.motors.feetech.bus import FeetechBus as Bus
    else:
        from lerobot_vla_plugin.motors.dynamixel.bus import DynamixelBus as Bus
    bus = Bus(port, motors, calibration, **options)
    bus.connect()
    try:
        bus.configure_motors()  # as a robot does at connect: Return_Delay_Time = 0
        present = bus.sync_read("Present_Position")
        goals = dict(present)

        def write_and_drain():
            bus.sync_write("Goal_Position", goals)
            bus.link.drain()

        results = {"sync_read": _stats(_time(lambda: bus.sync_read("Present_Position"), iterations)),
                   "sync_write": _stats(_time(write_and_drain, iterations))}
        _let_wire_drain(protocol, iterations)
        state = {"present": present, "phase": 0}

        def tick():
            state["phase"] += 1
            last = state["present"]
            target = {m: last[m] + (3.0 if state["phase"] % 2 else -3.0) for m in last}
            clamped = {m: min(last[m] + MAX_STEP_DEG, max(last[m] - MAX_STEP_DEG, v)) for m, v in target.items()}
            state["present"] = bus.sync_write_read("Goal_Position", clamped)

        results["tick"] = _stats(_time(tick, iterations))
        return results
    finally:
        bus.disconnect(disable_torque=False)


def _connect_as_a_user_would(bus, attempts: int = 3) -> None:
    """LeRobot's bus gives up on the first unanswered handshake packet. The emulator is a process on the same CPU,
    and on a loaded machine it can miss the SDK's reply window of a few tens of milliseconds once: try again, as a
    user re-running the command would, and say so. Only the connection is retried; every timed operation counts."""
    for attempt in range(1, attempts + 1):
        try:
            bus.connect()
            return
        except ConnectionError as error:
            if attempt == attempts:
                raise
            print(f"LeRobot's bus could not connect to the emulator (attempt {attempt} of {attempts}: "
                  f"{str(error).strip().splitlines()[0]}); the machine may be busy, trying again")


def _lerobot(port: str, protocol: str, iterations: int) -> dict[str, dict]:
    from lerobot.robots.utils import ensure_safe_goal_position

    motors, calibration = _motors(protocol)
    if protocol == "feetech":
        from lerobot.motors.feetech import FeetechMotorsBus as Bus
    else:
        from lerobot.motors.dynamixel import DynamixelMotorsBus as Bus
    bus = Bus(port, motors, calibration)
    _connect_as_a_user_would(bus)
    try:
        bus.configure_motors()
        present = bus.sync_read("Present_Position")
        goals = dict(present)
        results = {"sync_read": _stats(_time(lambda: bus.sync_read("Present_Position"), iterations)),
                   "sync_write": _stats(_time(lambda: bus.sync_write("Goal_Position", goals), iterations))}
        _let_wire_drain(protocol, iterations)
        phase = [0]

        def tick():  # what LeRobot's SO follower does per step: send_action (clamped) + get_observation
            phase[0] += 1
            current = bus.sync_read("Present_Position")
            target = {m: current[m] + (3.0 if phase[0] % 2 else -3.0) for m in current}
            goal_present = {m: (target[m], current[m]) for m in current}
            safe = ensure_safe_goal_position(goal_present, MAX_STEP_DEG)
            bus.sync_write("Goal_Position", safe)
            bus.sync_read("Present_Position")

        results["tick"] = _stats(_time(tick, iterations))
        return results
    finally:
        bus.disconnect(disable_torque=False)


def measure(protocol: str, timing: bool, iterations: int, usb_latency_ms: float) -> dict:
    with emulator_process(CONFIGS[protocol], timing, usb_latency_ms) as port:
        ours = _ours(port, protocol, iterations)  # also configures the servos (Return_Delay_Time = 0) for all
        result = {"ours": ours, "bare": _bare(port, protocol, iterations),
                  "lerobot": _lerobot(port, protocol, iterations)}
        # The bare round trip is a classic sync read, so the Python overhead is compared on that instruction;
        # our Dynamixel default is Fast Sync Read (one combined reply) when the firmware supports it.
        result["ours_classic"] = (_ours(port, protocol, iterations, fast_sync_read=False)
                                  if protocol == "dynamixel" else ours)
        return result


def run(args: argparse.Namespace) -> int:
    import logging

    logging.disable(logging.WARNING)
    protocols = ["feetech", "dynamixel"] if args.protocol == "both" else [args.protocol]
    print(f"Servo bus benchmark: 6 motors, emulated at 1 Mbps; timing model = wire time + "
          f"{args.usb_latency_ms:g} ms USB latency per reply. Rates in transactions/s, latencies in µs.\n")
    header = f"{'protocol':<10} {'timing':<6} {'operation':<11} {'ours/s':>8} {'p50':>8} {'p99':>8} " \
             f"{'LeRobot/s':>9} {'p50':>8} {'p99':>8} {'speed-up':>8}"
    for protocol in protocols:
        request, replies, write = _packet_sizes(protocol)
        wire_read_us = (request + replies) * 10.0
        wire_tick_us = (request + replies + write) * 10.0
        for timing in (False, True):
            n = args.iterations_timed if timing else args.iterations
            r = measure(protocol, timing, n, args.usb_latency_ms)
            print(header)
            for op in ("sync_read", "sync_write", "tick"):
                o, l = r["ours"][op], r["lerobot"][op]
                print(f"{protocol:<10} {'on' if timing else 'off':<6} {op:<11} {o['per_s']:>8.0f} {o['p50_us']:>8.0f} "
                      f"{o['p99_us']:>8.0f} {l['per_s']:>9.0f} {l['p50_us']:>8.0f} {l['p99_us']:>8.0f} "
                      f"{o['per_s'] / l['per_s']:>7.2f}x"
                      + (f"  failed calls: ours {o['failures']}, LeRobot {l['failures']}"
                         if o["failures"] or l["failures"] else ""))
            bare = r["bare"]["p50_us"]
            ours_over = r["ours_classic"]["sync_read"]["p50_us"] - bare
            lerobot_over = r["lerobot"]["sync_read"]["p50_us"] - bare
            if protocol == "dynamixel":
                print(f"  (ours uses Fast Sync Read; with classic sync read: {r['ours_classic']['sync_read']['per_s']:.0f}/s, "
                      f"tick {r['ours_classic']['tick']['p50_us']:.0f} µs p50)")
            print(f"  bare pty sync_read round trip p50 {bare:.0f} µs; Python overhead above it: ours "
                  f"{ours_over:.0f} µs, LeRobot {lerobot_over:.0f} µs (ratio {ours_over / lerobot_over:.2f})")
            print(f"  tick p50 ours/LeRobot = {r['ours']['tick']['p50_us'] / r['lerobot']['tick']['p50_us']:.2f}")
            if timing:
                wire_rate = 1e6 / wire_read_us
                print(f"  wire limit: sync_read {request}+{replies} bytes = {wire_read_us:.0f} µs -> {wire_rate:.0f}/s "
                      f"(+USB latency: {1e6 / (wire_read_us + args.usb_latency_ms * 1000):.0f}/s); tick with write "
                      f"{wire_tick_us:.0f} µs. Ours reaches {r['ours']['sync_read']['per_s'] / wire_rate:.0%} of the "
                      f"wire-only rate, {r['ours']['sync_read']['per_s'] * (wire_read_us + args.usb_latency_ms * 1000) / 1e6:.0%} "
                      f"of wire + USB latency.")
            print()
    return 0
