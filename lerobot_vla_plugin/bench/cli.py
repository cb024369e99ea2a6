"""`lerobot-vla bench <what>`: one module per benchmark, each exposing `configure_parser` and `run`."""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS: dict[str, tuple[str, str]] = {
    "bus": ("lerobot_vla_plugin.bench.bus", "servo bus: sync read/write and control tick vs LeRobot's buses"),
}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    subparsers = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    subparsers.required = True
    for name, (module_name, help_text) in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        module.configure_parser(sub)
        sub.set_defaults(_bench_run=module.run)


def run(args: argparse.Namespace) -> int:
    return int(args._bench_run(args) or 0)
