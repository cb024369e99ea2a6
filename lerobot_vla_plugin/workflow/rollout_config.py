"""The options of `lerobot-vla rollout` and the checks that refuse unworkable ones before any device is touched."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from lerobot.configs.policies import PreTrainedConfig
from lerobot.robots.config import RobotConfig
from lerobot.teleoperators.config import TeleoperatorConfig

VIRTUAL_ARMS = ("so101",)
INFERENCE_MODES = ("async", "sync")
CLOCKS = ("lockstep", "wall")


@dataclass
class RolloutOptions:
    episodes: int = 1
    # Seconds per episode (arm time: simulated seconds on the lockstep virtual arm).
    episode_time_s: float = 30.0
    fps: int = 30
    # async: chunks computed in a background thread (rollout/), the loop never waits; sync: the loop waits for
    # each chunk when the queue runs dry (lerobot-record's way).
    inference: str = "async"
    # async only: how a new chunk joins the rest of the last one. auto: rtc when the policy supports it, else
    # blend; rtc: the policy continues the rest (real-time chunking); blend: a short crossfade; naive: the new
    # chunk replaces the rest.
    merge: str = "auto"
    # --virtual with the lockstep clock, async only: every chunk arrives this many ticks after its observation;
    # default its measured latency in ticks.
    inference_delay_ticks: int | None = None
    # --virtual only: lockstep (simulated time, one period per tick; default) or wall (follows the wall clock).
    clock: str = "lockstep"
    # Real arm: seconds between episodes while the arm holds its pose and a person resets the scene.
    reset_time_s: float = 10.0
    # A tick that takes this much longer than the runner may wait by design stops the rollout, torque off.
    watchdog_s: float = 5.0
    # Score every chunk with the policy's action_uncertainty() when it has one (flow_vla); costs inference time.
    uncertainty: bool = True
    # --virtual: episode i's scene is evaluation seed `seed + i` (never a recording scene).
    seed: int = 0
    # --virtual: scene task keys alternated episode by episode; default the key of --task, else red,blue.
    tasks: str | None = None
    # --virtual: a leader arm on the virtual SO-101 whose scripted operator takes over at a hand-off and hands
    # back when its demonstration is done (with --teleop.* on a real arm the hand-off is always on).
    hand_off: bool = False
    # Hand-off: the largest change per tick (action units) of the arm being moved to the other's pose.
    hand_off_step: float = 3.0
    # Hand-off: the person also takes over when the policy has driven this many seconds of an episode without
    # finishing it (the uncertainty score only catches a policy that knows it is lost); none: never for that.
    hand_off_after_s: float | None = None


@dataclass
class RolloutDatasetConfig:
    # Record the rollout as a LeRobotDataset when set (e.g. me/eval_pick); --dataset.root default
    # $HF_LEROBOT_HOME/<repo_id>.
    repo_id: str | None = None
    root: str | None = None
    video: bool = True
    vcodec: str = "libsvtav1"


@dataclass
class RolloutConfig:
    robot: RobotConfig | None = None
    # Set from --policy.path (and --policy.<field> overrides), as lerobot-record does.
    policy: PreTrainedConfig | None = None
    # The leader arm a person takes over with (e.g. --teleop.type=vla_so101_leader --teleop.port=... --teleop.id=...):
    # when the policy's uncertainty passes its threshold or the hand-off key (h) is pressed; h hands back.
    teleop: TeleoperatorConfig | None = None
    # The instruction said to the policy.
    task: str | None = None
    rollout: RolloutOptions = field(default_factory=RolloutOptions)
    dataset: RolloutDatasetConfig = field(default_factory=RolloutDatasetConfig)
    # The virtual SO-101 (so101) instead of --robot.*: cameras from the policy's image features, success known.
    virtual: str | None = None
    # Show observations and actions live in rerun (LeRobot's viewer).
    display_data: bool = False
    # Summary JSON and PNGs; default outputs/rollout/<date>_<time>.
    output_dir: str | None = None


class UsageError(ValueError):
    """The options cannot work; nothing was started."""


def parse_config(argv: list[str]) -> RolloutConfig:
    """draccus for the options; the policy's config is loaded from --policy.path like LeRobot's scripts do."""
    from lerobot_vla_plugin.options import parse_options

    from .draccus_options import register_config_types, split_policy_path

    register_config_types(builtin_devices=True)
    policy, rest = split_policy_path(argv)
    cfg = parse_options(RolloutConfig, rest)
    if policy is not None:
        cfg.policy = policy
    validate(cfg)
    return cfg


def scene_task_keys(cfg: RolloutConfig) -> list[str]:
    """--virtual: the scene task of each episode, alternated."""
    from lerobot_vla_plugin.sim.so101 import TASKS

    if cfg.rollout.tasks:
        return [t.strip() for t in cfg.rollout.tasks.split(",") if t.strip()]
    by_instruction = {instruction: key for key, instruction in TASKS.items()}
    if cfg.task is not None:
        return [by_instruction[cfg.task]] if cfg.task in by_instruction else []
    return list(TASKS)


def validate(cfg: RolloutConfig) -> None:
    r = cfg.rollout
    if cfg.policy is None:
        raise UsageError("Give --policy.path=DIR (a LeRobot checkpoint's pretrained_model folder).")
    if r.inference not in INFERENCE_MODES:
        raise UsageError(f"--rollout.inference must be one of {', '.join(INFERENCE_MODES)} (got {r.inference!r}).")
    from lerobot_vla_plugin.rollout.runners import MERGE_MODES

    if r.merge not in MERGE_MODES:
        raise UsageError(f"--rollout.merge must be one of {', '.join(MERGE_MODES)} (got {r.merge!r}).")
    if r.merge != "auto" and r.inference != "async":
        raise UsageError("--rollout.merge needs --rollout.inference async (a synchronous chunk replaces an empty "
                         "queue).")
    if r.episodes <= 0 or r.episode_time_s <= 0 or r.fps <= 0 or r.watchdog_s <= 0 or r.reset_time_s < 0:
        raise UsageError("--rollout.episodes, --rollout.episode_time_s, --rollout.fps and --rollout.watchdog_s must "
                         "be positive and --rollout.reset_time_s >= 0.")
    if not r.hand_off_step > 0:
        raise UsageError("--rollout.hand_off_step must be positive.")
    if r.hand_off_after_s is not None and not r.hand_off_after_s > 0:
        raise UsageError("--rollout.hand_off_after_s must be positive (seconds the policy drives before a person "
                         "takes over).")
    if r.hand_off_after_s is not None and not (r.hand_off or cfg.teleop is not None):
        raise UsageError("--rollout.hand_off_after_s hands the arm to a person on the leader: add --rollout.hand_off "
                         "true (--virtual) or the leader with --teleop.*.")
    if r.hand_off and cfg.virtual is None:
        raise UsageError("--rollout.hand_off is for --virtual; on a real arm give the leader with --teleop.*.")
    if cfg.teleop is not None and cfg.virtual is not None:
        raise UsageError("--virtual builds its own leader (--rollout.hand_off true); drop --teleop.*.")
    if r.inference_delay_ticks is not None and (r.inference != "async" or cfg.virtual is None
                                                or r.clock != "lockstep" or r.inference_delay_ticks < 0):
        raise UsageError("--rollout.inference_delay_ticks (>= 0) needs --virtual with the lockstep clock and "
                         "--rollout.inference async.")
    if cfg.virtual is not None:
        from lerobot_vla_plugin.sim.so101 import TASKS

        if cfg.virtual not in VIRTUAL_ARMS:
            raise UsageError(f"--virtual {cfg.virtual!r} is not available; choose one of {', '.join(VIRTUAL_ARMS)}.")
        if cfg.robot is not None:
            raise UsageError("--virtual builds the robot itself; drop --robot.*.")
        if r.clock not in CLOCKS:
            raise UsageError(f"--rollout.clock must be one of {', '.join(CLOCKS)} (got {r.clock!r}).")
        keys = scene_task_keys(cfg)
        if not keys or any(key not in TASKS for key in keys):
            instructions = "; ".join(f"{key}: {text!r}" for key, text in TASKS.items())
            raise UsageError("On the virtual arm the episode's scene must be known: give --task as one of its "
                             f"instructions, or --rollout.tasks with keys among {', '.join(TASKS)} ({instructions}).")
        if not cfg.policy.image_features:
            raise UsageError("The policy has no image features (observation.images.<camera>); the virtual arm's "
                             "cameras are built from them.")
    else:
        if cfg.robot is None:
            raise UsageError("Give --robot.type=... (e.g. vla_so101_follower) with --robot.port and --robot.id, or "
                             "--virtual so101.")
        if not cfg.task:
            raise UsageError('--task is required (e.g. --task "put the red cube in the bowl").')
        if r.clock != "lockstep" and r.clock != "wall":
            raise UsageError(f"--rollout.clock must be one of {', '.join(CLOCKS)} (got {r.clock!r}).")


def uses_lockstep(cfg: RolloutConfig) -> bool:
    return cfg.virtual is not None and cfg.rollout.clock == "lockstep"


def dataset_root(cfg: RolloutConfig) -> Path | None:
    if not cfg.dataset.repo_id:
        return None
    if cfg.dataset.root:
        return Path(cfg.dataset.root).expanduser()
    from lerobot.utils.constants import HF_LEROBOT_HOME

    return Path(HF_LEROBOT_HOME) / cfg.dataset.repo_id


def output_dir(cfg: RolloutConfig) -> Path:
    if cfg.output_dir:
        return Path(cfg.output_dir).expanduser()
    return Path("outputs") / "rollout" / dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
