"""`lerobot-vla record`: leader-follower recording that never loses a finished episode.

Same options and control loop as `lerobot-record` (observation → teleop action → robot → frame), with what hurts
most when collecting data fixed:

- every finished episode is saved crash-safe in the background (`recording.CrashSafeRecorder`), and "Episode N
  saved" is printed only once it is committed, so what the log calls saved survives a crash; a crash, a failing
  camera, a failed save or a silent servo ends the session with a message naming the fault and loses at most the
  take in progress; `--resume` continues, refusing a different robot, fps, features or cameras;
- keys work over SSH, headless and on Wayland (terminal cbreak), plus pynput on X desktops (workflow/keyboard.py);
- each take's achieved control rate and camera fps are measured and stored in the episode metadata; `--min-hz`
  rejects (re-records) takes below it instead of stamping them at the nominal fps (workflow/cadence.py);
- frames are handed to the writer's background queue; saving and video encoding run off the control loop;
- `--virtual so101` records hands-free from the virtual SO-101 (scripted operator on the leader, the real
  teleop path, simulated cameras), alternating tasks: one command makes a demo dataset.

    lerobot-vla record --virtual so101 --dataset.repo_id=local/so101_demo --dataset.num_episodes=10 --tasks red,blue
    lerobot-vla record --robot.type=vla_so101_follower --robot.port=/dev/ttyACM0 --robot.id=follower \\
        --teleop.type=vla_so101_leader --teleop.port=/dev/ttyACM1 --teleop.id=leader \\
        --dataset.repo_id=me/pick --dataset.single_task="put the cube in the bowl" --min-hz 27

This module is the command line; the options and their checks are in `record_config`, the session in
`record_session`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .draccus_options import pass_options_through, register_config_types
from .record_config import RecordConfig, RecordDatasetConfig, UsageError, task_keys, validate  # noqa: F401
from .record_session import (  # noqa: F401 - the public names of `lerobot-vla record`
    EXIT_FAULT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    RecordingFault,
    RecordSession,
    SessionResult,
)


# -- command line -------------------------------------------------------------------------------------------------

_FLAG_OPTIONS = {"resume", "push_to_hub", "squeeze_trigger", "play_sounds", "realtime", "report"}
_ALIASES = {"push_to_hub": "dataset.push_to_hub"}


def normalize_argv(argv: list[str]) -> list[str]:
    """Accept `--min-hz 25`, `--push-to-hub` and `--resume` alongside draccus' `--min_hz=25` forms."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if not arg.startswith("--") or arg == "--":
            out.append(arg)
            continue
        key, eq, value = arg[2:].partition("=")
        key = key.replace("-", "_") if "." not in key else key
        key = _ALIASES.get(key, key)
        bare_flag = not eq and key.split(".")[-1] in _FLAG_OPTIONS and (
            i + 1 >= len(argv) or argv[i + 1].startswith("--") or argv[i + 1].lower() not in ("true", "false"))
        out.append(f"--{key}=true" if bare_flag else f"--{key}{eq}{value}")
    return out


def parse_config(argv: list[str]) -> RecordConfig:
    from lerobot_vla_plugin.options import parse_options

    register_config_types(builtin_devices=True)
    return parse_options(RecordConfig, normalize_argv(argv))


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options are LeRobot-style (`--robot.type=...`) and parsed by draccus in `run`, not by argparse."""
    pass_options_through(parser, "record_options")


def run(args: argparse.Namespace) -> int:
    from lerobot.utils.utils import init_logging

    init_logging()
    try:
        cfg = parse_config(args.record_options)
        # A start after a missed grasp is a lesson only when the operator then succeeds: failed takes are dropped.
        session = RecordSession(cfg, successes_only=cfg.virtual is not None and cfg.virtual_missed_grasp_starts > 0)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    result = session.run()
    print(session_summary(result), flush=True)
    if result.message:
        print(("error: " if result.exit_code not in (EXIT_OK, EXIT_INTERRUPTED) else "") + result.message,
              file=sys.stderr, flush=True)
    if result.root is not None and result.total_episodes and cfg.report:
        _run_dataset_report(result.root, cfg.dataset.repo_id, len(task_keys(cfg)) if cfg.virtual else 1)
    if cfg.dataset.push_to_hub and result.total_episodes and result.exit_code == EXIT_OK:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        LeRobotDataset(cfg.dataset.repo_id, root=result.root).push_to_hub(tags=cfg.dataset.tags,
                                                                           private=cfg.dataset.private)
    return result.exit_code


def session_summary(result: SessionResult) -> str:
    parts = [f"{result.saved} episodes saved this session"]
    if result.failed:
        parts.append(f"{result.failed} saves failed (rolled back)")
    if result.rejected:
        parts.append(f"{result.rejected} takes rejected by --min-hz")
    if result.discarded:
        parts.append(f"{result.discarded} takes discarded")
    if result.root is None or not (result.root / "meta" / "info.json").is_file():
        return f"Session done: {', '.join(parts)}; no dataset was created."
    return f"Session done: {', '.join(parts)}; the dataset holds {result.total_episodes} episodes in {result.root}."


def _run_dataset_report(root: Path, repo_id: str, task_count: int) -> None:
    """The dataset quality gate at the end of every session; advisory here (the recording is done and durable)."""
    from lerobot_vla_plugin.workflow import dataset_report

    plot = root.with_name(f"{root.name}_report.png")
    parser = argparse.ArgumentParser(prog="lerobot-vla dataset-report")
    dataset_report.configure_parser(parser)
    args = parser.parse_args([str(root), "--repo-id", repo_id, "--min-tasks", str(max(1, task_count)),
                              "--plot", str(plot)])
    print(f"\nDataset report (also `lerobot-vla dataset-report {root}`):", flush=True)
    try:
        dataset_report.run(args)
    except Exception as exc:  # noqa: BLE001
        print(f"(dataset report failed: {type(exc).__name__}: {exc}; run `lerobot-vla dataset-report {root}`)")
