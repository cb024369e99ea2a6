"""`lerobot-vla`: what stock LeRobot cannot do for a plugin (emulator, benchmarks, motor setup, ...).

Every subcommand lives in its own module exposing `configure_parser(parser)` and `run(args) -> int`.
Those modules must stay light at import time (heavy imports go inside `run`), because building the
parser imports all of them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Order is the order shown by `lerobot-vla --help`.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "emulate": ("lerobot_vla_plugin.emulator.cli", "serve a virtual servo bus on a pseudo-terminal"),
    "bench": ("lerobot_vla_plugin.bench.cli", "benchmarks side by side with LeRobot's built-ins"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lerobot-vla", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        module.configure_parser(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
