"""The recording session of `lerobot-vla record`: devices, dataset, keys and the episode loop.

A session ends in a `SessionResult`, never in a traceback: device failures, failed saves and unusable datasets
become a message and an exit code, and every episode the session reported saved is committed on disk.
"""

from __future__ import annotations

import functools
import logging
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lerobot.robots.config import RobotConfig
from lerobot.teleoperators.config import TeleoperatorConfig

from ..sim.scene_seeds import recording_scene_seed
from ..sim.features import (
    OBJECT_NAMED_POSITIONS_FEATURE,
    OBJECT_START_POSITIONS_FEATURE,
    TRAINING_ONLY_FEATURES,
    SimObjectFrames,
    sim_object_dataset_features,
)
from .cadence import CadenceMeter, CadenceReport
from .keyboard import KEY_HELP, EpisodeEvents, GripperSqueezeTrigger, KeyboardControl
from .record_config import RecordConfig, dataset_root, task_keys, validate

# Training-only virtual-arm features added after the first datasets were recorded: resuming such a dataset goes on
# without them.
_LATER_SIM_FEATURES = (OBJECT_START_POSITIONS_FEATURE, OBJECT_NAMED_POSITIONS_FEATURE)

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAULT, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_VIRTUAL_SETTLE_TICKS = 3
# successes_only: this many dropped takes in a row means the demonstrations do not work here at all.
_MAX_FAILED_GENERATIONS_IN_ROW = 20


class RecordingFault(RuntimeError):
    """The session cannot go on (servo fault, camera failure, failed save); finished episodes are kept."""


class ServoFault(RecordingFault):
    """A follower servo's protection cut its torque during the take (overload, overheating, supply)."""


@dataclass
class _QueuedSave:
    """A take handed to the writer, told "saved" only once the writer committed it."""

    announced_episode: int  # as in "Recording episode N"; an earlier failed save moves the take down one index
    description: str

    def renumbered(self, episode_index: int) -> str:
        return "" if episode_index == self.announced_episode else f" (announced as episode {self.announced_episode})"


@dataclass
class SessionResult:
    root: Path | None
    saved: int = 0  # committed on disk
    failed: int = 0  # saves that failed and were rolled back
    rejected: int = 0
    discarded: int = 0
    failed_task: int = 0  # virtual takes dropped with successes_only: the task failed or a servo faulted
    total_episodes: int = 0
    exit_code: int = EXIT_OK
    message: str = ""
    reports: list[CadenceReport] = field(default_factory=list)


class RecordSession:
    """One recording session: devices, dataset, keys, episodes. `run()` returns a `SessionResult`.

    `on_frame(session, frame_number)` is called after each recorded frame (tests use it to inject faults).
    On the virtual arm, `demonstration_planner` replaces the scripted operator's plans (VirtualSO101's
    `demonstration_planner`) and `successes_only` keeps only takes that succeed, each failure moving on to a new
    scene: the data generation of `lerobot-vla multiply`.
    """

    def __init__(self, cfg: RecordConfig, *, out: Callable[[str], None] | None = None,
                 on_frame: Callable[[RecordSession, int], None] | None = None,
                 demonstration_planner=None, successes_only: bool = False):
        validate(cfg)
        self.cfg = cfg
        if cfg.virtual is not None and not cfg.dataset.repo_id:
            cfg.dataset.repo_id = f"local/{cfg.virtual}_virtual_demo"
        self.out = out or (lambda text: print(text, flush=True))
        self.on_frame = on_frame
        self.events = EpisodeEvents()
        self.virtual = None
        self.robot = None
        self.teleop = None
        self.recorder = None
        self.features: dict = {}
        self.lockstep = False
        self._temp_dirs: list[Path] = []
        self._squeeze: GripperSqueezeTrigger | None = None
        self._finished_take: tuple[int, str, CadenceReport] | None = None
        self._queued_saves: deque[_QueuedSave] = deque()
        self._unreported_save_failures: list[str] = []
        self._result = SessionResult(root=None)
        self._ticks_before = 0
        self._demonstration_planner = demonstration_planner
        self._successes_only = successes_only
        self._skipped_scenes = 0  # scenes whose take failed and was dropped (successes_only)
        self._failed_in_row = 0
        self._scene_seed: int | None = None

    # -- setup ------------------------------------------------------------------------------------------------

    def _start_virtual_arm(self) -> tuple[RobotConfig, TeleoperatorConfig]:
        """The virtual SO-101 in this process, and configs of our registered arms and cameras on it."""
        from lerobot_vla_plugin.cameras.config_virtual_camera import VirtualCameraConfig
        from lerobot_vla_plugin.emulator.virtual_arm import VirtualSO101, plan_scripted_demonstration
        from lerobot_vla_plugin.arms.virtual_so101 import virtual_follower_config
        from lerobot_vla_plugin.teleoperators.so_leader.config_so_leader import (
            VlaSO101LeaderConfig,
        )

        cfg = self.cfg
        self.lockstep = cfg.virtual_clock == "lockstep"
        self.virtual = VirtualSO101(lockstep=self.lockstep, control_hz=cfg.dataset.fps, leader=True,
                                    task=task_keys(cfg)[0], seed=cfg.seed, camera_socket=None).start()
        planner = self._demonstration_planner
        if planner is None and cfg.virtual_reach_detour_m > 0:
            planner = functools.partial(plan_scripted_demonstration, reach_detour_m=cfg.virtual_reach_detour_m)
        self.virtual.demonstration_planner = planner
        self.virtual.missed_grasp_start_fraction = cfg.virtual_missed_grasp_starts
        calibration = Path(tempfile.mkdtemp(prefix="lerobot-vla-virtual-calibration-"))
        self._temp_dirs.append(calibration)
        self.virtual.write_calibration_file(calibration / "teleoperators" / "virtual_leader.json", "leader")
        cameras = {name.strip(): VirtualCameraConfig(camera=name.strip(), width=cfg.camera_width,
                                                     height=cfg.camera_height,
                                                     fps=cfg.virtual_camera_fps or cfg.dataset.fps)
                   for name in cfg.virtual_cameras.split(",") if name.strip()}
        robot = virtual_follower_config(self.virtual, calibration / "robots", cameras)
        teleop = VlaSO101LeaderConfig(port=self.virtual.leader_port, id="virtual_leader",
                                      calibration_dir=calibration / "teleoperators")
        return robot, teleop

    def _dataset_features(self) -> dict:
        """Exactly what lerobot-record builds from the robot (same functions, default processors); the virtual
        arm adds where its objects are."""
        from lerobot.datasets.pipeline_features import (
            aggregate_pipeline_dataset_features,
            create_initial_features,
        )
        from lerobot.datasets.utils import combine_feature_dicts
        from lerobot.processor import make_default_processors

        teleop_processor, _, observation_processor = make_default_processors()
        features = combine_feature_dicts(
            aggregate_pipeline_dataset_features(
                pipeline=teleop_processor, initial_features=create_initial_features(action=self.robot.action_features),
                use_videos=self.cfg.dataset.video),
            aggregate_pipeline_dataset_features(
                pipeline=observation_processor,
                initial_features=create_initial_features(observation=self.robot.observation_features),
                use_videos=self.cfg.dataset.video),
        )
        if self.virtual is not None:  # training-only, see sim/features.py
            features.update(sim_object_dataset_features())
        return features

    def _missing_calibration(self) -> str:
        """A missing calibration file would end in LeRobot's calibration prompt (EOFError without a terminal):
        name the file and the command that creates it instead. The virtual arm writes its own."""
        from lerobot_vla_plugin.arms.calibration_file import missing_calibration_message

        if self.virtual is not None:
            return ""
        found = [missing_calibration_message(kind, device)
                 for kind, device in (("robot", self.robot), ("teleop", self.teleop))]
        return " ".join(message for message in found if message)

    def _check_dataset(self, root: Path) -> None:
        """Resume opens (and repairs) the dataset now; a new dataset is only checked, and created after the
        arms are connected. A dataset holding no episode is started afresh, also under --resume."""
        from lerobot_vla_plugin.recording import CrashSafeRecorder
        from lerobot_vla_plugin.recording.dataset_writer import holds_no_episodes

        if self.cfg.resume and holds_no_episodes(root):
            self.out(f"{root} holds no episode yet: starting it afresh with this session's settings.")
            self.cfg.resume = False
        if self.cfg.resume:
            self._open_dataset(root)
        else:
            CrashSafeRecorder.check_new_root(root)

    def _open_dataset(self, root: Path) -> None:
        from lerobot_vla_plugin.recording import CrashSafeRecorder

        ds = self.cfg.dataset
        cameras = len(getattr(self.robot, "cameras", {}) or {})
        options = {"fps": ds.fps, "robot_type": self.robot.name, "features": self.features, "use_videos": ds.video,
                   "vcodec": ds.vcodec, "encoder_threads": ds.encoder_threads,
                   "image_writer_threads": max(1, ds.num_image_writer_threads_per_camera * cameras)}
        if self.cfg.resume:
            options["features"] = self.features = self._features_to_resume(root)
            self.recorder = CrashSafeRecorder.resume(ds.repo_id, root, **options)
            self.out(f"Resuming {root}: {self.recorder.num_episodes} episodes already recorded.")
        else:
            self.recorder = CrashSafeRecorder.create(ds.repo_id, root, **options)

    def _features_to_resume(self, root: Path) -> dict:
        """A virtual-arm dataset recorded before a later training-only feature existed goes on without it."""
        from lerobot.datasets.utils import INFO_PATH, load_info

        if not set(_LATER_SIM_FEATURES) & set(self.features) or not (root / INFO_PATH).is_file():
            return self.features
        try:
            recorded = load_info(root)["features"]
        except (ValueError, KeyError, TypeError):
            return self.features  # a damaged info.json: resuming reports it, with the fix
        return {key: ft for key, ft in self.features.items() if key not in _LATER_SIM_FEATURES or key in recorded}

    # -- the session ------------------------------------------------------------------------------------------

    def run(self) -> SessionResult:
        from lerobot.robots.utils import make_robot_from_config
        from lerobot.teleoperators.utils import make_teleoperator_from_config

        from lerobot_vla_plugin.recording import DatasetCorruptError, DatasetMismatchError, DatasetRootError

        cfg = self.cfg
        result = self._result
        keyboard = None
        try:
            if cfg.virtual is not None:
                robot_cfg, teleop_cfg = self._start_virtual_arm()
            else:
                robot_cfg, teleop_cfg = cfg.robot, cfg.teleop
            self.robot = make_robot_from_config(robot_cfg)
            self.teleop = make_teleoperator_from_config(teleop_cfg)
            self.features = self._dataset_features()
            result.root = dataset_root(cfg)
            problem = self._missing_calibration()
            if problem:
                result.exit_code, result.message = EXIT_USAGE, problem
                return result
            try:
                # Checked before connecting (a bad root must not move the arm), created only after: a start that
                # fails at the arms leaves nothing behind.
                self._check_dataset(result.root)
            except (DatasetRootError, DatasetMismatchError) as exc:
                result.exit_code, result.message = EXIT_USAGE, str(exc)
                return result
            except DatasetCorruptError as exc:
                result.exit_code, result.message = EXIT_FAULT, str(exc)
                return result
            for role, device in (("robot", self.robot), ("teleoperator", self.teleop)):
                try:
                    device.connect()
                except Exception as exc:  # shown with the device named; `finally` releases the rest
                    advice = (_VIRTUAL_ARM_HINT if self.virtual is not None
                              else "Check its port (`lerobot-find-port`), cable and power.")
                    raise RecordingFault(f"Could not connect the {role} {device} ({type(exc).__name__}: {exc}). "
                                         f"{advice}") from exc
            if self.recorder is None:
                try:
                    self._open_dataset(result.root)
                except (DatasetRootError, DatasetMismatchError) as exc:
                    result.exit_code, result.message = EXIT_USAGE, str(exc)
                    return result
            if cfg.squeeze_trigger:
                self._squeeze = GripperSqueezeTrigger(lambda: self.events.request("next", "gripper squeeze"))
            keyboard = KeyboardControl(self.events, cfg.keyboard, echo=self.out)
            listeners = keyboard.start()
            if listeners:
                self.out(f"Keys: {KEY_HELP} (via {', '.join(listeners)})")
            elif cfg.keyboard != "none":
                self.out("No episode keys: stdin is not a terminal and no X display for pynput.")
            self._record_episodes(result)
        except KeyboardInterrupt:
            result.exit_code, result.message = EXIT_INTERRUPTED, "Interrupted (Ctrl-C)."
            self._save_finished_take(result)
            self._discard_take(result)
        except RecordingFault as exc:
            result.exit_code, result.message = EXIT_FAULT, str(exc)
            self._save_finished_take(result)
        finally:
            if keyboard is not None:
                keyboard.stop()
            self._disconnect()
            self._close_dataset(result)
            if self.virtual is not None:
                self.virtual.stop()
            for folder in self._temp_dirs:
                shutil.rmtree(folder, ignore_errors=True)
        return result

    def _record_episodes(self, result: SessionResult) -> None:
        cfg, ds = self.cfg, self.cfg.dataset
        rejected_in_row = 0
        while self._saved_or_saving(result) < ds.num_episodes and not self.events.stop:
            self._report_saves()
            if self._unreported_save_failures:
                # The take that was running when the save failed is kept (saved above); then the session stops.
                raise RecordingFault(self._save_failure_message() + self._take_lost_note(recording=False))
            episode = self.recorder.num_episodes + self.recorder.pending_episodes
            task_key, task = self._task_for(episode)
            if self.virtual is not None:
                self._scene_seed = recording_scene_seed(cfg.seed, episode + self._skipped_scenes)
                self._prepare_virtual_episode(task_key, self._scene_seed)
            self._say(f"Recording episode {episode}: {task}")
            meter = CadenceMeter(ds.fps, list(getattr(self.robot, "cameras", {}) or {}),
                                 data_clock=self._data_clock(), lockstep=self.lockstep)
            self.events.start_phase()
            try:
                frames = self._control_loop(recording=True, duration_s=ds.episode_time_s, task=task, meter=meter,
                                            until=self._demonstration_finished())
            except ServoFault as fault:
                if not (self._successes_only and self.virtual is not None):
                    raise
                self._drop_failed_generation(result, episode, f"a servo fault ({fault.__cause__})")
                # As an operator would: power-cycle the arm (the fault clears) and connect again.
                self.robot.disconnect()
                self.virtual.power_cycle_follower()
                self.robot.connect()
                continue
            rerecord = self.events.take_rerecord()
            if frames == 0 or rerecord:
                self._discard_take(result)
                self.out(f"Episode {episode}: {'re-recording' if rerecord else 'no frames recorded'}.")
            else:
                report = meter.report()
                result.reports.append(report)
                problems = report.problems(cfg.min_hz)
                if problems:
                    self._discard_take(result, rejected=True)
                    rejected_in_row += 1
                    reason = "; ".join(problems)
                    self.out(f"Episode {episode}: take REJECTED, {reason} (below --min-hz {cfg.min_hz:g}); "
                             f"re-recording ({rejected_in_row}/{cfg.max_retakes + 1}).")
                    if rejected_in_row > cfg.max_retakes:
                        raise RecordingFault(
                            f"{rejected_in_row} takes in a row fell below --min-hz {cfg.min_hz:g} ({reason}). "
                            "Lower the camera resolution or count, close other programs, check USB bandwidth "
                            "(MJPG cameras), or lower --dataset.fps.")
                elif self._successes_only and self.virtual is not None and not self.virtual.is_success():
                    self._drop_failed_generation(result, episode, "the task failed")
                else:
                    rejected_in_row = self._failed_in_row = 0
                    self._finished_take = (episode, task, report)
                    last = self._saved_or_saving(result) + 1 >= ds.num_episodes
                    if self.virtual is not None or last or self.events.stop:
                        self._save_finished_take(result)
                    else:
                        # Saved after the reset, like lerobot-record: ← during the reset discards this take.
                        self.out(f"Episode {episode} recorded: {report.frames} frames, {report.summary()}; saved "
                                 "after the reset (←/r during the reset discards it).")
                        self._reset_phase()
                        if self.events.take_rerecord():
                            self._finished_take = None
                            self._discard_take(result)
                            self.out(f"Episode {episode}: discarded during the reset; re-recording.")
                        else:
                            self._save_finished_take(result)
                        continue
            if self.events.stop or self._saved_or_saving(result) >= ds.num_episodes:
                break
            self._reset_phase()

    def _drop_failed_generation(self, result: SessionResult, episode: int, why: str) -> None:
        """successes_only: the take is not kept and the next attempt gets the next scene."""
        if self.recorder.current_episode_frames:
            self.recorder.discard_episode()
        result.failed_task += 1
        self._skipped_scenes += 1
        self._failed_in_row += 1
        self.out(f"Episode {episode}: {why} (scene seed {self._scene_seed}); dropped, next scene.")
        if self._failed_in_row >= _MAX_FAILED_GENERATIONS_IN_ROW:
            raise RecordingFault(f"{self._failed_in_row} generated takes in a row failed; the demonstrations do not "
                                 "carry over to these scenes. Check the source episodes (dataset-report) and that "
                                 "they succeed when replayed on their own scenes.")

    def _save_finished_take(self, result: SessionResult) -> None:
        """Save the take that ended before the reset phase (also when the session ends during that reset)."""
        if self._finished_take is not None:
            episode, task, report = self._finished_take
            self._finished_take = None
            self._save_take(result, episode, task, report)

    def _saved_or_saving(self, result: SessionResult) -> int:
        return result.saved + len(self._queued_saves)

    def _save_take(self, result: SessionResult, episode: int, task: str, report: CadenceReport) -> None:
        """Hand the take to the background writer; "saved" is said by `_report_saves` once it is committed."""
        metadata = report.metadata()
        success = ""
        if self.virtual is not None:
            is_success = self.virtual.is_success()
            metadata.update(is_success=is_success, scene_seed=self._scene_seed, **self.virtual.demonstration_provenance())
            success = ", success" if is_success else ", FAILED task"
            if self.virtual.start_pose != "rest":
                success += f", started after a missed grasp ({self.virtual.start_pose})"
        for warning in report.warnings():
            self.out(f"  warning: episode {episode}: {warning}")
        index = self.recorder.save_episode(metadata, wait=False)
        seconds = report.frames / report.target_fps
        queued = _QueuedSave(episode, f"{task!r}, {report.frames} frames ({seconds:.1f} s), "
                                      f"{report.summary()}{success}")
        self._queued_saves.append(queued)
        self.out(f"Episode {index}{queued.renumbered(index)}: saving in the background.")

    def _report_saves(self, wait: bool = False) -> None:
        """Say which background saves committed or failed (`wait`: first wait for all of them)."""
        result = self._result
        for outcome in self.recorder.finished_saves(wait=wait):
            queued = self._queued_saves.popleft()
            index = outcome.episode_index
            renumbered = queued.renumbered(index)
            if outcome.saved:
                result.saved += 1
                self.out(f"Episode {index} saved{renumbered}: {queued.description}. "
                         f"[{result.saved}/{self.cfg.dataset.num_episodes} this session]")
            else:
                result.failed += 1
                failure = f"episode {index}{renumbered} could not be saved ({outcome.error}) and was rolled back"
                self._unreported_save_failures.append(failure)
                self.out(f"Episode {index}{renumbered}: SAVING FAILED ({outcome.error}); rolled back.")

    def _save_failure_message(self) -> str:
        failures, self._unreported_save_failures = self._unreported_save_failures, []
        return f"Saving failed: {'; '.join(failures)}."

    def _discard_take(self, result: SessionResult, rejected: bool = False) -> None:
        if self.recorder is None or self.recorder.current_episode_frames == 0:
            return
        self.recorder.discard_episode()
        if rejected:
            result.rejected += 1
        else:
            result.discarded += 1

    def _reset_phase(self) -> None:
        if self.virtual is not None:
            return  # the next episode resets the scene itself
        seconds = self.cfg.dataset.reset_time_s
        if seconds <= 0:
            return
        self._say(f"Reset the environment ({seconds:g} s; → or n when ready)")
        self.events.start_phase()
        self._control_loop(recording=False, duration_s=seconds)

    def _task_for(self, episode: int) -> tuple[str | None, str]:
        if self.virtual is None:
            return None, self.cfg.dataset.single_task
        from lerobot_vla_plugin.sim.so101 import TASKS

        keys = task_keys(self.cfg)
        key = keys[episode % len(keys)]
        return key, TASKS[key]

    def _prepare_virtual_episode(self, task_key: str, seed: int) -> None:
        """New scene and plan, then a few unrecorded control ticks: the follower's last positions were read before
        the scene reset moved the arm, so its first goal is checked against stale positions."""
        self.virtual.new_episode(task_key, seed=seed)
        for _ in range(_VIRTUAL_SETTLE_TICKS):
            self._tick(recording=False, frame=0)

    def _demonstration_finished(self) -> Callable[[], bool] | None:
        if self.virtual is None:
            return None
        virtual, clock, settle_s = self.virtual, self._data_clock(), self.cfg.settle_s
        finished_at: list[float] = []

        def finished() -> bool:
            if not finished_at:
                if virtual.demonstration_done:
                    finished_at.append(clock())
                return False
            return clock() - finished_at[0] >= settle_s

        return finished

    def _data_clock(self) -> Callable[[], float]:
        """The clock the recorded data lives on: simulated time for a lockstep arm, the wall clock otherwise."""
        if self.lockstep:
            # Ticks, not MuJoCo time: physics advances in whole substeps, a tick is exactly one period on average.
            arm = self.virtual.arm
            return lambda: arm.ticks * arm.control_period_s
        return time.perf_counter

    def _control_loop(self, *, recording: bool, duration_s: float, task: str | None = None,
                      meter: CadenceMeter | None = None, until: Callable[[], bool] | None = None) -> int:
        """observation → teleop action → robot, like lerobot-record; frames go to the writer's queue."""
        from lerobot.datasets.utils import build_dataset_frame
        from lerobot.utils.constants import ACTION, OBS_STR

        pace = self.cfg.realtime if self.cfg.realtime is not None else not self.lockstep
        period = 1.0 / self.cfg.dataset.fps
        clock = self._data_clock()
        recorder = self.recorder
        # The robot's own features, built from its observation; the virtual arm's object positions come from it.
        features = {key: ft for key, ft in recorder.features.items() if key not in TRAINING_ONLY_FEATURES}
        sim_objects = SimObjectFrames(self.virtual) if self.virtual is not None else None
        arm = self.virtual.arm if (self.virtual is not None and self.lockstep) else None
        start = clock()
        deadline = time.perf_counter()
        frames = 0
        # A little tolerance so floating-point sums of periods do not add a frame.
        while not self.events.exit_early and clock() - start < duration_s - 1e-6:
            if until is not None and until():
                break
            self._report_saves()  # "saved" as soon as the writer committed it, not a take later
            loop_start = time.perf_counter()
            data_time = clock()
            ticks_before = arm.ticks if arm is not None else 0
            observation, action = self._tick(recording, frames)
            if self._squeeze is not None:
                self._squeeze.observe(action, loop_start)
            if recording:
                write_start = time.perf_counter()
                frame = {**build_dataset_frame(features, observation, prefix=OBS_STR),
                         **build_dataset_frame(features, action, prefix=ACTION), "task": task}
                if sim_objects is not None:  # this call's first recorded frame is the episode's start
                    frame.update(sim_objects.values(recorder.features))
                recorder.add_frame(frame)
                meter.add_recorder_time(time.perf_counter() - write_start)
                meter.frame(observation, loop_start, data_time)
                if arm is not None:
                    meter.extra_ticks += max(0, arm.ticks - ticks_before - 1)
                frames += 1
                if self.on_frame is not None:
                    self.on_frame(self, frames)
            if pace:
                deadline = max(deadline + period, time.perf_counter() - period)
                remaining = deadline - time.perf_counter()
                if remaining > 0:
                    time.sleep(remaining)
        return frames

    def _tick(self, recording: bool, frame: int) -> tuple[dict, dict]:
        """One control tick; any device failure becomes a `RecordingFault` that says what failed and what is kept."""
        from lerobot_vla_plugin.arms.health import SafetyStop

        step = "reading the robot's observation"
        try:
            observation = self.robot.get_observation()
            step = "reading the leader arm (teleoperator)"
            action = self.teleop.get_action()
            step = "sending the action to the robot"
            self.robot.send_action(action)
            return observation, action
        except SafetyStop as exc:
            raise ServoFault(f"{exc}{self._take_lost_note(recording)}") from exc
        except Exception as exc:
            logger.debug("control tick failed", exc_info=True)
            hints = _VIRTUAL_FAILURE_HINTS if self.virtual is not None else _FAILURE_HINTS
            hint = hints.get(step, "")
            raise RecordingFault(f"{step[0].upper()}{step[1:]} failed at frame {frame} ({type(exc).__name__}: "
                                 f"{exc}). {hint}{self._take_lost_note(recording)}") from exc

    def _take_lost_note(self, recording: bool) -> str:
        kept = self.recorder.num_episodes + self.recorder.pending_episodes if self.recorder else 0
        kept += self._finished_take is not None  # ended before this reset phase; saved on the way out
        if recording:
            return f" The episode in progress is discarded; the {kept} finished episodes are kept."
        return f" The {kept} finished episodes are kept."

    # -- teardown ---------------------------------------------------------------------------------------------

    def _disconnect(self) -> None:
        """Teleop first, then the robot (torque off) even if a camera died and `is_connected` says False."""
        from lerobot.utils.errors import DeviceNotConnectedError

        for device in (self.teleop, self.robot):
            if device is None:
                continue
            try:
                try:
                    device.disconnect()
                except DeviceNotConnectedError:
                    release = getattr(device, "release", None)
                    bus = getattr(device, "bus", None)
                    if release is not None and bus is not None and bus.is_connected:
                        release("the recording session ended after a device failed")
            except Exception as exc:  # noqa: BLE001 - keep going: the follower must still be released
                logger.error("Disconnecting %s failed: %s. If the arm still holds torque, switch off its power "
                             "supply.", device, exc)

    def _close_dataset(self, result: SessionResult) -> None:
        if self.recorder is None:
            result.total_episodes = _episodes_on_disk(result.root)
            return
        self._report_saves(wait=True)
        self.recorder.close()  # every save's outcome was collected above: nothing is left to raise
        if self._unreported_save_failures:
            result.exit_code = EXIT_FAULT
            result.message = (result.message + " " if result.message else "") + self._save_failure_message()
        result.total_episodes = self.recorder.num_episodes

    def _say(self, text: str) -> None:
        self.out(text)
        if self.cfg.play_sounds:
            from lerobot.utils.utils import log_say

            log_say(text, play_sounds=True)


def _episodes_on_disk(root: Path | None) -> int:
    """Finished episodes of the dataset at `root` (0 when there is none), for a session that never opened it."""
    import json

    try:
        return int(json.loads((root / "meta" / "info.json").read_text())["total_episodes"])
    except (TypeError, OSError, ValueError, KeyError):
        return 0


# The virtual arm has no cables or power supply: what fails there is the emulator, usually starved of CPU.
_VIRTUAL_ARM_HINT = ("The virtual arm runs in this process: its emulated servos answer late when the machine is "
                     "overloaded. Close other heavy programs and resume with --resume.")
_VIRTUAL_FAILURE_HINTS = {
    "reading the robot's observation": "A virtual camera that stopped rendering or an emulated servo that stopped "
                                       "answering is the usual cause. " + _VIRTUAL_ARM_HINT,
    "reading the leader arm (teleoperator)": _VIRTUAL_ARM_HINT,
    "sending the action to the robot": _VIRTUAL_ARM_HINT,
}
_FAILURE_HINTS = {
    "reading the robot's observation": "A camera that stops delivering frames (unplugged, USB bandwidth, hung "
                                       "driver) or a servo that stops answering is the usual cause: check cables and "
                                       "power, then run `lerobot-find-cameras` or `lerobot-vla doctor`.",
    "reading the leader arm (teleoperator)": "Check the leader's cable and power supply.",
    "sending the action to the robot": "Check the follower's cable and power supply.",
}
