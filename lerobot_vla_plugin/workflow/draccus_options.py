"""Subcommands whose options are LeRobot-style (`--robot.type=...`) and parsed by draccus, not argparse."""

from __future__ import annotations

import argparse
import sys


def pass_options_through(parser: argparse.ArgumentParser, dest: str) -> None:
    """Make `parser` keep every argument after the subcommand, unparsed, in `args.<dest>` for draccus."""

    def parse_known_args(args=None, namespace=None):
        namespace = namespace or argparse.Namespace()
        for key, value in parser._defaults.items():
            setattr(namespace, key, value)
        setattr(namespace, dest, list(sys.argv[2:] if args is None else args))
        return namespace, []

    parser.parse_known_args = parse_known_args
