"""`python -m lerobot_vla_plugin.emulator ...`: the emulator alone, without building the whole CLI."""

import argparse
import sys

from .cli import configure_parser, run

parser = argparse.ArgumentParser(prog="python -m lerobot_vla_plugin.emulator", description=__doc__)
configure_parser(parser)
sys.exit(run(parser.parse_args()))
