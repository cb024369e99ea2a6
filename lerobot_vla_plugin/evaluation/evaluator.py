"""The episode loop of an evaluation on the virtual SO-101: fresh scene, policy in control, outcome per episode.

The arm runs in lockstep (simulated time advances one control period per tick), so a result does not depend on
how fast the machine is: a synchronous policy that needs 200 ms per chunk costs wall time, not simulated time.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lerobot_vla_plugin.arms.health import SafetyStop
from lerobot_vla_plugin.sim.scene_seeds import evaluation_scene_seed
from lerobot_vla_plugin.sim.so101 import TASKS

from .outcome import EpisodeMonitor, EpisodeResult
from .policy_runner import PolicyRunner
from lerobot_vla_plugin.arms.virtual_so101 import cameras_for_image_features, follower_action_from_joint_angles, virtual_follower_config

# After a scene reset the follower's last positions predate it: a few ticks holding the new pose refresh them
# (as the recorder does) before the policy takes over.
SETTLE_TICKS = 3
STRIP_CAMERA = "front"
STRIP_SIZE = (160, 120)


@dataclass(frozen=True)
class EpisodeSpec:
    index: int
    task_key: str
    scene_seed: int


def episode_specs(episodes: int, seed: int, task_keys: list[str]) -> list[EpisodeSpec]:
    """Tasks alternate episode by episode; every scene comes from the evaluation seed range."""
    return [EpisodeSpec(i, task_keys[i % len(task_keys)], evaluation_scene_seed(seed, i)) for i in range(episodes)]


@dataclass
class EvaluatedEpisode:
    result: EpisodeResult
    frames: list[np.ndarray] = field(default_factory=list)  # a few views of the scene, start to end
    run: object | None = None  # the control loop's EpisodeRun: timing, stalls, per-tick trace


class EvenlySpacedFrames:
    """Keeps about `count` frames spread over an episode whose length is known only at its end: frames are taken
    every `stride` ticks, and when twice `count` are held every other one goes and the stride doubles."""

    def __init__(self, count: int):
        self.count = count
        self.stride = 1
        self._frames: list[np.ndarray] = []

    def wants(self, tick: int) -> bool:
        return tick % self.stride == 0

    def add(self, frame: np.ndarray) -> None:
        self._frames.append(frame)
        if len(self._frames) >= 2 * self.count:
            self._frames = self._frames[::2]
            self.stride *= 2

    def pick(self, last: np.ndarray) -> list[np.ndarray]:
        """`count` frames evenly spaced from the first one taken to `last`, the episode's end."""
        taken = len(self._frames)
        indices = np.linspace(0, taken - 1, min(taken, self.count - 1)).round().astype(int) if taken else []
        return [self._frames[i] for i in indices] + [last]


def seed_policy_draws(scene_seed: int) -> None:
    """Seed torch's global generator from the scene, so a policy that samples (flow_vla's flow noise) draws the
    same noise on the same scene in every evaluation: two settings evaluated on the same scenes then differ by
    the setting, not by the draw. Measured with fresh draws: one flow_vla checkpoint scored 7/20 and 2/20 on the
    same 20 scenes, one scene succeeding in both."""
    import torch

    torch.manual_seed(scene_seed)


class VirtualEvaluator:
    """Runs episodes of `runner` on the connected `robot`, which drives `virtual`'s follower.

    The ticks themselves are the rollout's control loop (rollout/loop.py): `loop` may be one the caller
    configured (watchdog, hand-off); by default a lockstep loop without a watchdog. This class adds what only a
    simulation knows: a fresh scene per episode, the outcome read from the simulation, a strip of frames.
    """

    def __init__(self, virtual, robot, runner: PolicyRunner, *, episode_time_s: float, strip_frames: int = 6,
                 loop=None):
        from lerobot_vla_plugin.rollout.loop import ControlLoop

        self.virtual = virtual
        self.robot = robot
        self.runner = runner
        self.fps = 1.0 / virtual.control_period_s
        self.max_ticks = max(1, round(episode_time_s * self.fps))
        self.strip_frames = max(2, strip_frames)
        self.loop = loop if loop is not None else ControlLoop(robot, runner, fps=self.fps,
                                                              lockstep=virtual.lockstep, watchdog_s=None)
        self._joint_limits = virtual.sim.joint_limits()

    def run_episode(self, spec: EpisodeSpec, *, instruction: str | None = None, on_tick=None) -> EvaluatedEpisode:
        """One episode on `spec`'s scene; `instruction` (default: the task's) is said to the policy, `on_tick`
        sees every tick (see ControlLoop.run_episode)."""
        virtual, robot = self.virtual, self.robot
        wall_start = time.perf_counter()
        virtual.new_episode(spec.task_key, seed=spec.scene_seed)
        # Every try starts with cool servos, so tries are independent draws: with the heat of the last try kept
        # (the servos cool over minutes, the next scene starts at once), one policy that strained the shoulder
        # pan failed every later try within 2 s, whatever it did in them.
        virtual.rest_follower()
        if getattr(robot, "fault", None) is not None:
            # The last episode ended in a servo fault with torque off. As an operator would: power-cycle the
            # arm (the fault clears), then connect again, which enables torque; the fresh scene loads it no more.
            robot.disconnect()
            virtual.power_cycle_follower()
            robot.connect()
        with virtual.lock:
            hold = follower_action_from_joint_angles(virtual.sim.joint_positions(), self._joint_limits)
        instruction = TASKS[spec.task_key] if instruction is None else instruction
        monitor = EpisodeMonitor(virtual.sim, spec.task_key)
        frames = EvenlySpacedFrames(self.strip_frames)

        ticks_started = 0

        def snapshot(tick: int) -> None:
            nonlocal ticks_started
            ticks_started = tick + 1
            if frames.wants(tick):
                frames.add(self._snapshot())

        def task_done() -> bool:
            with virtual.lock:
                return monitor.update()

        seed_policy_draws(spec.scene_seed)
        try:
            # Inside the try: a servo still faulted after the power cycle (overheated, say) fails this episode
            # with its name, as a fault during the episode does, instead of ending the whole evaluation.
            for _ in range(SETTLE_TICKS):
                robot.send_action(hold)
            run = self.loop.run_episode(instruction, self.max_ticks, before_tick=snapshot, until=task_done,
                                        on_tick=on_tick)
            ticks, error, fault_mode = run.ticks, run.error, "policy_fault"
        except SafetyStop as fault:
            run, ticks, error, fault_mode = None, ticks_started, f"servo fault: {fault}", "servo_fault"
        last_frame = self._snapshot()
        with virtual.lock:
            failure_mode = fault_mode if error is not None else monitor.failure_mode()
        episode_stats = getattr(self.runner, "episode_stats", None)
        simulated_s = ticks / self.fps
        result = EpisodeResult(
            episode=spec.index, task=spec.task_key, instruction=instruction, scene_seed=spec.scene_seed,
            success=monitor.success, failure_mode=failure_mode,
            time_to_success_s=simulated_s if monitor.success else None, simulated_s=simulated_s,
            wall_s=time.perf_counter() - wall_start, ticks=ticks, target_touched=monitor.target_touched,
            target_lifted=monitor.target_lifted, other_touched=monitor.other_touched, error=error,
            rollout=episode_stats() if episode_stats is not None else None,
            first_grasp_aim=monitor.first_grasp_aim)
        return EvaluatedEpisode(result, frames.pick(last_frame), run)

    def _snapshot(self) -> np.ndarray:
        return self.virtual.frame(STRIP_CAMERA, *STRIP_SIZE)[0]


class VirtualRig:
    """The virtual SO-101 (lockstep by default) and our follower robot on it, cameras as the policy sees them.
    `lockstep=False`: simulated time follows the wall clock, as a real arm's does. `leader=True`: also the
    leader arm with our `vla_so101_leader` on it (`rig.teleop`), its scripted operator on call for a hand-off.

        with VirtualRig(fps=30, image_shapes={"observation.images.front": (3, 96, 128)}) as rig:
            rig.virtual, rig.robot
    """

    def __init__(self, *, fps: int, image_shapes: dict[str, tuple[int, ...]], lockstep: bool = True,
                 leader: bool = False):
        self.fps = fps
        self.image_shapes = image_shapes
        self.lockstep = lockstep
        self.leader = leader
        self.virtual = None
        self.robot = None
        self.teleop = None
        self._calibration_dir: Path | None = None

    def __enter__(self) -> VirtualRig:
        from lerobot.robots.utils import make_robot_from_config
        from lerobot.teleoperators.utils import make_teleoperator_from_config

        from lerobot_vla_plugin.arms.virtual_so101 import virtual_leader_config
        from lerobot_vla_plugin.emulator.virtual_arm import VirtualSO101

        try:
            self.virtual = VirtualSO101(lockstep=self.lockstep, control_hz=self.fps, leader=self.leader,
                                        camera_socket=None, operator_on_call=self.leader).start()
            self._calibration_dir = Path(tempfile.mkdtemp(prefix="lerobot-vla-eval-calibration-"))
            config = virtual_follower_config(self.virtual, self._calibration_dir,
                                             cameras_for_image_features(self.image_shapes, self.fps))
            self.robot = make_robot_from_config(config)
            self.robot.connect()
            if self.leader:
                self.teleop = make_teleoperator_from_config(virtual_leader_config(self.virtual,
                                                                                  self._calibration_dir))
                self.teleop.connect()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        if self.teleop is not None and self.teleop.is_connected:
            self.teleop.disconnect()
        if self.robot is not None and self.robot.is_connected:
            self.robot.disconnect()
        if self.virtual is not None:
            self.virtual.stop()
        if self._calibration_dir is not None:
            shutil.rmtree(self._calibration_dir, ignore_errors=True)
