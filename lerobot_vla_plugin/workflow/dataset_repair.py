"""`lerobot-vla dataset-repair ROOT`: keep every intact episode of a damaged dataset, drop only the damaged ones.

It lists what it would do first (a truncated data file and the episodes that live in it, a lost
`meta/info.json` to rebuild, leftover temporaries and staged images), then asks; `--dry-run` only lists,
`--yes` does not ask. Damaged files are moved to `ROOT.damaged/`, never deleted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", type=Path, help="dataset folder (the --dataset.root it was recorded to)")
    parser.add_argument("--dry-run", action="store_true", help="only list what would change")
    parser.add_argument("--yes", action="store_true", help="repair without asking (for scripts)")


def run(args: argparse.Namespace) -> int:
    from lerobot_vla_plugin.recording.repair import DatasetCorruptError
    from lerobot_vla_plugin.recording.salvage import apply_salvage, plan_salvage

    try:
        plan = plan_salvage(args.root)
    except DatasetCorruptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(plan.listing(), flush=True)
    if not plan.changes_needed or args.dry_run:
        return 0
    if not plan.kept:
        print("error: no intact episode is left; nothing was changed.", file=sys.stderr)
        return 1
    if not args.yes:
        if not sys.stdin.isatty():
            print("Not a terminal: run again with --yes to repair.", file=sys.stderr)
            return 1
        if input("Repair? [y/N] ").strip().lower() not in ("y", "yes"):
            print("Nothing changed.")
            return 1
    kept = apply_salvage(plan)
    moved = f"; damaged files are in {plan.damaged_folder}" if plan.damaged else ""
    print(f"Repaired {args.root}: {kept} episodes kept, {len(plan.dropped)} dropped{moved}.")
    return 0
