"""A virtual SO-101 that behaves like the real one: follower and leader servo buses on ptys, backed by MuJoCo.

    with VirtualSO101(lockstep=True) as arm:
        arm.new_episode("red", seed=3)       # scene randomized, scripted operator re-planned
        ... FeetechBus(arm.leader_port) -> teleop -> FeetechBus(arm.follower_port) ...
        arm.is_success()

- follower bus: six emulated STS3215 whose shafts are the simulated joints (emulator/physics.py);
- leader bus (optional): six emulated leader servos, torque off, whose shafts a scripted operator moves
  through a pick-and-place demonstration of the current episode, so the real teleop path produces
  demonstrations hands-free;
- cameras: `frame(camera, width, height)` in-process, and the same over a unix socket (sim/remote.py) for
  cameras living in another process (the `vla_sim_camera` camera type uses either).

The operator's clock is simulated time since the episode started; the leader shows where the hand is at the
moment the leader is read.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import mujoco
import numpy as np
from lerobot.motors.motors_bus import MotorCalibration

from lerobot_vla_plugin.motors.feetech import protocol as fp
from lerobot_vla_plugin.sim.frames import FrameService
from lerobot_vla_plugin.sim.missed_grasp import place_arm_after_missed_grasp
from lerobot_vla_plugin.sim.operator import ScriptedOperator
from lerobot_vla_plugin.sim.retarget import SCRIPTED_PROVENANCE
from lerobot_vla_plugin.sim.remote import VirtualArmServer
from lerobot_vla_plugin.sim.so101 import JOINT_NAMES, TASKS, SO101Sim

from .arms import SO_JOINTS, build_arm_logic
from .bus import EmulatedBus, LinkFaults
from .calibration_hand import HOMING, CalibrationHand
from .link import TimingModel
from .physics import (
    CONTROL_TICK_READ,
    SYNC_READ,
    ControlTickLogic,
    PhysicsArm,
    actual_steps_to_joint_rad,
    joint_rad_to_actual_steps,
    physics_calibration_steps,
)

# The leader's horns sit elsewhere on their encoders than the follower's: each arm needs its own calibration.
LEADER_MOUNT_OFFSETS_STEPS: dict[str, int] = {
    "shoulder_pan": -95,
    "shoulder_lift": 180,
    "elbow_flex": -143,
    "wrist_flex": 66,
    "wrist_roll": -201,
    "gripper": 88,
}

logger = logging.getLogger(__name__)
_WRITE_INSTRUCTIONS = (fp.Instruction.WRITE, fp.Instruction.SYNC_WRITE, fp.Instruction.ACTION)

_active_lock = threading.Lock()
_active: list[VirtualSO101] = []


def active_virtual_arm() -> VirtualSO101 | None:
    """The most recently started virtual arm of this process (what an in-process `vla_sim_camera` renders)."""
    with _active_lock:
        return _active[-1] if _active else None


def plan_scripted_demonstration(planning: SO101Sim, task: str, rng: np.random.Generator, *,
                                reach_detour_m: float = 0.0) -> ScriptedOperator:
    operator = ScriptedOperator(planning, task, rng, reach_detour_m=reach_detour_m)
    operator.plan()
    return operator


class ScriptedLeaderLogic:
    """Wraps the leader's FeetechBusLogic: before each request, the hand moves the limp shafts to the
    operator's pose for the current simulated time."""

    def __init__(self, inner, virtual: VirtualSO101):
        self._inner = inner
        self.virtual = virtual

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def handle(self, packet, line_baudrate: int, now_s: float):
        virtual = self.virtual
        virtual.arm.advance_to(now_s)
        q = virtual.leader_joint_targets()
        servo_now = virtual.arm.servo_time_s()
        for servo in self._inner.servos:
            joint = SO_JOINTS[servo.id - 1] if 1 <= servo.id <= len(SO_JOINTS) else None
            if joint is None:
                continue
            steps = joint_rad_to_actual_steps(joint, float(q[JOINT_NAMES.index(joint)]), LEADER_MOUNT_OFFSETS_STEPS)
            servo.actuator.hand_position_steps = steps
            if not servo.actuator.torque_enabled:
                servo.actuator.position_steps = steps
        return self._inner.handle(packet, line_baudrate, servo_now)


class ObservedLogic:
    """The virtual arm sees every packet on one of its buses: its calibration hands and its episode listener (a
    command's episodes, emulator/episode_cycle.py) act on what the command does."""

    def __init__(self, inner, virtual: VirtualSO101, role: str):
        self._inner = inner
        self.virtual = virtual
        self.role = role

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def handle(self, packet, line_baudrate: int, now_s: float):
        virtual = self.virtual
        listener = virtual.episode_listener
        if listener is not None:
            virtual.arm.advance_to(now_s)  # wall-clock mode: the listener sees the present, not the last packet's
            listener.on_packet(self.role, packet)
        if self.role == "follower":
            virtual._apply_follower_hand()
        replies = self._inner.handle(packet, line_baudrate, now_s)
        if packet.code in _WRITE_INSTRUCTIONS:
            address = packet.params[0] if packet.code != fp.Instruction.ACTION and packet.params else None
            virtual._after_write(self.role, address)
        elif listener is not None and self.role == "follower" and packet.code == SYNC_READ \
                and bytes(packet.params[:2]) == CONTROL_TICK_READ:
            listener.on_control_tick()
        return replies


class VirtualSO101:
    """Physics-backed SO-101 follower (+ scripted leader) on ptys, with cameras in-process and on a socket.

    lockstep: simulated time advances one `1 / control_hz` per follower Present_Position sync read (the
    control tick), otherwise it follows the wall clock. calibrated: the servos' EEPROM already holds the
    calibration that `calibration()` returns, as after a careful `lerobot-calibrate`.
    camera_socket: a path, True for a default path under the discovery directory, or None for none.
    operator_on_call: the scripted operator does not demonstrate each episode on its own; its hand rests on the
    leader until `operator_take_over()` (a rollout's hand-off), as a person supervising a policy would.
    Calibration: when LeRobot's calibration flow runs on the follower or the leader, a hand moves that arm's joints
    through their ranges (emulator/calibration_hand.py); `say` tells the person at the console what it does.
    """

    def __init__(self, *, lockstep: bool = False, control_hz: float = 30.0, leader: bool = True,
                 task: str = "red", seed: int = 0, calibrated: bool = True, camera_socket: str | bool | None = True,
                 timing: TimingModel | None = None, faults: LinkFaults | None = None,
                 scene_path: str | Path | None = None, operator_on_call: bool = False,
                 say: Callable[[str], None] = logger.info):
        if task not in TASKS:
            raise KeyError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")
        if control_hz <= 0:
            raise ValueError(f"control_hz must be positive, got {control_hz}")
        self.lockstep = lockstep
        self.operator_on_call = operator_on_call
        self.control_period_s = 1.0 / control_hz
        self.task = task
        self.seed = seed
        self.sim = SO101Sim(scene_path, seed=seed)
        self.arm = PhysicsArm(self.sim, lockstep=lockstep, control_period_s=self.control_period_s)
        self.lock = self.arm.lock
        self.episode = 0
        self.operator: ScriptedOperator | None = None
        # Plans each episode's demonstration from the reset scene: (planning sim, task, rng) -> an operator with
        # target_at / duration_s / done. None: the scripted operator. Data generation re-targets recorded ones.
        self.demonstration_planner = None
        # Share of episodes that start where a missed grasp leaves the arm (sim/missed_grasp.py), not at rest.
        self.missed_grasp_start_fraction = 0.0
        self.start_pose = "rest"  # how the current episode started: "rest" or one of MISSED_GRASP_KINDS
        self._operator_rng = np.random.default_rng(seed + 1_000_003)
        self._episode_start_s = self.sim.time_s
        self._idle_pose = self.sim.joint_positions()
        self._planning_sim: SO101Sim | None = None
        self._episode_lock = threading.Lock()
        self.episode_listener = None  # an EpisodeCycle, when a command's episodes are followed
        self._follower_held = False

        follower_logic = build_arm_logic("so101", actuators=self.arm.actuators)
        for servo in follower_logic.servos:
            self.arm.actuators[SO_JOINTS[servo.id - 1]].servo = servo
        self.follower_bus = EmulatedBus(ObservedLogic(ControlTickLogic(follower_logic, self.arm), self, "follower"),
                                        timing=timing, faults=faults, clock=self.arm.servo_time_s)
        limits = self.sim.joint_limits()
        self.calibration_hands = {"follower": CalibrationHand("follower", follower_logic.servos, limits, say=say)}
        self.leader_bus: EmulatedBus | None = None
        if leader:
            leader_logic = build_arm_logic("so101-leader")
            self.leader_bus = EmulatedBus(ObservedLogic(ScriptedLeaderLogic(leader_logic, self), self, "leader"),
                                          timing=timing, clock=self.arm.clock)
            self.calibration_hands["leader"] = CalibrationHand("leader", leader_logic.servos, limits, say=say)
        if calibrated:
            self._write_calibration_to_servos()

        self.frames = FrameService(self.sim, self.lock, before_capture=lambda: self.arm.advance_to(self.arm.clock()))
        self._socket_request = camera_socket
        self.server: VirtualArmServer | None = None
        self._started = False

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> VirtualSO101:
        self.follower_bus.start()
        if self.leader_bus is not None:
            self.leader_bus.start()
        if self._socket_request:
            path = None if self._socket_request is True else self._socket_request
            self.server = VirtualArmServer(self, path).start()
        with _active_lock:
            _active.append(self)
        self._started = True
        return self

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        with _active_lock:
            if self in _active:
                _active.remove(self)
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.frames.close()
        if self.leader_bus is not None:
            self.leader_bus.stop()
        self.follower_bus.stop()

    def __enter__(self) -> VirtualSO101:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- ports ------------------------------------------------------------------------------------------------
    @property
    def follower_port(self) -> str:
        return self.follower_bus.port

    @property
    def leader_port(self) -> str | None:
        return self.leader_bus.port if self.leader_bus is not None else None

    @property
    def camera_socket(self) -> str | None:
        return self.server.path if self.server is not None else None

    # -- episodes ---------------------------------------------------------------------------------------------
    def new_episode(self, task: str | None = None, seed: int | None = None) -> dict:
        """Reset the scene (objects randomized; `seed` makes it reproducible) and plan a new demonstration.

        Simulated time keeps running (it never goes back), so servo timers and the wall clock stay valid.
        """
        task = self.task if task is None else task
        if task not in TASKS:
            raise KeyError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")
        with self._episode_lock:  # one reset at a time (the caller and socket clients may both ask)
            return self._new_episode(task, seed)

    def _new_episode(self, task: str, seed: int | None) -> dict:
        if seed is not None:
            self._operator_rng = np.random.default_rng(int(seed) + 1_000_003)
        if self._planning_sim is None:
            self._planning_sim = SO101Sim(self.sim.scene_path)
        planning = self._planning_sim
        with self.lock:
            self.operator = None
            now = self.sim.time_s
            self.sim.reset(seed=None if seed is None else int(seed))
            self.sim.data.time = now
            self.start_pose = "rest"
            if self.missed_grasp_start_fraction > 0 and self._operator_rng.random() < self.missed_grasp_start_fraction:
                try:
                    self.start_pose = place_arm_after_missed_grasp(self.sim, task, self._operator_rng)
                except RuntimeError as exc:
                    logger.warning("Episode starts at rest: %s.", exc)
            self.arm.sync_to_sim()
            # While planning, the hand holds the leader where the reset put the follower: the demonstration ends
            # above the bowl, and a leader left there would pull the freshly reset follower back toward it.
            self._idle_pose = self.sim.joint_positions()
            self.task = task
            self.episode += 1
            mujoco.mj_copyData(planning.data, planning.model, self.sim.data)
        if self.operator_on_call:
            with self.lock:
                self._episode_start_s = self.sim.time_s
        else:
            self._start_operator(planning, self.demonstration_planner)
        return self.status()

    def operator_take_over(self) -> None:
        """The scripted operator takes the leader where it is (where a hand-off has just put it, on the follower's
        pose) and does the current task from the scene as it is now."""
        if self.leader_bus is None:
            raise RuntimeError("this virtual arm has no leader for the operator to take")
        with self._episode_lock:
            if self._planning_sim is None:
                self._planning_sim = SO101Sim(self.sim.scene_path)
            planning = self._planning_sim
            with self.lock:
                mujoco.mj_copyData(planning.data, planning.model, self.sim.data)
                hand = np.array([actual_steps_to_joint_rad(joint, self.leader_bus.servo(SO_JOINTS.index(joint) + 1)
                                                           .actuator.position_steps, LEADER_MOUNT_OFFSETS_STEPS)
                                 for joint in JOINT_NAMES])
            planning.set_joint_positions(hand)
            try:
                self._start_operator(planning)
            except RuntimeError as exc:
                # The policy left the scene where the operator's plan cannot go (a cube pushed or carried out of
                # reach): as a person would, the hand keeps the leader still and the episode runs out unfinished.
                logger.warning("The scripted operator cannot finish this episode from here (%s): it holds the "
                               "leader where it took it.", exc)
                with self.lock:
                    self.operator = None
                    self._idle_pose = hand

    def _start_operator(self, planning: SO101Sim, planner=None) -> None:
        # Planning (IK along the whole path) takes a good fraction of a second: done on a snapshot, outside
        # the lock, so the servo buses keep answering in time meanwhile.
        operator = (planner or plan_scripted_demonstration)(planning, self.task, self._operator_rng)
        with self.lock:
            self.operator = operator
            self._episode_start_s = self.sim.time_s

    def restart_demonstration(self) -> None:
        """The demonstration starts over from its first moment now (the scene stays): a command's episode starts
        with its first control packet, not when the scene was set up."""
        with self.lock:
            self._episode_start_s = self.sim.time_s

    @property
    def episode_time_s(self) -> float:
        return self.sim.time_s - self._episode_start_s

    @property
    def demonstration_done(self) -> bool:
        """The scripted operator has finished this episode's demonstration (the cube is released and the gripper lifted clear)."""
        return self.operator is not None and self.operator.done(self.episode_time_s)

    def leader_joint_targets(self) -> np.ndarray:
        """Where the operator's hand holds the leader now, in joint radians."""
        hand = self.calibration_hands.get("leader")
        held = hand.target() if hand is not None else None
        if held is not None:
            return held
        with self.lock:
            if self.operator is None:
                return self._idle_pose.copy()
            return self.operator.target_at(self.episode_time_s)

    def power_cycle_follower(self) -> None:
        """Switch the follower's servos off and on: latched faults (overload) clear and torque is off, as after
        an operator cycles a real arm's power supply."""
        with self.lock:
            for servo in self.follower_bus.servos:
                servo.power_cycle()

    def rest_follower(self) -> None:
        """The follower's servos cooled to ambient temperature, as after a rest between tries on a real arm."""
        with self.lock:
            for servo in self.follower_bus.servos:
                servo.thermal.rest()

    def is_success(self) -> bool:
        with self.lock:
            return self.sim.is_success(self.task)

    def demonstration_provenance(self) -> dict:
        """Where this episode's demonstration came from (per-episode metadata; one set of columns for all)."""
        return dict(getattr(self.operator, "provenance", None) or SCRIPTED_PROVENANCE)

    def task_object_positions(self) -> np.ndarray:
        """The objects where they are now, in the current task's terms (sim/features.OBJECT_POSITION_NAMES)."""
        with self.lock:
            return self.sim.task_object_positions(self.task)

    def named_object_positions(self) -> np.ndarray:
        """The objects where they are now, by name (sim/features.OBJECT_NAMED_POSITION_NAMES)."""
        with self.lock:
            return self.sim.named_object_positions()

    def status(self) -> dict:
        with self.lock:
            return {
                "task": self.task,
                "instruction": TASKS[self.task],
                "episode": self.episode,
                "is_success": self.sim.is_success(self.task),
                "sim_time_s": self.sim.time_s,
                "episode_time_s": self.episode_time_s,
                "demonstration_s": None if self.operator is None else self.operator.duration_s,
                "demonstration_done": self.demonstration_done,
            }

    def info(self) -> dict:
        return {
            "arm": "so101",
            "cameras": list(self.frames.cameras),
            "lockstep": self.lockstep,
            "control_period_s": self.control_period_s,
            "follower_port": self.follower_port,
            "leader_port": self.leader_port,
            "tasks": dict(TASKS),
        }

    # -- cameras ----------------------------------------------------------------------------------------------
    def frame(self, camera: str, width: int, height: int) -> tuple[np.ndarray, float]:
        """An RGB image of the scene as it is now, and the simulated time it shows."""
        return self.frames.render(camera, width, height)

    # -- calibration ------------------------------------------------------------------------------------------
    def calibration(self, role: str = "follower") -> dict[str, MotorCalibration]:
        """LeRobot calibration of this arm's follower or leader: homing at mid-range, ranges at the joint limits.

        Degrees then read as the simulated joint angle and the gripper's 0..100 spans closed..open.
        """
        offsets = self._mount_offsets(role)
        limits = self.sim.joint_limits()
        return {
            joint: MotorCalibration(id=i + 1, drive_mode=0,
                                    **physics_calibration_steps(joint, limits[JOINT_NAMES.index(joint)], offsets))
            for i, joint in enumerate(SO_JOINTS)
        }

    def write_calibration_file(self, path: str | Path, role: str = "follower") -> Path:
        """Save `calibration(role)` where LeRobot looks for it (`<calibration_dir>/<id>.json`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {name: vars(cal) for name, cal in self.calibration(role).items()}
        path.write_text(json.dumps(data, indent=4) + "\n")
        return path

    def _mount_offsets(self, role: str) -> dict[str, int]:
        if role == "follower":
            return self.arm.mount_offsets
        if role == "leader":
            return LEADER_MOUNT_OFFSETS_STEPS
        raise ValueError(f"role must be 'follower' or 'leader', got {role!r}")

    @property
    def calibrating(self) -> bool:
        """LeRobot's calibration flow is running on the follower or the leader."""
        return any(hand.active for hand in self.calibration_hands.values())

    def _after_write(self, role: str, address: int | None) -> None:
        if self.calibration_hands[role].after_write(address) == HOMING and role == "follower":
            # The prompt asked for the middle of the range before this reset; the hand has the arm there when
            # the homing read that follows it comes.
            with self.lock:
                self.sim.set_joint_positions(np.zeros(len(JOINT_NAMES)))
                self.sim.data.qvel[self.arm.qvel_adr] = 0.0
                self.arm.sync_to_sim()
            self._apply_follower_hand()

    def _apply_follower_hand(self) -> None:
        """The follower's limp joints follow the calibration hand (the physics actuators hold them there)."""
        target = self.calibration_hands["follower"].target()
        if target is None and not self._follower_held:
            return
        self._follower_held = target is not None
        for joint, actuator in self.arm.actuators.items():
            actuator.hand_position_steps = None if target is None else joint_rad_to_actual_steps(
                joint, float(target[JOINT_NAMES.index(joint)]), self.arm.mount_offsets)

    def _write_calibration_to_servos(self) -> None:
        buses = [("follower", self.follower_bus)] + ([("leader", self.leader_bus)] if self.leader_bus else [])
        for role, bus in buses:
            for joint, cal in self.calibration(role).items():
                servo = bus.servo(cal.id)
                servo.memory.set_raw("Homing_Offset", fp.encode_sign_magnitude(cal.homing_offset, 11), persist=True)
                servo.memory.set_raw("Min_Position_Limit", cal.range_min, persist=True)
                servo.memory.set_raw("Max_Position_Limit", cal.range_max, persist=True)
                servo.power_cycle()
