"""`lerobot-vla bench record`: achieved control rate and camera fps while recording from the virtual SO-101.

Three loops, each in its own process, against the same virtual arm (wall clock, scripted leader) hosted by the
benchmark process, with 1 and 2 cameras:

- bare: only `robot.get_observation()` (servo positions + camera frames), paced at the target fps;
- ours: `lerobot-vla record` (teleop → robot → crash-safe writer, video encoded off the loop);
- stock: `lerobot-record` with our registered arms and cameras.

All three are measured the same way, by a probe on our camera class inside the measured process: every
`read_latest` call is one loop iteration, and a camera delivered a new frame when the returned object changed.
Nothing in the loops themselves is altered. The hosted arm restarts its demonstration whenever it ends, so the
scene keeps moving for the whole run.
"""

from __future__ import annotations

import argparse
import atexit
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROBE_ENV = "LEROBOT_VLA_BENCH_PROBE"


# -- probe (runs inside the measured process) -----------------------------------------------------------------------

def install_probe(path: str) -> None:
    """Record (time, frame identity) of every `VirtualCamera.read_latest` call; written to `path` at exit."""
    from lerobot_vla_plugin.cameras.virtual_camera import VirtualCamera

    calls: dict[str, list[tuple[float, int]]] = {}
    keep: dict[str, object] = {}  # the last frame per camera stays alive, so a new one cannot reuse its id
    original = VirtualCamera.read_latest

    def read_latest(self, *args, **kwargs):
        frame = original(self, *args, **kwargs)
        calls.setdefault(self.camera, []).append((time.perf_counter(), id(frame)))
        keep[self.camera] = frame
        return frame

    VirtualCamera.read_latest = read_latest

    def write() -> None:
        Path(path).write_text(json.dumps({camera: samples for camera, samples in calls.items()}))

    atexit.register(write)


def summarize_probe(path: Path) -> dict:
    """Loop Hz and per-camera fps over the span of the loop (first to last camera read)."""
    calls = json.loads(path.read_text())
    if not calls:
        raise RuntimeError(f"the measured process read no camera frame ({path} is empty)")
    result = {"cameras": {}}
    for camera, samples in calls.items():
        times = [t for t, _ in samples]
        ids = [i for _, i in samples]
        span = times[-1] - times[0]
        distinct = 1 + sum(1 for a, b in itertools.pairwise(ids) if a != b)
        result["cameras"][camera] = distinct / span if span > 0 else 0.0
        result.setdefault("loop_hz", (len(samples) - 1) / span if span > 0 else 0.0)
        result.setdefault("iterations", len(samples))
    return result


def _bare_loop(config: dict) -> None:
    """Connect the follower with its cameras and only read observations, paced like the recorders."""
    from lerobot_vla_plugin.cameras.config_virtual_camera import VirtualCameraConfig
    from lerobot_vla_plugin.robots.so_follower.config_so_follower import (
        VlaSO101FollowerConfig,
    )
    from lerobot_vla_plugin.robots.so_follower.so_follower import VlaSO101Follower

    cameras = {name: VirtualCameraConfig(**camera) for name, camera in config["cameras"].items()}
    robot = VlaSO101Follower(VlaSO101FollowerConfig(port=config["port"], id=config["id"], cameras=cameras))
    robot.connect()
    try:
        period = 1.0 / config["fps"]
        end = time.perf_counter() + config["duration_s"]
        deadline = time.perf_counter()
        while time.perf_counter() < end:
            robot.get_observation()
            deadline = max(deadline + period, time.perf_counter() - period)
            remaining = deadline - time.perf_counter()
            if remaining > 0:
                time.sleep(remaining)
    finally:
        robot.disconnect()


def _probe_main(argv: list[str]) -> int:
    """`python -m lerobot_vla_plugin.bench.record <probe.json> bare|ours|stock ARGS...`"""
    probe_path, which, *rest = argv
    install_probe(probe_path)
    if which == "bare":
        _bare_loop(json.loads(rest[0]))
        return 0
    if which == "ours":
        from lerobot_vla_plugin.cli import main

        return main(["record", *rest])
    if which == "stock":
        from lerobot.scripts.lerobot_record import main as stock_main

        sys.argv = ["lerobot-record", *rest]
        stock_main()
        return 0
    raise SystemExit(f"unknown loop {which!r}")


# -- benchmark (the hosting process) --------------------------------------------------------------------------------

def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of recording per run (default 60)")
    parser.add_argument("--fps", type=int, default=30, help="target rate of every loop (default 30)")
    parser.add_argument("--cameras", default="1,2", help="camera counts to measure (default 1,2)")
    parser.add_argument("--width", type=int, default=160, help="camera width (default 160)")
    parser.add_argument("--height", type=int, default=120, help="camera height (default 120)")
    parser.add_argument("--loops", default="bare,ours,stock", help="which loops to run (default all three)")
    parser.add_argument("--vcodec", default="libsvtav1", help="video codec of both recorders (default libsvtav1)")


def _keep_demonstrating(virtual, stop: threading.Event) -> None:
    """Physics kept up to date between runs (else the first request after an idle spell simulates up to 2 s and
    misses the servo timeout), and a new demonstration whenever one ends."""
    seed = 100
    while not stop.wait(0.02):
        virtual.arm.advance_to(virtual.arm.clock())
        if virtual.demonstration_done:
            seed += 1
            virtual.new_episode("red" if seed % 2 else "blue", seed=seed)


def _run_loop(which: str, args_for_loop: list[str], work: Path, env: dict, timeout_s: float,
              connect_attempts: int = 3) -> dict:
    """Run one measured loop; a run whose servo handshake timed out (a busy shared machine delays the hosted
    emulator's replies past the real-servo timeout) is started again, since nothing was measured yet."""
    for attempt in range(1, connect_attempts + 1):
        probe = work / f"probe-{which}-{time.monotonic_ns()}.json"
        command = [sys.executable, "-m", "lerobot_vla_plugin.bench.record", str(probe), which, *args_for_loop]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
        output = done.stdout + done.stderr
        if done.returncode == 0 and probe.exists():
            return summarize_probe(probe)
        if "motor check failed" in output and attempt < connect_attempts:
            print(f"  {which}: servo handshake timed out while connecting; starting the run again", flush=True)
            continue
        raise RuntimeError(f"{which} loop failed (exit {done.returncode}):\n{output[-2500:]}")
    raise AssertionError("unreachable")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from lerobot_vla_plugin.emulator.virtual_arm import VirtualSO101

    counts = [int(c) for c in args.cameras.split(",") if c.strip()]
    loops = [loop.strip() for loop in args.loops.split(",") if loop.strip()]
    camera_names = ["front", "wrist"]
    if any(not 1 <= c <= len(camera_names) for c in counts):
        print(f"error: --cameras must list counts between 1 and {len(camera_names)}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="lerobot-vla-bench-record-"))
    calibration = work / "calibration"
    env = {**os.environ, "HF_LEROBOT_CALIBRATION": str(calibration), "HF_LEROBOT_HOME": str(work / "home"),
           "HF_HUB_OFFLINE": "1", "MUJOCO_GL": os.environ["MUJOCO_GL"]}
    results: dict[tuple[int, str], dict] = {}
    stop = threading.Event()
    with VirtualSO101(lockstep=False, control_hz=args.fps, leader=True, seed=7,
                      camera_socket=str(work / "arm.sock")) as virtual:
        virtual.new_episode("red", seed=100)
        virtual.write_calibration_file(calibration / "robots" / "vla_so101_follower" / "bench_follower.json")
        virtual.write_calibration_file(calibration / "teleoperators" / "vla_so101_leader" / "bench_leader.json",
                                       "leader")
        keeper = threading.Thread(target=_keep_demonstrating, args=(virtual, stop), daemon=True)
        keeper.start()
        try:
            for count in counts:
                cameras = {name: {"camera": name, "socket_path": virtual.camera_socket, "width": args.width,
                                  "height": args.height, "fps": args.fps} for name in camera_names[:count]}
                camera_arg = "{" + ", ".join(
                    (f"{name}: {{type: vla_sim_camera, camera: {c['camera']}, socket_path: {c['socket_path']}, "
                     f"width: {c['width']}, height: {c['height']}, fps: {c['fps']}}}") for name, c in cameras.items()
                ) + "}"
                robot = ["--robot.type=vla_so101_follower", f"--robot.port={virtual.follower_port}",
                         "--robot.id=bench_follower", f"--robot.cameras={camera_arg}"]
                teleop = ["--teleop.type=vla_so101_leader", f"--teleop.port={virtual.leader_port}",
                          "--teleop.id=bench_leader"]
                dataset = ["--dataset.single_task=put the red cube in the bowl", "--dataset.num_episodes=1",
                           f"--dataset.episode_time_s={args.duration}", "--dataset.reset_time_s=0",
                           f"--dataset.fps={args.fps}", f"--dataset.vcodec={args.vcodec}"]
                timeout_s = args.duration + 300
                for loop in loops:
                    root = work / f"{loop}-{count}cam"
                    if loop == "bare":
                        spec = {"port": virtual.follower_port, "id": "bench_follower", "cameras": cameras,
                                "fps": args.fps, "duration_s": args.duration}
                        loop_args = [json.dumps(spec)]
                    elif loop == "ours":
                        loop_args = [*robot, *teleop, *dataset, "--dataset.repo_id=local/bench_ours",
                                     f"--dataset.root={root}", "--report=false", "--keyboard=none"]
                    elif loop == "stock":
                        loop_args = [*robot, *teleop, *dataset, "--dataset.repo_id=local/bench_stock",
                                     f"--dataset.root={root}", "--dataset.push_to_hub=false",
                                     "--display_data=false", "--play_sounds=false"]
                    else:
                        print(f"error: unknown loop {loop!r}; choose among bare, ours, stock", file=sys.stderr)
                        return 2
                    print(f"measuring {loop} with {count} camera(s) for {args.duration:g} s ...", flush=True)
                    results[(count, loop)] = _run_loop(loop, loop_args, work, env, timeout_s)
        finally:
            stop.set()
            keeper.join(timeout=5)
            shutil.rmtree(work, ignore_errors=True)
    print(format_table(results, args))
    return 0


def format_table(results: dict[tuple[int, str], dict], args: argparse.Namespace) -> str:
    lines = [(f"\nRecording from the virtual SO-101 (wall clock), target {args.fps} fps, "
              f"{args.width}x{args.height} cameras, {args.duration:g} s per run"),
             f"{'cameras':>7}  {'loop':<6} {'loop Hz':>8} {'% of bare':>9}  camera fps"]
    for (count, loop), result in sorted(results.items(), key=lambda item: (item[0][0], "bos".index(item[0][1][0]))):
        bare = results.get((count, "bare"))
        ratio = f"{100 * result['loop_hz'] / bare['loop_hz']:8.1f}%" if bare and bare["loop_hz"] else f"{'-':>9}"
        cameras = ", ".join(f"{name} {fps:.1f}" for name, fps in result["cameras"].items())
        lines.append(f"{count:>7}  {loop:<6} {result['loop_hz']:8.2f} {ratio}  {cameras}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(_probe_main(sys.argv[1:]))
