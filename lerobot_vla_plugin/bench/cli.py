"""`lerobot-vla bench <what>`: one module per benchmark, each exposing `configure_parser` and `run`."""

from __future__ import annotations

import argparse

BENCHMARKS: dict[str, tuple[str, str]] = {
    "bus": ("lerobot_vla_plugin.bench.bus", "servo bus: sync read/write and control tick vs LeRobot's buses"),
    "teleop": ("lerobot_vla_plugin.bench.teleop", "leader->follower loop rate: our arms vs LeRobot's SO-101"),
    "startup": ("lerobot_vla_plugin.bench.startup", "import cost our plugin adds to every lerobot-* command"),
    "policy": ("lerobot_vla_plugin.bench.policy", "flow_vla vs LeRobot ACT/SmolVLA: params, GFLOP, CPU latency, training speed"),
    "record": ("lerobot_vla_plugin.bench.record", "recording rate and camera fps: bare loop vs lerobot-vla record vs lerobot-record"),
    "sim-success": ("lerobot_vla_plugin.bench.sim_success",
                    "task success on the virtual SO-101: flow_vla (1/2/4/10 flow steps, data scaling) vs ACT"),
    "multiply": ("lerobot_vla_plugin.bench.multiply",
                 "is multiplied data worth recorded data? flow_vla on 10 recorded vs 10 + 90 generated vs 100 recorded"),
    "rollout": ("lerobot_vla_plugin.bench.rollout",
                "policy on the virtual SO-101: async RTC/blend/naive vs stock sync; Hz, stalls, latency, jerk, success"),
    "vision-probe": ("lerobot_vla_plugin.bench.vision_probe",
                     "does a flow_vla encoder locate the objects? linear probe of its keypoints vs guessing"),
}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from lerobot_vla_plugin.cli import add_lazy_subcommands

    add_lazy_subcommands(parser, BENCHMARKS, getattr(parser, "remaining_argv", []), "benchmark")


def run(args: argparse.Namespace) -> int:
    return int(args._run_benchmark(args) or 0)
