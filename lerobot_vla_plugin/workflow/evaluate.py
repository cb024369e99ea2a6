"""`lerobot-vla eval`: a policy's success rate on the virtual SO-101, on scenes it was never trained on.

    lerobot-vla eval --policy.path=outputs/train/flow_vla/checkpoints/last/pretrained_model --virtual so101 \\
        --eval.episodes 20 --eval.seed 0 [--eval.tasks red,blue] [--eval.episode_time_s 20] [--output_dir DIR] \\
        [--eval.inference sync|async] [--eval.inference_delay_ticks N]
    lerobot-vla eval --eval.policy_server HOST:PORT [--eval.token T] --eval.inference async --virtual so101 ...

The policy (any LeRobot type, loaded with its saved processors) drives our `vla_so101_follower` on the virtual
arm's emulated servo bus, one observation -> action per control tick, with `vla_sim_camera`s matching its image
features. Scenes come from the evaluation seed range (sim/scene_seeds.py), which `lerobot-vla record --virtual`
never uses. Prints a table per task (rate, 95 % Wilson interval, failure modes, time per episode) and writes
`eval_episodes.json` and `eval_frames.png` to the output directory. `--scripted` evaluates the scripted operator
instead of a policy: the reference point.

`--eval.inference async` runs the policy as on a real arm with asynchronous inference (rollout/): chunks computed
in a background thread, merged by real-time chunking when the policy supports it, else crossfaded. Simulated time
charges each chunk its delay: `--eval.inference_delay_ticks N` ticks, or by default its measured latency in ticks,
so sync and async success rates compare what the arm would do. `--eval.policy_server HOST:PORT` (with async)
takes the chunks from `lerobot-vla policy-server` instead of a local checkpoint; the latency is then the round trip.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lerobot.configs.policies import PreTrainedConfig

from .draccus_options import pass_options_through, register_config_types, split_policy_path

EXIT_OK, EXIT_USAGE = 0, 2
VIRTUAL_ARMS = ("so101",)
INFERENCE_MODES = ("sync", "async")
_FLAG_OPTIONS = {"scripted"}


@dataclass
class EvalEpisodesConfig:
    episodes: int = 10
    # Episode i's scene is evaluation seed `seed + i`, a range disjoint from the recorder's.
    seed: int = 0
    # Task keys alternated episode by episode.
    tasks: str = "red,blue"
    # Simulated seconds before an episode counts as failed.
    episode_time_s: float = 20.0
    fps: int = 30
    # sync: the loop waits for each chunk (lerobot-record's way); async: inference in a background thread.
    inference: str = "sync"
    # async only: every chunk arrives this many control ticks after its observation; default its measured latency.
    inference_delay_ticks: int | None = None
    # async only: HOST:PORT of a `lerobot-vla policy-server` computing the chunks (instead of --policy.path).
    policy_server: str | None = None
    # The policy server's shared token (default: $LEROBOT_VLA_POLICY_TOKEN).
    token: str | None = None


@dataclass
class EvaluateConfig:
    eval: EvalEpisodesConfig = field(default_factory=EvalEpisodesConfig)
    # Set from --policy.path (and --policy.<field> overrides), as lerobot-record does.
    policy: PreTrainedConfig | None = None
    virtual: str = "so101"
    # Where the JSON and PNG go; default outputs/eval/<date>_<time>.
    output_dir: str | None = None
    # Evaluate the scripted operator (no policy): the ceiling of policies trained on its demonstrations.
    scripted: bool = False
    # Frames per episode in the PNG strip.
    strip_frames: int = 6


class UsageError(ValueError):
    """The options cannot work; nothing was started."""


def task_keys(cfg: EvaluateConfig) -> list[str]:
    return [t.strip() for t in cfg.eval.tasks.split(",") if t.strip()]


def parse_config(argv: list[str]) -> EvaluateConfig:
    """draccus for the options; the policy's config is loaded from --policy.path like LeRobot's scripts do."""
    from lerobot_vla_plugin.options import parse_options

    register_config_types()
    policy, rest = split_policy_path([_dashes_to_underscores(arg) for arg in argv])
    cfg = parse_options(EvaluateConfig, rest)
    if policy is not None:
        cfg.policy = policy
    validate(cfg)
    return cfg


def _dashes_to_underscores(arg: str) -> str:
    """Accept `--episode-time-s` and a bare `--scripted` alongside draccus' `--episode_time_s`, `--scripted=true`."""
    if not arg.startswith("--"):
        return arg
    key, eq, value = arg[2:].partition("=")
    key = key.replace("-", "_")
    if not eq and key in _FLAG_OPTIONS:
        return f"--{key}=true"
    return f"--{key}{eq}{value}"


def validate(cfg: EvaluateConfig) -> None:
    from lerobot_vla_plugin.sim.scene_seeds import evaluation_scene_seed
    from lerobot_vla_plugin.sim.so101 import TASKS

    if cfg.virtual not in VIRTUAL_ARMS:
        raise UsageError(f"--virtual {cfg.virtual!r} is not available; choose one of {', '.join(VIRTUAL_ARMS)}.")
    if (cfg.policy is not None) + cfg.scripted + (cfg.eval.policy_server is not None) != 1:
        raise UsageError("Give --policy.path=DIR (a LeRobot checkpoint's pretrained_model folder), "
                         "--eval.policy_server HOST:PORT or --scripted.")
    if cfg.eval.policy_server is not None:
        from lerobot_vla_plugin.rollout.remote_client import parse_address

        if cfg.eval.inference != "async":
            raise UsageError("--eval.policy_server needs --eval.inference async.")
        try:
            parse_address(cfg.eval.policy_server)
        except ValueError as exc:
            raise UsageError(f"--eval.policy_server: {exc}") from exc
    keys = task_keys(cfg)
    if not keys or any(key not in TASKS for key in keys):
        raise UsageError(f"--eval.tasks must list task keys among {', '.join(TASKS)} (got {cfg.eval.tasks!r}).")
    if cfg.eval.inference not in INFERENCE_MODES:
        raise UsageError(f"--eval.inference must be one of {', '.join(INFERENCE_MODES)} (got {cfg.eval.inference!r}).")
    if cfg.eval.inference_delay_ticks is not None:
        if cfg.eval.inference != "async":
            raise UsageError("--eval.inference_delay_ticks needs --eval.inference async.")
        if cfg.eval.inference_delay_ticks < 0:
            raise UsageError("--eval.inference_delay_ticks must be >= 0.")
    if cfg.eval.episodes <= 0 or cfg.eval.episode_time_s <= 0 or cfg.eval.fps <= 0:
        raise UsageError("--eval.episodes, --eval.episode_time_s and --eval.fps must be positive.")
    try:
        evaluation_scene_seed(cfg.eval.seed, 0)
        evaluation_scene_seed(cfg.eval.seed, cfg.eval.episodes - 1)
    except ValueError as exc:
        raise UsageError(f"--eval.seed: {exc}") from exc
    if cfg.policy is not None and not cfg.policy.image_features:
        raise UsageError("The policy has no image features (observation.images.<camera>); the virtual arm's cameras "
                         "are what it would see.")


def output_dir(cfg: EvaluateConfig) -> Path:
    if cfg.output_dir:
        return Path(cfg.output_dir).expanduser()
    return Path("outputs") / "eval" / dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def evaluate(cfg: EvaluateConfig, out=print) -> dict:
    """Run every episode, print one line each and the table; write the JSON and PNG. Returns the summary."""
    from lerobot_vla_plugin.evaluation.evaluator import VirtualEvaluator, VirtualRig, episode_specs
    from lerobot_vla_plugin.evaluation.report import (
        format_table,
        strip_episodes,
        summarize,
        write_frame_strip,
        write_json,
    )
    from lerobot_vla_plugin.evaluation.scripted_runner import ScriptedOperatorRunner

    # The scripted operator needs no cameras; a policy gets the ones it was trained with.
    remote = connect_policy_server(cfg) if cfg.eval.policy_server else None
    image_shapes = {} if cfg.policy is None else {
        key: tuple(feature.shape) for key, feature in cfg.policy.image_features.items()}
    if remote is not None:
        image_shapes = remote.image_shapes()
    specs = episode_specs(cfg.eval.episodes, cfg.eval.seed, task_keys(cfg))
    episodes = []
    with VirtualRig(fps=cfg.eval.fps, image_shapes=image_shapes) as rig:
        runner = ScriptedOperatorRunner(rig.virtual) if cfg.scripted else policy_runner(cfg, rig.robot, remote)
        evaluator = VirtualEvaluator(rig.virtual, rig.robot, runner, episode_time_s=cfg.eval.episode_time_s,
                                     strip_frames=cfg.strip_frames)
        for spec in specs:
            episode = evaluator.run_episode(spec)
            episodes.append(episode)
            r = episode.result
            outcome = f"success in {r.time_to_success_s:.1f} s" if r.success else f"FAILED ({r.failure_mode})"
            if not r.success and r.first_grasp_aim is not None:
                aim = r.first_grasp_aim
                outcome += (f"; the jaws first closed {aim.offset_mm:.0f} mm from the cube's centre, turned "
                            f"{aim.heading_error_deg:+.0f} deg from its faces")
            details = f"; {r.rollout['chunks']} chunks, {r.rollout['stalls']} stalls" if r.rollout else ""
            out(f"Episode {r.episode} ({r.task}, scene seed {r.scene_seed}): {outcome}; {r.wall_s:.1f} s wall"
                + details + (f"\n  {r.error}" if r.error else ""))
        rollout_stats = runner.stats() if hasattr(runner, "stats") else None
        if hasattr(runner, "close"):
            runner.close()
        if remote is not None:
            remote.close()
    results = [e.result for e in episodes]
    folder = output_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "policy_path": None if cfg.policy is None else str(cfg.policy.pretrained_path),
        "policy_type": "scripted_operator" if cfg.scripted else remote.policy_type if remote else cfg.policy.type,
        "virtual": cfg.virtual, "episodes": cfg.eval.episodes, "seed": cfg.eval.seed, "tasks": task_keys(cfg),
        "episode_time_s": cfg.eval.episode_time_s, "fps": cfg.eval.fps,
        "inference": "scripted" if cfg.scripted else cfg.eval.inference,
        "inference_delay_ticks": cfg.eval.inference_delay_ticks, "clock": "lockstep",
        "n_action_steps": None if cfg.policy is None else getattr(cfg.policy, "n_action_steps", None),
    }
    if rollout_stats is not None:
        settings["rollout"] = rollout_stats
    if remote is not None:
        settings["policy_server"] = remote.stats()
    json_path = write_json(folder / "eval_episodes.json", results, settings)
    png_path = write_frame_strip(folder / "eval_frames.png", strip_episodes(episodes))
    summary = summarize(results)
    out("\n" + format_table(summary))
    if rollout_stats is not None:
        out("\n" + format_rollout(rollout_stats))
    out(f"\nEpisodes: {json_path}" + (f"\nFrames: {png_path}" if png_path else ""))
    return summary


def connect_policy_server(cfg: EvaluateConfig):
    """The --eval.policy_server connection, its policy checked like a local one's."""
    import os

    from lerobot_vla_plugin.rollout.policy_server import TOKEN_ENV
    from lerobot_vla_plugin.rollout.remote_client import RemoteError, RemotePolicy

    try:
        remote = RemotePolicy(cfg.eval.policy_server, cfg.eval.token or os.environ.get(TOKEN_ENV))
    except RemoteError as exc:
        raise UsageError(str(exc)) from exc
    if not remote.image_shapes():
        remote.close()
        raise UsageError(f"The policy served at {cfg.eval.policy_server} has no image features; the virtual arm's "
                         "cameras are what it would see.")
    return remote


def policy_runner(cfg: EvaluateConfig, robot, remote=None):
    """The runner --eval.inference asks for, on the lockstep virtual arm's clock; `remote`: a RemotePolicy."""
    from lerobot_vla_plugin.evaluation.policy_runner import SyncPolicyRunner

    if cfg.eval.inference == "sync":
        return SyncPolicyRunner.from_config(cfg.policy, robot)
    from lerobot_vla_plugin.rollout.async_runner import AsyncPolicyRunner
    from lerobot_vla_plugin.rollout.clock import LockstepClock

    period_s = 1.0 / cfg.eval.fps
    clock = LockstepClock(period_s, cfg.eval.inference_delay_ticks)
    if remote is not None:
        return AsyncPolicyRunner(remote.use_robot(robot), period_s=period_s, clock=clock)
    return AsyncPolicyRunner.from_config(cfg.policy, robot, period_s=period_s, clock=clock)


def format_rollout(stats: dict) -> str:
    def ms(value):
        return "-" if value is None else f"{1000 * value:.0f} ms"

    delay = stats["fixed_delay_ticks"]
    return (f"Asynchronous inference ({'RTC' if stats['rtc'] else 'crossfade'}, delay "
            f"{'measured' if delay is None else f'{delay} ticks'}): {stats['chunks']} chunks, latency p50 "
            f"{ms(stats['latency_p50_s'])} / p90 {ms(stats['latency_p90_s'])}, {stats['stalls']} stalls, "
            f"boundary jerk {stats['boundary_jerk']:.2f} (elsewhere {stats['elsewhere_jerk']:.2f})")


# -- command line -------------------------------------------------------------------------------------------------

def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options are LeRobot-style (`--policy.path=...`, `--eval.episodes=...`) and parsed by draccus in `run`."""
    pass_options_through(parser, "eval_options")


def run(args: argparse.Namespace) -> int:
    from lerobot.utils.utils import init_logging

    init_logging()
    from lerobot_vla_plugin.rollout.loaded_policy import use_inference_threads

    try:
        cfg = parse_config(args.eval_options)
        use_inference_threads()
        evaluate(cfg, out=lambda text: print(text, flush=True))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
