"""`lerobot-vla record`: leader-follower recording that never loses a finished episode.

Same options and control loop as `lerobot-record` (observation → teleop action → robot → frame), with what hurts
most when collecting data fixed:

- every finished episode is durable on disk the moment it is saved (`recording.CrashSafeRecorder`); a crash, a
  failing camera or a silent servo ends the session with a message naming the fault and loses only the take in
  progress; `--resume` continues, refusing a different robot, fps, features or cameras;
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
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lerobot.robots.config import RobotConfig
from lerobot.teleoperators.config import TeleoperatorConfig

from .cadence import CadenceMeter, CadenceReport
from .keyboard import KEY_HELP, EpisodeEvents, GripperSqueezeTrigger, KeyboardControl

logger = logging.getLogger(__name__)

VIRTUAL_ARMS = ("so101",)
EXIT_OK, EXIT_FAULT, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# Lockstep: get_observation must reuse the positions the control tick just read; a second read would be a
# second tick and move simulated time twice per frame.
_LOCKSTEP_OBSERVATION_REUSE_MS = 3_600_000.0
_VIRTUAL_SETTLE_TICKS = 3
_VIRTUAL_BUS_TIMEOUT_MS = 1000


@dataclass
class RecordDatasetConfig:
    # '{hf_username}/{dataset_name}'; with --virtual it defaults to local/so101_virtual_demo.
    repo_id: str | None = None
    # The task said to the policy (e.g. "put the cube in the bowl"); with --virtual the tasks come from --tasks.
    single_task: str | None = None
    # Where the dataset lives; default $HF_LEROBOT_HOME/<repo_id>, like lerobot-record.
    root: str | None = None
    fps: int = 30
    episode_time_s: float = 60.0
    # Teleoperation continues, nothing recorded. Ignored with --virtual (the scene resets itself).
    reset_time_s: float = 60.0
    # Episodes to record in this session (like lerobot-record, also with --resume).
    num_episodes: int = 50
    video: bool = True
    vcodec: str = "libsvtav1"
    encoder_threads: int | None = None
    num_image_writer_threads_per_camera: int = 4
    # Upload to the Hugging Face Hub at the end of the session. Off by default.
    push_to_hub: bool = False
    private: bool = False
    tags: list[str] | None = None


@dataclass
class RecordConfig:
    dataset: RecordDatasetConfig = field(default_factory=RecordDatasetConfig)
    robot: RobotConfig | None = None
    teleop: TeleoperatorConfig | None = None
    # Continue an existing dataset (after a crash or a normal stop).
    resume: bool = False
    # Reject (discard and re-record) takes whose control rate or any camera's fps is below this.
    min_hz: float | None = None
    # Consecutive rejected takes after which the session stops instead of retrying forever.
    max_retakes: int = 3
    # Episode keys: auto (terminal, plus pynput on an X desktop), terminal, pynput or none.
    keyboard: str = "auto"
    # Hands-free "next episode": a double squeeze of the leader's gripper trigger (Koch leader).
    squeeze_trigger: bool = False
    # Speak the prompts (LeRobot's log_say); they are always printed.
    play_sounds: bool = False
    # Pace the loop at --dataset.fps. Default: yes, except for a lockstep virtual arm (its data is exact anyway).
    realtime: bool | None = None
    # Run `lerobot-vla dataset-report` on the dataset at the end of the session.
    report: bool = True
    # Hands-free recording from the virtual arm (so101): scripted operator, real teleop path, simulated cameras.
    virtual: str | None = None
    # --virtual: task keys alternated episode by episode (red, blue).
    tasks: str = "red,blue"
    # --virtual: lockstep (exact data at any machine speed) or wall (simulated time follows the wall clock).
    virtual_clock: str = "lockstep"
    virtual_cameras: str = "front,wrist"
    camera_width: int = 128
    camera_height: int = 96
    # --virtual: camera frame rate (default --dataset.fps); only matters with --virtual_clock=wall.
    virtual_camera_fps: int | None = None
    # --virtual: scene layout and demonstration seed of episode i is seed + i.
    seed: int = 0
    # --virtual: seconds recorded after the demonstration ends, while the cube settles.
    settle_s: float = 0.5


class RecordingFault(RuntimeError):
    """The session cannot go on (servo fault, camera failure, failed save); finished episodes are kept."""


class UsageError(ValueError):
    """The options cannot work together; nothing was started."""


@dataclass
class SessionResult:
    root: Path | None
    saved: int = 0
    rejected: int = 0
    discarded: int = 0
    total_episodes: int = 0
    exit_code: int = EXIT_OK
    message: str = ""
    reports: list[CadenceReport] = field(default_factory=list)


def validate(cfg: RecordConfig) -> None:
    ds = cfg.dataset
    if cfg.virtual is not None:
        if cfg.virtual not in VIRTUAL_ARMS:
            raise UsageError(f"--virtual {cfg.virtual!r} is not available; choose one of {', '.join(VIRTUAL_ARMS)}.")
        if cfg.robot is not None or cfg.teleop is not None:
            raise UsageError("--virtual builds the robot and teleoperator itself; drop --robot.* and --teleop.*.")
        if cfg.virtual_clock not in ("lockstep", "wall"):
            raise UsageError(f"--virtual_clock must be lockstep or wall, got {cfg.virtual_clock!r}.")
        from lerobot_vla_plugin.sim.so101 import TASKS

        unknown = [t for t in task_keys(cfg) if t not in TASKS]
        if not task_keys(cfg) or unknown:
            raise UsageError(f"--tasks must list task keys among {', '.join(TASKS)} (got {cfg.tasks!r}).")
        if cfg.camera_width <= 0 or cfg.camera_height <= 0:
            raise UsageError("--camera_width and --camera_height must be positive.")
    else:
        if cfg.robot is None or cfg.teleop is None:
            raise UsageError("Give --robot.type=... and --teleop.type=... (e.g. vla_so101_follower and "
                             "vla_so101_leader), or --virtual so101 for a hands-free recording.")
        if not ds.repo_id:
            raise UsageError("--dataset.repo_id is required (e.g. --dataset.repo_id=me/pick_cube).")
        if not ds.single_task:
            raise UsageError('--dataset.single_task is required (e.g. --dataset.single_task="put the cube in the '
                             'bowl").')
    if ds.fps <= 0 or ds.num_episodes <= 0 or ds.episode_time_s <= 0 or ds.reset_time_s < 0:
        raise UsageError("--dataset.fps, --dataset.num_episodes and --dataset.episode_time_s must be positive and "
                         "--dataset.reset_time_s >= 0.")
    if cfg.min_hz is not None and not 0 < cfg.min_hz <= ds.fps:
        raise UsageError(f"--min-hz must be in (0, --dataset.fps={ds.fps}], got {cfg.min_hz}.")
    if cfg.max_retakes < 0:
        raise UsageError(f"--max_retakes must be >= 0, got {cfg.max_retakes}.")
    if cfg.keyboard not in KeyboardControl.MODES:
        raise UsageError(f"--keyboard must be one of {', '.join(KeyboardControl.MODES)}, got {cfg.keyboard!r}.")


def task_keys(cfg: RecordConfig) -> list[str]:
    return [t.strip() for t in cfg.tasks.split(",") if t.strip()]


def dataset_root(cfg: RecordConfig) -> Path:
    if cfg.dataset.root:
        return Path(cfg.dataset.root).expanduser()
    from lerobot.utils.constants import HF_LEROBOT_HOME

    return Path(HF_LEROBOT_HOME) / cfg.dataset.repo_id


class RecordSession:
    """One recording session: devices, dataset, keys, episodes. `run()` returns a `SessionResult`.

    `on_frame(session, frame_number)` is called after each recorded frame (tests use it to inject faults).
    """

    def __init__(self, cfg: RecordConfig, *, out: Callable[[str], None] | None = None,
                 on_frame: Callable[[RecordSession, int], None] | None = None):
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
        self._ticks_before = 0

    # -- setup ------------------------------------------------------------------------------------------------

    def _start_virtual_arm(self) -> tuple[RobotConfig, TeleoperatorConfig]:
        """The virtual SO-101 in this process, and configs of our registered arms and cameras on it."""
        from lerobot_vla_plugin.cameras.config_virtual_camera import VirtualCameraConfig
        from lerobot_vla_plugin.emulator.virtual_arm import VirtualSO101
        from lerobot_vla_plugin.robots.so_follower.config_so_follower import (
            VlaSO101FollowerConfig,
        )
        from lerobot_vla_plugin.teleoperators.so_leader.config_so_leader import (
            VlaSO101LeaderConfig,
        )

        cfg = self.cfg
        self.lockstep = cfg.virtual_clock == "lockstep"
        self.virtual = VirtualSO101(lockstep=self.lockstep, control_hz=cfg.dataset.fps, leader=True,
                                    task=task_keys(cfg)[0], seed=cfg.seed, camera_socket=None).start()
        calibration = Path(tempfile.mkdtemp(prefix="lerobot-vla-virtual-calibration-"))
        self._temp_dirs.append(calibration)
        self.virtual.write_calibration_file(calibration / "robots" / "virtual_follower.json", "follower")
        self.virtual.write_calibration_file(calibration / "teleoperators" / "virtual_leader.json", "leader")
        cameras = {name.strip(): VirtualCameraConfig(camera=name.strip(), width=cfg.camera_width,
                                                     height=cfg.camera_height,
                                                     fps=cfg.virtual_camera_fps or cfg.dataset.fps)
                   for name in cfg.virtual_cameras.split(",") if name.strip()}
        robot = VlaSO101FollowerConfig(
            port=self.virtual.follower_port, id="virtual_follower", calibration_dir=calibration / "robots",
            cameras=cameras,
            observation_reuse_ms=_LOCKSTEP_OBSERVATION_REUSE_MS if self.lockstep else 2.0)
        teleop = VlaSO101LeaderConfig(port=self.virtual.leader_port, id="virtual_leader",
                                      calibration_dir=calibration / "teleoperators")
        return robot, teleop

    def _dataset_features(self) -> dict:
        """Exactly what lerobot-record builds from the robot (same functions, default processors)."""
        from lerobot.datasets.pipeline_features import (
            aggregate_pipeline_dataset_features,
            create_initial_features,
        )
        from lerobot.datasets.utils import combine_feature_dicts
        from lerobot.processor import make_default_processors

        teleop_processor, _, observation_processor = make_default_processors()
        return combine_feature_dicts(
            aggregate_pipeline_dataset_features(
                pipeline=teleop_processor, initial_features=create_initial_features(action=self.robot.action_features),
                use_videos=self.cfg.dataset.video),
            aggregate_pipeline_dataset_features(
                pipeline=observation_processor,
                initial_features=create_initial_features(observation=self.robot.observation_features),
                use_videos=self.cfg.dataset.video),
        )

    def _open_dataset(self, root: Path) -> None:
        from lerobot_vla_plugin.recording import CrashSafeRecorder

        ds = self.cfg.dataset
        cameras = len(getattr(self.robot, "cameras", {}) or {})
        options = {"fps": ds.fps, "robot_type": self.robot.name, "features": self.features, "use_videos": ds.video,
                   "vcodec": ds.vcodec, "encoder_threads": ds.encoder_threads,
                   "image_writer_threads": max(1, ds.num_image_writer_threads_per_camera * cameras)}
        if self.cfg.resume:
            self.recorder = CrashSafeRecorder.resume(ds.repo_id, root, **options)
            self.out(f"Resuming {root}: {self.recorder.num_episodes} episodes already recorded.")
        else:
            self.recorder = CrashSafeRecorder.create(ds.repo_id, root, **options)

    # -- the session ------------------------------------------------------------------------------------------

    def run(self) -> SessionResult:
        from lerobot.robots.utils import make_robot_from_config
        from lerobot.teleoperators.utils import make_teleoperator_from_config

        from lerobot_vla_plugin.recording import DatasetMismatchError, DatasetRootError

        cfg = self.cfg
        result = SessionResult(root=None)
        keyboard = None
        try:
            if cfg.virtual is not None:
                robot_cfg, teleop_cfg = self._start_virtual_arm()
            else:
                robot_cfg, teleop_cfg = cfg.robot, cfg.teleop
            self.robot = make_robot_from_config(robot_cfg)
            self.teleop = make_teleoperator_from_config(teleop_cfg)
            if self.virtual is not None:
                # The emulated servos answer from threads of this process: on a busy machine a reply can wait
                # for a CPU longer than a real servo's 25 ms timeout. A longer one only delays real failures.
                for device in (self.robot, self.teleop):
                    device.bus.set_timeout(_VIRTUAL_BUS_TIMEOUT_MS)
            self.features = self._dataset_features()
            result.root = dataset_root(cfg)
            try:
                self._open_dataset(result.root)  # before connecting: a bad root must not move the arm
            except (DatasetRootError, DatasetMismatchError) as exc:
                result.exit_code, result.message = EXIT_USAGE, str(exc)
                return result
            for role, device in (("robot", self.robot), ("teleoperator", self.teleop)):
                try:
                    device.connect()
                except Exception as exc:  # shown with the device named; `finally` releases the rest
                    raise RecordingFault(f"Could not connect the {role} {device} ({type(exc).__name__}: {exc}). "
                                         "Check its port (`lerobot-find-port`), cable and power.") from exc
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
            self._keep_finished_take(result)
            self._discard_take(result)
        except RecordingFault as exc:
            result.exit_code, result.message = EXIT_FAULT, str(exc)
            self._keep_finished_take(result)
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
        while result.saved < ds.num_episodes and not self.events.stop:
            episode = self.recorder.num_episodes + self.recorder.pending_episodes
            task_key, task = self._task_for(episode)
            if self.virtual is not None:
                self._prepare_virtual_episode(task_key, cfg.seed + episode)
            self._say(f"Recording episode {episode}: {task}")
            meter = CadenceMeter(ds.fps, list(getattr(self.robot, "cameras", {}) or {}),
                                 data_clock=self._data_clock(), lockstep=self.lockstep)
            self.events.start_phase()
            frames = self._control_loop(recording=True, duration_s=ds.episode_time_s, task=task, meter=meter,
                                        until=self._demonstration_finished())
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
                else:
                    rejected_in_row = 0
                    self._finished_take = (episode, task, report)
                    last = result.saved + 1 >= ds.num_episodes
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
            if self.events.stop or result.saved >= ds.num_episodes:
                break
            self._reset_phase()

    def _save_finished_take(self, result: SessionResult) -> None:
        """Save the take that ended before the reset phase (also when the session ends during that reset)."""
        if self._finished_take is not None:
            episode, task, report = self._finished_take
            self._finished_take = None
            self._save_take(result, episode, task, report)

    def _keep_finished_take(self, result: SessionResult) -> None:
        try:
            self._save_finished_take(result)
        except RecordingFault as exc:
            result.message += f" {exc}"

    def _save_take(self, result: SessionResult, episode: int, task: str, report: CadenceReport) -> None:
        from lerobot_vla_plugin.recording import EpisodeNotSavedError

        metadata = report.metadata()
        success = ""
        if self.virtual is not None:
            is_success = self.virtual.is_success()
            metadata.update(is_success=is_success, scene_seed=self.cfg.seed + episode)
            success = ", success" if is_success else ", FAILED task"
        for warning in report.warnings():
            self.out(f"  warning: episode {episode}: {warning}")
        try:
            index = self.recorder.save_episode(metadata, wait=False)
        except EpisodeNotSavedError as exc:
            raise RecordingFault(f"Saving failed: {exc}") from exc
        result.saved += 1
        seconds = report.frames / report.target_fps
        self.out(f"Episode {index} saved: {task!r}, {report.frames} frames ({seconds:.1f} s), "
                 f"{report.summary()}{success}. [{result.saved}/{self.cfg.dataset.num_episodes} this session]")

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
        recorder, features = self.recorder, self.recorder.features
        arm = self.virtual.arm if (self.virtual is not None and self.lockstep) else None
        start = clock()
        deadline = time.perf_counter()
        frames = 0
        # A little tolerance so floating-point sums of periods do not add a frame.
        while not self.events.exit_early and clock() - start < duration_s - 1e-6:
            if until is not None and until():
                break
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
            raise RecordingFault(f"{exc}{self._take_lost_note(recording)}") from exc
        except Exception as exc:
            logger.debug("control tick failed", exc_info=True)
            hint = _FAILURE_HINTS.get(step, "")
            raise RecordingFault(f"{step[0].upper()}{step[1:]} failed at frame {frame} ({type(exc).__name__}: "
                                 f"{exc}). {hint}{self._take_lost_note(recording)}") from exc

    def _take_lost_note(self, recording: bool) -> str:
        kept = self.recorder.num_episodes + self.recorder.pending_episodes if self.recorder else 0
        kept += self._finished_take is not None  # ended before this reset phase; saved on the way out
        lost = " The episode in progress is discarded;" if recording else ""
        return f"{lost} the {kept} finished episodes are kept."

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
        from lerobot_vla_plugin.recording import EpisodeNotSavedError

        if self.recorder is None:
            return
        try:
            self.recorder.close()
        except EpisodeNotSavedError as exc:
            result.saved -= 1
            result.exit_code = EXIT_FAULT
            result.message = (result.message + " " if result.message else "") + f"Saving failed: {exc}"
        result.total_episodes = self.recorder.num_episodes

    def _say(self, text: str) -> None:
        self.out(text)
        if self.cfg.play_sounds:
            from lerobot.utils.utils import log_say

            log_say(text, play_sounds=True)


_FAILURE_HINTS = {
    "reading the robot's observation": "A camera that stops delivering frames (unplugged, USB bandwidth, hung "
                                       "driver) or a servo that stops answering is the usual cause: check cables and "
                                       "power, then run `lerobot-find-cameras` or `lerobot-vla doctor`.",
    "reading the leader arm (teleoperator)": "Check the leader's cable and power supply.",
    "sending the action to the robot": "Check the follower's cable and power supply.",
}


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
    import draccus
    from lerobot.utils.import_utils import register_third_party_plugins

    _import_builtin_device_configs()
    register_third_party_plugins()
    from lerobot_vla_plugin.registry import register_all

    register_all()
    return draccus.parse(RecordConfig, args=normalize_argv(argv))


def _import_builtin_device_configs() -> None:
    """LeRobot's own arms and cameras register their config types on import, as lerobot-record does."""
    import importlib

    for module in ("lerobot.cameras.opencv.configuration_opencv", "lerobot.cameras.realsense.configuration_realsense",
                   "lerobot.robots.so_follower", "lerobot.robots.koch_follower", "lerobot.teleoperators.so_leader",
                   "lerobot.teleoperators.koch_leader"):
        try:
            importlib.import_module(module)
        except ImportError as exc:  # an optional dependency of one device must not block the others
            logger.debug("%s not available: %s", module, exc)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options are LeRobot-style (`--robot.type=...`) and parsed by draccus in `run`, not by argparse."""

    def parse_known_args(args=None, namespace=None):
        namespace = namespace or argparse.Namespace()
        for key, value in parser._defaults.items():
            setattr(namespace, key, value)
        namespace.record_options = list(sys.argv[2:] if args is None else args)
        return namespace, []

    parser.parse_known_args = parse_known_args


def run(args: argparse.Namespace) -> int:
    from lerobot.utils.utils import init_logging

    init_logging()
    try:
        cfg = parse_config(args.record_options)
        session = RecordSession(cfg)
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
    if result.rejected:
        parts.append(f"{result.rejected} takes rejected by --min-hz")
    if result.discarded:
        parts.append(f"{result.discarded} takes discarded")
    where = f" in {result.root}" if result.root is not None else ""
    return f"Session done: {', '.join(parts)}; the dataset holds {result.total_episodes} episodes{where}."


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
