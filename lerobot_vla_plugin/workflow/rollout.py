"""`lerobot-vla rollout`: a trained policy driving the arm, with bounded failure, an honest cadence and a record.

    lerobot-vla rollout --robot.type=vla_so101_follower --robot.port=/dev/ttyACM0 --robot.id=follower \\
        --robot.cameras="{front: {type: opencv, index_or_path: 0, width: 640, height: 480, fps: 30}}" \\
        --policy.path=outputs/train/flow_vla/checkpoints/last/pretrained_model \\
        --task "put the red cube in the bowl" [--rollout.episodes N] [--rollout.episode_time_s S] \\
        [--rollout.fps 30] [--rollout.inference async|sync] [--rollout.merge auto|rtc|blend|naive] \\
        [--dataset.repo_id=me/eval_pick --dataset.root=DIR] \\
        [--display_data true] [--output_dir DIR] [--teleop.type=vla_so101_leader --teleop.port=... --teleop.id=leader]
    lerobot-vla rollout --virtual so101 --policy.path=DIR [--task "put the red cube in the bowl"] ...

Any registered robot and any LeRobot policy type (loaded with its saved processors). Inference is asynchronous by
default (rollout/async_runner.py: chunks in a background thread, RTC when the policy supports it, else a
crossfade), on the wall clock on a real arm and on the lockstep clock on the virtual arm (simulated time charges
each chunk its latency; `--rollout.clock wall` makes the virtual arm follow the wall clock instead). The loop
(rollout/loop.py) keeps an absolute tick schedule and counts achieved Hz, period percentiles and stalls.

Bounded failure: a chunk with a non-finite action never joins the queue: the arm holds its last target and the
rollout stops with a message; every action goes through the follower's clamps (limits, per-step limit, non-finite
goals refused); a chunk that is late leaves the arm playing out what it has, then holding; the watchdog stops the
loop (torque off at once) when a tick hangs in the policy, a camera or the bus; torque goes off on every exit
path (the arms' exit guard: disconnect, exceptions, Ctrl-C, SIGTERM, interpreter exit).

Hand-off (rollout/handoff.py): with a leader arm (`--teleop.type=vla_so101_leader --teleop.port=... --teleop.id=...`;
on the virtual arm `--rollout.hand_off true`, its scripted operator playing the person), a chunk whose uncertainty
passes the policy's threshold (`--policy.uncertainty_threshold=X` overrides the checkpoint's), the key h, or
(`--rollout.hand_off_after_s S`) S seconds of the policy driving an episode without finishing it pause the policy
and hand the arm over without a jump: an SO-101 leader is first driven to the follower's pose, then
released; other leaders get the follower ramped to them. h hands back. Those frames are recorded as interventions;
rollout/flywheel.py merges them with the demonstrations for the next fine-tune.

With `--dataset.repo_id` the rollout is recorded through the crash-safe writer (rollout/recording.py), with the
per-frame features `intervention`, `uncertainty`, `inference_latency_ms` and, on the virtual arm, each episode's
`is_success`. The summary is printed and written with three PNGs (rollout/plots.py) to the output directory.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..arms.health import SafetyStop
from .draccus_options import pass_options_through
from .rollout_config import (
    RolloutConfig,
    UsageError,
    dataset_root,
    output_dir,
    parse_config,
    scene_task_keys,
    uses_lockstep,
)

logger = logging.getLogger(__name__)


def stopped(reason: object) -> str:
    """'Stopped: <reason>.' as one sentence, whether or not the reason already ends with a full stop."""
    return f"Stopped: {str(reason).rstrip('.')}."


EXIT_OK, EXIT_FAULT, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass
class RolloutOutcome:
    exit_code: int = EXIT_OK
    message: str = ""
    runs: list = field(default_factory=list)  # rollout.loop.EpisodeRun per episode
    successes: list = field(default_factory=list)  # bool per episode on the virtual arm, else None
    servo_faults: list = field(default_factory=list)  # virtual arm: the fault of each episode that ended in one
    summary: dict | None = None
    files: list[Path] = field(default_factory=list)
    dataset_root: Path | None = None
    dataset_episodes: int = 0


class Rollout:
    """One `lerobot-vla rollout` run. `wrap_policy(loaded)` may replace the loaded policy before the runner is
    built (tests plant slow or broken policies this way); `out` prints."""

    def __init__(self, cfg: RolloutConfig, *, out: Callable[[str], None] | None = None,
                 wrap_policy: Callable | None = None):
        self.cfg = cfg
        self.out = out or (lambda text: print(text, flush=True))
        self.wrap_policy = wrap_policy
        self.outcome = RolloutOutcome()
        self.robot = None
        self.runner = None
        self.recorder = None
        self.rig = None
        self.teleop = None
        self.hand_off = None

    # -- the run ----------------------------------------------------------------------------------------------

    def run(self) -> RolloutOutcome:
        from lerobot_vla_plugin.recording import DatasetRootError
        from lerobot_vla_plugin.rollout.loop import LoopStalled

        outcome = self.outcome
        try:
            self._start_arm()
            self._open_dataset()
            if self.robot is not None and not self.robot.is_connected:
                self.robot.connect()
            if self.teleop is not None and not self.teleop.is_connected:
                self.teleop.connect()
            self._start_runner()
            self._episodes()
        except DatasetRootError as exc:
            outcome.exit_code, outcome.message = EXIT_USAGE, str(exc)
        except (LoopStalled, SafetyStop) as exc:
            outcome.exit_code, outcome.message = EXIT_FAULT, stopped(exc)
            self._discard_take()
        except KeyboardInterrupt:
            outcome.exit_code, outcome.message = EXIT_INTERRUPTED, "Interrupted (Ctrl-C); torque off."
            self._discard_take()
        except Exception as exc:  # a device that failed mid-rollout: a message, torque off, what was done is kept
            logger.debug("rollout failed", exc_info=True)
            outcome.exit_code = EXIT_FAULT
            outcome.message = stopped(f"{type(exc).__name__}: {exc}") + (
                " A camera that stopped delivering frames or a servo that stopped answering is the usual cause; "
                "torque off.")
            self._discard_take()
        finally:
            self._shut_down()
        return outcome

    def _start_arm(self) -> None:
        cfg = self.cfg
        if cfg.virtual is not None:
            from lerobot_vla_plugin.evaluation.evaluator import VirtualRig

            shapes = {key: tuple(feature.shape) for key, feature in cfg.policy.image_features.items()}
            self.rig = VirtualRig(fps=cfg.rollout.fps, image_shapes=shapes, lockstep=uses_lockstep(cfg),
                                  leader=cfg.rollout.hand_off).__enter__()
            self.robot, self.teleop = self.rig.robot, self.rig.teleop
        else:
            from lerobot.robots.utils import make_robot_from_config

            self.robot = make_robot_from_config(cfg.robot)
            if cfg.teleop is not None:
                from lerobot.teleoperators.utils import make_teleoperator_from_config

                self.teleop = make_teleoperator_from_config(cfg.teleop)

    def _open_dataset(self) -> None:
        """Before the arm is connected: a dataset root that cannot be used must not move the arm."""
        root = dataset_root(self.cfg)
        if root is None:
            return
        from lerobot_vla_plugin.rollout.recording import RolloutRecorder

        self.recorder = RolloutRecorder.create(self.cfg.dataset.repo_id, root, robot=self.robot,
                                               fps=self.cfg.rollout.fps, use_videos=self.cfg.dataset.video,
                                               vcodec=self.cfg.dataset.vcodec,
                                               virtual=self.rig.virtual if self.rig is not None else None)
        self.outcome.dataset_root = root

    def _start_runner(self) -> None:
        from lerobot_vla_plugin.rollout.loaded_policy import LoadedPolicy
        from lerobot_vla_plugin.rollout.runners import build_runner

        cfg = self.cfg
        loaded = LoadedPolicy.from_config(cfg.policy, self.robot)
        if self.wrap_policy is not None:
            loaded.policy = self.wrap_policy(loaded.policy)
        self.runner = build_runner(loaded, inference=cfg.rollout.inference, period_s=1.0 / cfg.rollout.fps,
                                   lockstep=uses_lockstep(cfg), delay_ticks=cfg.rollout.inference_delay_ticks,
                                   score_uncertainty=cfg.rollout.uncertainty, merge=cfg.rollout.merge)

    def _episodes(self) -> None:
        from lerobot_vla_plugin.arms.health import SafetyStop
        from lerobot_vla_plugin.rollout.loop import ControlLoop

        cfg, r = self.cfg, self.cfg.rollout
        self.hand_off = self._make_hand_off()
        loop = ControlLoop(self.robot, self.runner, fps=r.fps, lockstep=uses_lockstep(cfg), watchdog_s=r.watchdog_s,
                           hand_off=self.hand_off)
        with self._hand_off_key():
            self._run_episodes(loop)

    def _make_hand_off(self):
        if self.teleop is None:
            return None
        from lerobot_vla_plugin.rollout.handoff import LeaderHandOff

        virtual = self.rig.virtual if self.rig is not None else None
        after_s = self.cfg.rollout.hand_off_after_s
        patience_ticks = None if after_s is None else max(1, round(after_s * self.cfg.rollout.fps))
        return LeaderHandOff(
            self.teleop, max_step=self.cfg.rollout.hand_off_step, out=self.out, patience_ticks=patience_ticks,
            # The scripted operator plays the person: takes the leader when asked, hands back when done.
            on_take_leader=virtual.operator_take_over if virtual is not None else None,
            human_done=(lambda: virtual.demonstration_done) if virtual is not None else None)

    def _hand_off_key(self):
        """`h` in the terminal takes over / hands back (when there is a leader and a terminal)."""
        import contextlib

        from .keyboard import TerminalKeyReader

        if self.hand_off is None or not TerminalKeyReader.available():
            return contextlib.nullcontext()
        self.out("Press h to take over from the policy with the leader arm, h again to hand back.")
        return TerminalKeyReader(lambda key: self.hand_off.toggle() if key == "h" else None)

    def _run_episodes(self, loop) -> None:
        cfg, r = self.cfg, self.cfg.rollout
        on_tick = self._tick_callback()
        max_ticks = max(1, round(r.episode_time_s * r.fps))
        if cfg.virtual is not None:
            from lerobot_vla_plugin.evaluation.evaluator import VirtualEvaluator, episode_specs
            from lerobot_vla_plugin.sim.so101 import TASKS

            evaluator = VirtualEvaluator(self.rig.virtual, self.robot, self.runner, episode_time_s=r.episode_time_s,
                                         strip_frames=2, loop=loop)
            specs = episode_specs(r.episodes, r.seed, scene_task_keys(cfg))
        for index in range(r.episodes):
            if cfg.virtual is not None:
                spec = specs[index]
                instruction = cfg.task or TASKS[spec.task_key]
                self.out(f"Episode {index}: {instruction} (scene {spec.task_key}, seed {spec.scene_seed})")
                if self.recorder is not None:
                    self.recorder.start_episode(instruction)
                episode = evaluator.run_episode(spec, instruction=instruction, on_tick=on_tick)
                if episode.run is None:
                    # A servo fault took torque off. On a real arm the rollout stops (SafetyStop), and so it does
                    # here for a servo that stopped answering; one that reported a fault (overload, heat) is
                    # power-cycled at the next episode's start, as the evaluator does, so one overload is one
                    # failed episode of the session, not its end. The take ends in a fault: not kept.
                    fault = getattr(self.robot, "fault", None)
                    if fault is None or fault.silent:
                        raise SafetyStop(episode.result.error)
                    self._discard_take()
                    self.outcome.servo_faults.append(episode.result.error)
                    after = ("; the virtual arm is power-cycled for the next episode" if index + 1 < r.episodes
                             else "")
                    self.out(f"Episode {index}: {stopped(episode.result.error)} Take discarded{after}.")
                    continue
                run, success, extra = episode.run, episode.result.success, {"is_success": episode.result.success,
                                                                           "scene_seed": spec.scene_seed}
            else:
                self.out(f"Episode {index}: {cfg.task}")
                if self.recorder is not None:
                    self.recorder.start_episode(cfg.task)
                run = loop.run_episode(cfg.task, max_ticks, on_tick=on_tick)
                success, extra = None, {}
            self.outcome.runs.append(run)
            self.outcome.successes.append(success)
            self._report_episode(index, run, success)
            self._save_episode(run, extra)
            if run.error is not None:
                self.outcome.exit_code = EXIT_FAULT
                self.outcome.message = stopped(run.error) + " The arm held its last target; torque off on exit."
                return
            if cfg.virtual is None and index + 1 < r.episodes and r.reset_time_s > 0:
                self.out(f"Reset the scene: {r.reset_time_s:g} s (the arm holds its pose).")
                time.sleep(r.reset_time_s)

    def _tick_callback(self):
        callbacks = []
        if self.recorder is not None:
            callbacks.append(self.recorder.on_tick)
        if self.cfg.display_data:
            from lerobot.utils.visualization_utils import init_rerun, log_rerun_data

            init_rerun(session_name="lerobot_vla_rollout")
            callbacks.append(lambda tick, observation, sent, extras: log_rerun_data(observation=observation,
                                                                                   action=sent))
        if not callbacks:
            return None

        def on_tick(tick, observation, sent, extras):
            for callback in callbacks:
                callback(tick, observation, sent, extras)

        return on_tick

    def _report_episode(self, index: int, run, success: bool | None) -> None:
        s = run.summary()
        outcome = "" if success is None else ("success, " if success else "no success, ")
        latency = "" if s["latency_p50_ms"] is None else f", latency p50 {s['latency_p50_ms']:.1f} ms"
        self.out(f"Episode {index} done: {outcome}{run.ticks} ticks, {s['achieved_hz']:.1f} Hz, {s['chunks']} "
                 f"chunks, {run.stalls} stalls{latency}" + (f"\n  {run.error}" if run.error else ""))

    def _save_episode(self, run, extra: dict) -> None:
        if self.recorder is None:
            return
        s = run.summary()
        nan = float("nan")
        measurements = {key: (nan if s[key] is None else s[key]) for key in (
            "achieved_hz", "wall_hz", "period_p99_ms", "period_max_ms", "stalls", "dry_ticks", "overruns",
            "startup_ticks", "chunks", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "interventions")}
        metadata = {**extra, "rollout": {**measurements, "inference": self.cfg.rollout.inference,
                                         "clock": run.timing.clock, "policy_fault": run.error or ""}}
        self.recorder.save_episode(metadata)

    def _discard_take(self) -> None:
        if self.recorder is not None:
            self.recorder.discard_episode()

    # -- teardown ---------------------------------------------------------------------------------------------

    def _shut_down(self) -> None:
        """Inference stopped, torque off and ports closed, the dataset finished, then summary and plots."""
        if self.runner is not None:
            self.runner.close()
        try:
            if self.rig is None and self.teleop is not None and self.teleop.is_connected:
                self.teleop.disconnect()
            if self.rig is not None:
                self.rig.__exit__()
            elif self.robot is not None and self.robot.bus.is_connected:
                self.robot.disconnect()
        except Exception as exc:  # noqa: BLE001 - report, then finish the dataset and the summary
            logger.error("Disconnecting %s failed: %s. If the arm still holds torque, switch off its power supply.",
                         self.robot, exc)
        if self.recorder is not None:
            try:
                self.outcome.dataset_episodes = self.recorder.close()
            except Exception as exc:  # noqa: BLE001 - a failed save is reported, the rest stays on disk
                self.outcome.exit_code = EXIT_FAULT
                self.outcome.message = (self.outcome.message + " " if self.outcome.message else "") + str(exc)
        if self.outcome.runs:
            self._write_summary()

    def _write_summary(self) -> None:
        from lerobot_vla_plugin.rollout.plots import write_plots
        from lerobot_vla_plugin.rollout.report import format_summary, summarize, write_json

        cfg, outcome = self.cfg, self.outcome
        policy = getattr(getattr(self.runner, "loaded", None), "policy", None)
        threshold = getattr(policy, "uncertainty_threshold", None)
        settings = {
            "policy_path": str(cfg.policy.pretrained_path), "policy_type": cfg.policy.type,
            "robot": self.robot.name if self.robot is not None else None, "virtual": cfg.virtual,
            "task": cfg.task, "episodes": cfg.rollout.episodes, "episode_time_s": cfg.rollout.episode_time_s,
            "fps": cfg.rollout.fps, "inference": cfg.rollout.inference, "merge": cfg.rollout.merge,
            "clock": "lockstep" if uses_lockstep(cfg) else "wall",
            # A synchronous chunk starts from an empty queue: there is no remainder for RTC to continue.
            "rtc": bool(getattr(self.runner, "use_rtc", False)) and cfg.rollout.inference == "async",
            "uncertainty_scored": bool(getattr(policy, "scores_uncertainty", False)),
            "uncertainty_threshold": threshold,
            "hand_off_after_s": cfg.rollout.hand_off_after_s if self.hand_off is not None else None,
            "dataset_root": None if outcome.dataset_root is None else str(outcome.dataset_root),
        }
        outcome.summary = summarize(outcome.runs, outcome.successes, settings)
        outcome.summary["servo_faults"] = list(outcome.servo_faults)
        folder = output_dir(cfg)
        note = "" if cfg.rollout.uncertainty else "(uncertainty scoring off: --rollout.uncertainty false)"
        outcome.files = [write_json(folder / "rollout_summary.json", outcome.summary),
                         *write_plots(folder, outcome.runs, 1.0 / cfg.rollout.fps, threshold, note)]
        self.out("\n" + format_summary(outcome.summary))
        if outcome.dataset_root is not None:
            self.out(f"Dataset: {outcome.dataset_episodes} episodes in {outcome.dataset_root}")
        self.out("Summary and plots: " + ", ".join(str(path) for path in outcome.files))


# -- command line -------------------------------------------------------------------------------------------------

def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options are LeRobot-style (`--robot.type=...`, `--policy.path=...`) and parsed by draccus in `run`."""
    pass_options_through(parser, "rollout_options")


def run(args: argparse.Namespace) -> int:
    from lerobot.utils.utils import init_logging

    init_logging()
    try:
        cfg = parse_config(args.rollout_options)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from lerobot_vla_plugin.rollout.loaded_policy import use_inference_threads

    use_inference_threads()
    outcome = Rollout(cfg).run()
    if outcome.message:
        print(("error: " if outcome.exit_code not in (EXIT_OK, EXIT_INTERRUPTED) else "") + outcome.message,
              file=sys.stderr, flush=True)
    return outcome.exit_code
