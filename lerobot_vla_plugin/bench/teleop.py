"""`lerobot-vla bench teleop`: an unthrottled leader->follower loop, our SO-101 arms vs LeRobot's, same emulators.

Two emulated SO-101 buses (follower and leader) run in their own processes with the timing model on (wire time
at 1 Mbps plus the USB adapter's latency per reply). Each contender runs the loop LeRobot's teleoperate runs,
without the sleep: `robot.get_observation()`, `teleop.get_action()`, `robot.send_action(action)`.

- ours: `vla_so101_follower` + `vla_so101_leader` with their defaults (per-step clamp and health checks on);
- LeRobot: `so101_follower` + `so101_leader` with their defaults (no clamp);
- LeRobot + clamp: the same with `max_relative_target=10.0`, i.e. the safety ours has by default.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from .bus import emulator_process

BENCH_ID = "bench"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--iterations", type=int, default=2000, help="measured loop iterations per contender")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--usb-latency-ms", type=float, default=1.0)
    parser.add_argument("--no-timing", action="store_true", help="emulators answer as fast as the pty allows")


def _calibration():
    from lerobot.motors.motors_bus import MotorCalibration

    from lerobot_vla_plugin.arms.definitions import JOINTS

    return {j: MotorCalibration(i + 1, 0, 0, 0 if j == "wrist_roll" else 1000, 4095 if j == "wrist_roll" else 3000)
            for i, j in enumerate(JOINTS)}


def _prepare(port: str, calibration) -> None:
    """Write the calibration into the emulated servos' EEPROM, so nobody is prompted to calibrate."""
    from lerobot_vla_plugin.arms.definitions import so_motors
    from lerobot_vla_plugin.motors.feetech.bus import FeetechBus

    bus = FeetechBus(port, so_motors())
    bus.connect()
    try:
        bus.disable_torque()
        bus.write_calibration(calibration)
    finally:
        bus.disconnect(disable_torque=True)


def _save(calibration, path: Path) -> None:
    import draccus

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f, draccus.config_type("json"):
        draccus.dump(calibration, f, indent=4)


def _contenders(follower_port: str, leader_port: str, root: Path, calibration):
    from lerobot.robots.so_follower.config_so_follower import SOFollowerRobotConfig
    from lerobot.robots.so_follower.so_follower import SOFollower
    from lerobot.teleoperators.so_leader.config_so_leader import SOLeaderTeleopConfig
    from lerobot.teleoperators.so_leader.so_leader import SOLeader

    from lerobot_vla_plugin.robots.so_follower.config_so_follower import VlaSO101FollowerConfig
    from lerobot_vla_plugin.robots.so_follower.so_follower import VlaSO101Follower
    from lerobot_vla_plugin.teleoperators.so_leader.config_so_leader import VlaSO101LeaderConfig
    from lerobot_vla_plugin.teleoperators.so_leader.so_leader import VlaSO101Leader

    for sub in ("ours/robot", "ours/teleop", "lerobot/robot", "lerobot/teleop"):
        _save(calibration, root / sub / f"{BENCH_ID}.json")

    def ours():
        return (VlaSO101Follower(VlaSO101FollowerConfig(port=follower_port, id=BENCH_ID,
                                                        calibration_dir=root / "ours/robot")),
                VlaSO101Leader(VlaSO101LeaderConfig(port=leader_port, id=BENCH_ID, calibration_dir=root / "ours/teleop")))

    def lerobot(max_relative_target=None):
        return (SOFollower(SOFollowerRobotConfig(port=follower_port, id=BENCH_ID, calibration_dir=root / "lerobot/robot",
                                                 max_relative_target=max_relative_target)),
                SOLeader(SOLeaderTeleopConfig(port=leader_port, id=BENCH_ID, calibration_dir=root / "lerobot/teleop")))

    return {"ours (clamp on)": ours, "LeRobot (default, no clamp)": lerobot,
            "LeRobot + clamp 10.0": lambda: lerobot(10.0)}


def measure(make, iterations: int, warmup: int) -> tuple[list[float], int]:
    """Loop periods, and how many iterations failed with a bus error (counted, not hidden: LeRobot's buses
    do not retry by default, so a late status packet aborts its teleoperate loop)."""
    robot, teleop = make()
    teleop.connect()
    robot.connect()
    try:
        periods, failures = [], 0
        clock = time.perf_counter
        last = clock()
        for i in range(warmup + iterations):
            try:
                robot.get_observation()
                action = teleop.get_action()
                robot.send_action(action)
            except ConnectionError:
                failures += 1
                last = clock()
                continue
            now = clock()
            if i >= warmup:
                periods.append(now - last)
            last = now
        return periods, failures
    finally:
        teleop.disconnect()
        robot.disconnect()
        time.sleep(0.5)  # let the emulated wires go idle before the next contender connects


def summarize(result: tuple[list[float], int]) -> dict:
    periods, failures = result
    ordered = sorted(periods)
    return {"hz": 1.0 / statistics.fmean(ordered), "p50_ms": statistics.median(ordered) * 1e3,
            "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3, "failures": failures}


def run(args: argparse.Namespace) -> int:
    import logging

    logging.disable(logging.WARNING)
    timing = not args.no_timing
    calibration = _calibration()
    with tempfile.TemporaryDirectory() as tmp, \
            emulator_process("so101", timing, args.usb_latency_ms) as follower_port, \
            emulator_process("so101-leader", timing, args.usb_latency_ms) as leader_port:
        _prepare(follower_port, calibration)
        _prepare(leader_port, calibration)
        results = {name: summarize(measure(make, args.iterations, args.warmup))
                   for name, make in _contenders(follower_port, leader_port, Path(tmp), calibration).items()}
    model = f"wire time at 1 Mbps + {args.usb_latency_ms:g} ms USB latency per reply" if timing else "timing model off"
    print(f"Teleop loop, SO-101 leader -> follower, unthrottled, {args.iterations} iterations; emulated buses with "
          f"{model}.")
    print(f"{'contender':<30} {'Hz':>8} {'p50 ms':>8} {'p99 ms':>8} {'bus errors':>10}")
    for name, r in results.items():
        print(f"{name:<30} {r['hz']:>8.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['failures']:>10}")
    ours = results["ours (clamp on)"]["hz"]
    for name in list(results)[1:]:
        print(f"ours / {name}: {ours / results[name]['hz']:.2f}x")
    return 0
