"""`lerobot-vla`: what stock LeRobot cannot do for a plugin (emulator, benchmarks, motor setup, ...).

Every subcommand lives in its own module exposing `configure_parser(parser)` and `run(args) -> int`.
Only the module of the subcommand being run is imported, so `lerobot-vla find-port` never pays for torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Order is the order shown by `lerobot-vla --help`.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "emulate": ("lerobot_vla_plugin.emulator.cli", "serve a virtual servo bus on a pseudo-terminal"),
    "bench": ("lerobot_vla_plugin.bench.cli", "benchmarks side by side with LeRobot's built-ins"),
    "dataset-report": ("lerobot_vla_plugin.workflow.dataset_report", "quality gate for a recorded dataset"),
    "dataset-repair": ("lerobot_vla_plugin.workflow.dataset_repair", "keep the intact episodes of a damaged dataset"),
    "eval": ("lerobot_vla_plugin.workflow.evaluate", "success rate of a policy on the virtual SO-101, unseen scenes"),
    "demo-report": ("lerobot_vla_plugin.workflow.demo_report", "the main job's report folder: success, loss, frames, times, commands"),
    "calibrate-uncertainty": ("lerobot_vla_plugin.workflow.calibrate_uncertainty", "the hand-off threshold of a trained policy, from held-out episodes"),
    "flywheel-merge": ("lerobot_vla_plugin.workflow.flywheel_merge", "demonstrations plus a rollout's corrections, one dataset for the next fine-tune"),
    "multiply": ("lerobot_vla_plugin.workflow.multiply", "a few virtual-arm demonstrations re-targeted to many new scenes (MimicGen-style)"),
    "policy-server": ("lerobot_vla_plugin.rollout.policy_server", "serve a policy's action chunks over TCP to a weak robot computer"),
    "rollout": ("lerobot_vla_plugin.workflow.rollout", "a trained policy driving the arm: async inference, bounded failure, recorded"),
    "record": ("lerobot_vla_plugin.workflow.record", "crash-safe leader-follower recording (also hands-free: --virtual so101)"),
    "setup-motors": ("lerobot_vla_plugin.workflow.setup_motors", "assign servo ids and baud rate, one motor at a time"),
    "find-port": ("lerobot_vla_plugin.workflow.find_port", "list serial adapters with stable paths and USB ids"),
    "doctor": ("lerobot_vla_plugin.workflow.doctor", "preflight checks of an arm: port, servos, supply, calibration"),
}


def add_lazy_subcommands(parser: argparse.ArgumentParser, table: dict[str, tuple[str, str]], argv: list[str],
                         dest: str) -> None:
    """Register every entry of `table` as a subcommand, importing only the one named in `argv`."""
    subparsers = parser.add_subparsers(dest=dest, metavar=dest.upper())
    subparsers.required = True
    selected = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in table.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            sub.remaining_argv = argv[argv.index(name) + 1:]  # for subcommands that nest their own table
            module = importlib.import_module(module_name)
            module.configure_parser(sub)
            sub.set_defaults(**{f"_run_{dest}": module.run})


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lerobot-vla", description=__doc__.splitlines()[0])
    add_lazy_subcommands(parser, SUBCOMMANDS, argv, "command")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args._run_command(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
