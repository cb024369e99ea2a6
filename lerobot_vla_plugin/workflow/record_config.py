"""The options of `lerobot-vla record` and the checks that refuse unworkable ones before any device is touched."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lerobot.robots.config import RobotConfig
from lerobot.teleoperators.config import TeleoperatorConfig

from .keyboard import KeyboardControl

VIRTUAL_ARMS = ("so101",)


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
    # --virtual: the scripted operator's reach first heads for a random point up to this many metres off the cube,
    # then homes in on it (0: straight there). Demonstrations whose paths vary make a policy find the cube rather
    # than replay a path; see recipes/README.md for what it measured.
    virtual_reach_detour_m: float = 0.0
    # --virtual: share of episodes (0-1) that start where a missed grasp leaves the arm (jaws closed on nothing
    # beside the cube, or carrying nothing toward the bowl) instead of at rest: the operator then goes back for the
    # cube, which shows a policy how to recover from its own misses. Takes that fail are then dropped.
    virtual_missed_grasp_starts: float = 0.0
    # --virtual: seconds recorded after the demonstration ends, while the cube settles.
    settle_s: float = 0.5


class UsageError(ValueError):
    """The options cannot work together; nothing was started."""


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
        if cfg.virtual_reach_detour_m < 0:
            raise UsageError(f"--virtual_reach_detour_m must be >= 0 metres, got {cfg.virtual_reach_detour_m}.")
        if not 0 <= cfg.virtual_missed_grasp_starts <= 1:
            raise UsageError("--virtual_missed_grasp_starts is a share of the episodes, from 0 to 1; got "
                             f"{cfg.virtual_missed_grasp_starts}.")
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
    keyboard_problem = KeyboardControl.unavailable_reason(cfg.keyboard)
    if keyboard_problem is not None:
        raise UsageError(keyboard_problem)


def task_keys(cfg: RecordConfig) -> list[str]:
    return [t.strip() for t in cfg.tasks.split(",") if t.strip()]


def dataset_root(cfg: RecordConfig) -> Path:
    if cfg.dataset.root:
        return Path(cfg.dataset.root).expanduser()
    from lerobot.utils.constants import HF_LEROBOT_HOME

    return Path(HF_LEROBOT_HOME) / cfg.dataset.repo_id
