"""`lerobot-vla bench rollout`: a trained policy driving the virtual SO-101, asynchronous inference with each chunk
merge next to the stock synchronous path, in one run on the same scenes.

    lerobot-vla bench rollout --policy.path=outputs/train/flow_vla/checkpoints/last/pretrained_model \\
        [--episodes 2] [--episode-time-s 15] [--fps 30] [--rates 30,45,60] [--clocks wall,lockstep]

Rows (one policy load, the same episode scenes for every row):

- stock sync: the call lerobot-record's `record_loop` makes with --policy.path, LeRobot's own
  `predict_action` (policy.select_action: a whole chunk computed inside the tick whenever the policy's queue is
  empty), reproduced through LeRobot's API in our control loop (evaluation/policy_runner.py `SyncPolicyRunner`);
- ours async + RTC / + blend / naive: `lerobot-vla rollout`'s asynchronous runner, the new chunk continuing the
  rest of the last one (RTC), crossfaded into it (blend), or simply replacing it (naive).

Every row runs through the same control loop and episode code as `lerobot-vla rollout --virtual so101`
(rollout/loop.py, evaluation/evaluator.py). Clocks: "wall" lets simulated time follow the wall clock, as a real
arm's does: achieved Hz, p99 period and stalls are real-time figures of this machine; "lockstep" advances the
simulation one period per tick and charges each chunk its measured latency (or --delay-ticks) as a delay in
ticks, so jerk and success do not depend on how busy the machine is. `--rates` runs ours with RTC on the wall clock
at higher rates to find the highest one it holds.

Columns: achieved Hz and p99 tick period (wall clock only); stalls (ticks that started more than 1.5 periods
after the previous one, plus ticks on which the action queue ran dry after the first chunk); inference latency
p50/p99 over the chunks; chunk-boundary jerk, defined in `rollout/stats.py` `chunk_boundary_jerk` (mean |second
difference| of the joint targets, deg/tick^2, at chunk boundaries vs elsewhere); success on the episode's task.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

MODES = {
    "stock": "stock sync (predict_action)",
    "rtc": "ours async + RTC",
    "blend": "ours async + blend",
    "naive": "ours async naive",
}
CLOCKS = ("wall", "lockstep")
# A rate is held when the loop achieves this share of it with no stall.
HOLD_SHARE = 0.97
NOT_MEASURED_LOCKSTEP = "n/a: lockstep"
NO_BOUNDARY = "n/a: no chunk boundary"


def _names(text: str, allowed) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose among {', '.join(allowed)} (got {text!r})")
    return names


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy.path", dest="policy_path", required=True,
                        help="a trained checkpoint's pretrained_model folder (image features required)")
    parser.add_argument("--policy.device", dest="policy_device", default="cpu", help="default %(default)s")
    parser.add_argument("--episodes", type=int, default=2, help="episodes per row, the same scenes (default 2)")
    parser.add_argument("--episode-time-s", type=float, default=15.0, help="arm seconds per episode (default 15)")
    parser.add_argument("--fps", type=int, default=30, help="control rate of the side-by-side rows (default 30)")
    parser.add_argument("--rates", type=_ints, default=[30, 45, 60],
                        help="wall-clock rates at which ours (async + RTC) is tried (default 30,45,60)")
    parser.add_argument("--rate-episodes", type=int, default=1, help="episodes per tried rate (default 1)")
    parser.add_argument("--modes", type=lambda text: _names(text, MODES), default=list(MODES),
                        help="rows among stock,rtc,blend,naive (default all)")
    parser.add_argument("--clocks", type=lambda text: _names(text, CLOCKS), default=list(CLOCKS),
                        help="wall (real time) and/or lockstep (delay in ticks from the latency; default both)")
    parser.add_argument("--delay-ticks", type=int, default=None,
                        help="lockstep: every chunk arrives this many ticks after its observation (default: its "
                             "measured latency in ticks)")
    parser.add_argument("--seed", type=int, default=0, help="first evaluation scene seed offset (default 0)")
    parser.add_argument("--tasks", default="red,blue", help="task keys alternated episode by episode")
    parser.add_argument("--uncertainty", action="store_true",
                        help="score each chunk's uncertainty as lerobot-vla rollout does by default (adds latency)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for every row (default: as lerobot-vla rollout, every core but one; "
                             "on a small CPU shared with the loop, the simulation and the renderer, more threads "
                             "oversubscribe the cores and a chunk takes many times longer); 0 keeps torch's default")
    parser.add_argument("--output-dir", default="outputs/bench/rollout", help="where rollout_bench.json goes")


def load_policy_config(path: str, device: str):
    from lerobot_vla_plugin.workflow.draccus_options import register_config_types, split_policy_path

    register_config_types()
    policy, _ = split_policy_path([f"--policy.path={path}", f"--policy.device={device}"])
    return policy


def make_runner(mode: str, loaded, *, fps: int, lockstep: bool, delay_ticks: int | None, uncertainty: bool):
    """The runner of a row: LeRobot's predict_action for "stock", else ours with that chunk merge."""
    from lerobot_vla_plugin.evaluation.policy_runner import SyncPolicyRunner
    from lerobot_vla_plugin.rollout.runners import build_runner

    if mode == "stock":
        return SyncPolicyRunner(loaded)
    return build_runner(loaded, inference="async", period_s=1.0 / fps, lockstep=lockstep, delay_ticks=delay_ticks,
                        score_uncertainty=uncertainty, merge=mode)


def warm_up(loaded, rig, task: str, calls: int = 2) -> None:
    """First calls are slow (allocations, lazy init, the first render of a frame size): not what a row should
    measure. Both inference paths and the evaluator's frame strip run once here."""
    from lerobot_vla_plugin.evaluation.evaluator import STRIP_CAMERA, STRIP_SIZE
    from lerobot_vla_plugin.evaluation.policy_runner import SyncPolicyRunner

    observation = rig.robot.get_observation()
    for _ in range(calls):
        loaded.predict_chunk(loaded.frame(observation), task)
    stock = SyncPolicyRunner(loaded)
    for _ in range(calls):
        stock.reset(task)
        stock.act(observation)
    loaded.reset()
    rig.virtual.frame(STRIP_CAMERA, *STRIP_SIZE)


def measure(policy_cfg, *, clock: str, fps: int, modes: list[str], specs, episode_time_s: float,
            delay_ticks: int | None, uncertainty: bool, out=print) -> list[dict]:
    """One row per mode, each on the episodes `specs`, on one virtual arm and one loaded policy."""
    from lerobot_vla_plugin.evaluation.evaluator import VirtualEvaluator, VirtualRig
    from lerobot_vla_plugin.rollout.loaded_policy import LoadedPolicy
    from lerobot_vla_plugin.rollout.loop import ControlLoop
    from lerobot_vla_plugin.sim.so101 import TASKS

    lockstep = clock == "lockstep"
    shapes = {key: tuple(feature.shape) for key, feature in policy_cfg.image_features.items()}
    rows = []
    with VirtualRig(fps=fps, image_shapes=shapes, lockstep=lockstep) as rig:
        loaded = LoadedPolicy.from_config(policy_cfg, rig.robot)
        warm_up(loaded, rig, TASKS[specs[0].task_key])
        for mode in modes:
            runner = make_runner(mode, loaded, fps=fps, lockstep=lockstep, delay_ticks=delay_ticks,
                                 uncertainty=uncertainty)
            loop = ControlLoop(rig.robot, runner, fps=fps, lockstep=lockstep, watchdog_s=None)
            evaluator = VirtualEvaluator(rig.virtual, rig.robot, runner, episode_time_s=episode_time_s,
                                         strip_frames=2, loop=loop)
            load_before = os.getloadavg()[0]
            episodes = []
            for spec in specs:
                episodes.append(evaluator.run_episode(spec))
                out(f"  {clock} {fps} Hz, {MODES[mode]}: episode {spec.index} ({spec.task_key}) "
                    f"{'success' if episodes[-1].result.success else 'no success'}, "
                    f"{episodes[-1].result.wall_s:.1f} s wall")
            if hasattr(runner, "close"):
                runner.close()
            rows.append(mode_row(mode, clock, fps, episodes, load=(load_before, os.getloadavg()[0])))
    return rows


def mode_row(mode: str, clock: str, fps: int, episodes, load=(None, None)) -> dict:
    """What a row reports, pooled over its episodes (rollout/report.py for cadence and latency)."""
    from lerobot_vla_plugin.rollout.report import summarize
    from lerobot_vla_plugin.rollout.stats import chunk_boundary_jerk

    # An episode a servo fault ended (torque off, the arm power-cycled for the next) has an outcome but no trace.
    traced = [episode for episode in episodes if episode.run is not None]
    runs = [episode.run for episode in traced]
    successes = [episode.result.success for episode in episodes]
    summary = summarize(runs, [episode.result.success for episode in traced], {"fps": fps, "clock": clock})
    faults = [episode.result.error for episode in episodes if episode.run is None]
    jerk = chunk_boundary_jerk([run.trace for run in runs])
    if jerk["jerk_boundary"] is None:
        jerk["jerk_boundary"] = NO_BOUNDARY
    wall = clock == "wall"
    return {
        "mode": mode, "label": MODES[mode], "clock": clock, "target_hz": fps, "episodes": len(episodes),
        "ticks": summary["ticks"],
        "achieved_hz": summary["achieved_hz"] if wall else NOT_MEASURED_LOCKSTEP,
        "period_p99_ms": summary["period_p99_ms"] if wall else NOT_MEASURED_LOCKSTEP,
        "stalls": summary["stalls"], "dry_ticks": summary["dry_ticks"], "overruns": summary["overruns"],
        "latency_p50_ms": summary["latency_p50_ms"], "latency_p99_ms": summary["latency_p99_ms"],
        "chunks": summary["chunks"], **jerk,
        "successes": sum(successes), "success_rate": sum(successes) / len(successes) if successes else None,
        "errors": summary["errors"] + faults, "servo_faults": len(faults), "wall_hz": summary["wall_hz"], "load_1min": list(load),
    }


# -- table --------------------------------------------------------------------------------------------------------

COLUMNS = (  # (key, header, format)
    ("achieved_hz", "Hz", "{:.1f}"),
    ("period_p99_ms", "p99 ms", "{:.1f}"),
    ("stalls", "stalls", "{:d}"),
    ("latency_p50_ms", "lat p50", "{:.0f}"),
    ("latency_p99_ms", "lat p99", "{:.0f}"),
    ("chunks", "chunks", "{:d}"),
    ("jerk_boundary", "jerk@chunk", "{:.3f}"),
    ("jerk_elsewhere", "jerk else", "{:.3f}"),
    ("success_rate", "success", "{:.2f}"),
)
RATIO_COLUMNS = ("achieved_hz", "period_p99_ms", "stalls", "latency_p50_ms", "latency_p99_ms", "jerk_boundary")


SHORT = {NOT_MEASURED_LOCKSTEP: "n/a lockstep", NO_BOUNDARY: "n/a no bound."}


def _cell(value, fmt: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return SHORT.get(value, value)
    return fmt.format(value)


def ratio(value, reference):
    """value / reference, or None when either is not a measured number or the reference is 0."""
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (value, reference))
    if not numbers or reference == 0 or not math.isfinite(value) or not math.isfinite(reference):
        return None
    return value / reference


def format_rows(rows: list[dict], title: str) -> str:
    width = max(len(row["label"]) for row in rows)
    lines = [title, f"{'row':<{width}}  " + "  ".join(f"{header:>12}" for _, header, _ in COLUMNS)]
    for row in rows:
        cells = [_cell(row[key], fmt) for key, _, fmt in COLUMNS[:-1]]
        cells.append(f"{row['successes']}/{row['episodes']}")
        lines.append(f"{row['label']:<{width}}  " + "  ".join(f"{cell:>12}" for cell in cells))
    for row in rows:
        for error in row["errors"]:
            lines.append(f"  {row['label']}: {error}")
    stock = next((row for row in rows if row["mode"] == "stock"), None)
    if stock is not None:
        lines.append(f"ratio to stock sync ({', '.join(RATIO_COLUMNS)}):")
        for row in rows:
            if row is stock:
                continue
            cells = []
            for key in RATIO_COLUMNS:
                value = ratio(row[key], stock[key])
                cells.append(f"{key} x{value:.2f}" if value is not None else f"{key} n/a")
            lines.append(f"  {row['label']:<{width}}  " + ", ".join(cells))
    return "\n".join(lines)


def holds(row: dict) -> bool:
    return (isinstance(row["achieved_hz"], float) and row["achieved_hz"] >= HOLD_SHARE * row["target_hz"]
            and row["stalls"] == 0)


def format_rates(rows: list[dict]) -> str:
    lines = [f"Ours (async + RTC) on the wall clock; holds = >= {HOLD_SHARE:.0%} of the target and no stall"]
    for row in rows:
        lines.append(f"  {row['target_hz']:>3} Hz: achieved {_cell(row['achieved_hz'], '{:.1f}')} Hz, p99 "
                     f"{_cell(row['period_p99_ms'], '{:.1f}')} ms, {row['stalls']} stalls, latency p50 "
                     f"{_cell(row['latency_p50_ms'], '{:.0f}')} ms -> {'holds' if holds(row) else 'does not hold'}")
    held = [row["target_hz"] for row in rows if holds(row)]
    lines.append(f"  highest rate held: {max(held)} Hz" if held else "  no tried rate was held")
    return "\n".join(lines)


def machine_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"machine: {os.cpu_count()} CPUs, load average {one:.2f} {five:.2f} {fifteen:.2f}"


# -- command ------------------------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    import torch

    from lerobot_vla_plugin.evaluation.evaluator import episode_specs
    from lerobot_vla_plugin.rollout.loaded_policy import use_inference_threads
    from lerobot_vla_plugin.sim.so101 import TASKS

    tasks = [key.strip() for key in args.tasks.split(",") if key.strip()]
    if not tasks or any(key not in TASKS for key in tasks) or args.episodes < 1 or args.rate_episodes < 1:
        print(f"error: --tasks must list keys among {', '.join(TASKS)}; --episodes and --rate-episodes >= 1",
              file=sys.stderr)
        return 2
    policy_cfg = load_policy_config(args.policy_path, args.policy_device)
    if not policy_cfg.image_features:
        print("error: the policy has no image features; the virtual arm's cameras are what it would see",
              file=sys.stderr)
        return 2
    threads = torch.get_num_threads()
    if args.threads is None:
        use_inference_threads()
    else:
        torch.set_num_threads(args.threads or threads)
    try:
        return bench(args, policy_cfg, episode_specs(args.episodes, args.seed, tasks))
    finally:
        torch.set_num_threads(threads)


def bench(args: argparse.Namespace, policy_cfg, specs) -> int:
    import torch

    common = {"episode_time_s": args.episode_time_s, "delay_ticks": args.delay_ticks,
              "uncertainty": args.uncertainty, "out": lambda text: print(text, flush=True)}
    started = time.perf_counter()
    start_load = machine_line()
    print(start_load, flush=True)
    tables: dict[str, list[dict]] = {}
    for clock in args.clocks:
        print(f"measuring {', '.join(args.modes)} on the {clock} clock at {args.fps} Hz ...", flush=True)
        tables[clock] = measure(policy_cfg, clock=clock, fps=args.fps, modes=args.modes, specs=specs, **common)
    rate_rows = []
    if "wall" in args.clocks:
        for rate in sorted(set(args.rates)):
            reuse = next((row for row in tables["wall"] if row["mode"] == "rtc"), None) if rate == args.fps else None
            if reuse is None:
                print(f"measuring ours (async + RTC) on the wall clock at {rate} Hz ...", flush=True)
                reuse = measure(policy_cfg, clock="wall", fps=rate, modes=["rtc"],
                                specs=specs[:args.rate_episodes], **common)[0]
            rate_rows.append(reuse)
    finished_load = machine_line()

    settings = {
        "policy_path": str(args.policy_path), "policy_type": policy_cfg.type, "episodes": args.episodes,
        "episode_time_s": args.episode_time_s, "fps": args.fps, "scene_seeds": [s.scene_seed for s in specs],
        "tasks": [s.task_key for s in specs], "lockstep_delay_ticks": args.delay_ticks or "measured latency",
        "uncertainty_scored": args.uncertainty, "torch_threads": torch.get_num_threads(),
        "stock_path": "reproduced through LeRobot's API: lerobot.utils.control_utils.predict_action on "
                      "build_dataset_frame(observation), make_robot_action, in our control loop (what "
                      "lerobot-record's record_loop calls with --policy.path)",
        "definitions": {
            "stalls": "ticks that started more than 1.5 periods after the previous one (wall clock) plus ticks on "
                      "which the action queue ran dry after the episode's first chunk",
            "jerk": "mean over ticks of max over the arm joints (gripper excluded) of |a[t+1] - 2 a[t] + a[t-1]|, "
                    "degrees/tick^2, a = joint targets the runner sent (before the arm's clamps), from the "
                    "episode's first chunk on; 'at chunk' = centres t = b-1 and b for every later chunk start b",
            "latency": "seconds of one chunk's inference (async: its thread; stock: the predict_action call that "
                       "computed it)",
        },
    }
    report = {"settings": settings, "machine_start": start_load, "machine_end": finished_load,
              "rows": {clock: rows for clock, rows in tables.items()}, "rates": rate_rows,
              "highest_rate_held_hz": max((r["target_hz"] for r in rate_rows if holds(r)), default=None),
              "wall_s": time.perf_counter() - started}
    text = []
    for clock, rows in tables.items():
        how = ("simulated time follows the wall clock" if clock == "wall" else
               f"one period per tick, chunk delay {settings['lockstep_delay_ticks']}")
        text.append(format_rows(rows, f"\nRollout on the virtual SO-101, {clock} clock ({how}), target {args.fps} Hz, "
                                      f"{args.episodes} episode(s) x {args.episode_time_s:g} s per row, same scenes; "
                                      "latency ms, jerk deg/tick^2"))
    text.append("stalls: " + settings["definitions"]["stalls"] + ".\njerk: " + settings["definitions"]["jerk"] + ".")
    if rate_rows:
        text.append("\n" + format_rates(rate_rows))
    text.append(f"\n{finished_load} (at the end; {report['wall_s']:.0f} s wall)")
    print("\n".join(text), flush=True)
    folder = Path(args.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "rollout_bench.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"JSON: {path}")
    return 0
