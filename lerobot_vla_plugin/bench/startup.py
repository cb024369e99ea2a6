"""`lerobot-vla bench startup`: what importing our registration package adds to every `lerobot-*` command.

LeRobot imports it from `register_third_party_plugins()` after its own modules are loaded, so the cost that
matters is the import measured in a fresh interpreter that already imported `lerobot-record`'s module.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

_PROBE = """
import time
import lerobot.scripts.lerobot_record  # what lerobot-record has loaded before plugin discovery
start = time.perf_counter()
import lerobot_robot_vla_plugin
elapsed = time.perf_counter() - start
import sys
heavy = [m for m in ("mujoco", "lerobot_vla_plugin.policies.flow_vla.modeling_flow_vla") if m in sys.modules]
print(elapsed, ",".join(heavy))
"""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters to measure (default 5)")


def measure(runs: int) -> tuple[list[float], set[str]]:
    times, heavy = [], set()
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True).stdout
        elapsed, loaded = out.strip().split(" ", 1) if " " in out.strip() else (out.strip(), "")
        times.append(float(elapsed))
        heavy.update(filter(None, loaded.split(",")))
    return times, heavy


def run(args: argparse.Namespace) -> int:
    times, heavy = measure(args.runs)
    print(f"import lerobot_robot_vla_plugin after lerobot-record's modules: median {statistics.median(times) * 1000:.0f} ms, "
          f"max {max(times) * 1000:.0f} ms over {len(times)} fresh interpreters (budget 300 ms)")
    print(f"heavy modules pulled in: {', '.join(sorted(heavy)) or 'none'}")
    return 0
