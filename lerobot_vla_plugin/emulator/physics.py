"""MuJoCo-backed servo shafts: the emulated STS3215s of a follower bus move joints of one `SO101Sim`.

Each emulated servo keeps its own control table, homing, limits, torque/lock rules and fault behaviour
(emulator/feetech.py); only what moves the output shaft is replaced. A `PhysicsJointActuator` turns the
servo's goal (actual encoder steps) into the joint's position-actuator target and reports the simulated
joint's position, velocity and torque back as encoder steps and load.

Time has two modes:

- wall clock: simulated time follows `time.perf_counter()`. Physics is advanced lazily, whenever a bus
  transaction, a camera frame or a caller needs the present state, so nothing runs while nobody looks.
- lockstep: simulated time advances by exactly one control period per *control tick*, and by nothing
  else. The tick is the follower's sync read of Present_Position (LeRobot's `get_observation`, our
  follower's `sync_write_read`; exactly address 56, 2 bytes): the goals written so far act for one
  period, then the positions are read back. A slow host then records correct, just slower than real-time, data.
"""

from __future__ import annotations

import math
import threading
import time

import mujoco
import numpy as np

from lerobot_vla_plugin.sim.so101 import JOINT_NAMES, SO101Sim

STEPS_PER_TURN = 4096
STEPS_PER_RAD = STEPS_PER_TURN / (2 * math.pi)
CENTER_STEP = 2048
STALL_TORQUE_NM = 2.94  # STS3215 12 V, the model's full force range; load 1.0 = this torque
MAX_CATCH_UP_S = 2.0  # wall-clock mode: a longer silence is skipped rather than simulated
_SETPOINT_CHUNK_S = 0.01  # speed-limited setpoints are updated at this resolution
LOAD_FILTER_S = 0.05  # Present_Load is an average over tens of ms, not the instantaneous torque

# Where each joint's zero (middle of its range) falls on the servo's raw encoder, minus 2048: horns are
# never mounted exactly centred, so an uncalibrated arm reads off-centre values and homing matters.
MOUNT_OFFSETS_STEPS: dict[str, int] = {
    "shoulder_pan": 137,
    "shoulder_lift": -212,
    "elbow_flex": 95,
    "wrist_flex": -58,
    "wrist_roll": 241,
    "gripper": -120,
}

SYNC_READ = 0x82
# The control tick: a sync read of exactly Present_Position (address 56, 2 bytes). Wider reads starting there
# (a health read of 56..70) are not ticks, so low-rate monitoring does not change the simulated time.
CONTROL_TICK_READ = bytes([56, 2])


def joint_rad_to_actual_steps(joint: str, rad: float, mount_offsets: dict[str, int] = MOUNT_OFFSETS_STEPS) -> float:
    return CENTER_STEP + mount_offsets[joint] + rad * STEPS_PER_RAD


def actual_steps_to_joint_rad(joint: str, steps: float, mount_offsets: dict[str, int] = MOUNT_OFFSETS_STEPS) -> float:
    return (steps - CENTER_STEP - mount_offsets[joint]) / STEPS_PER_RAD


class PhysicsJointActuator:
    """The `Actuator` (emulator/servo.py) of one servo whose shaft is a joint of `arm.sim`.

    Torque on: the joint's position actuator follows a setpoint that moves toward the goal at the servo's
    speed limit, with force capped by the servo's Torque_Limit. Torque off: zero gain, the joint is passive
    (gravity, damping, friction), unless `hand_position_steps` is set, in which case a hand holds it there
    (the way a person poses a limp arm during calibration).
    """

    def __init__(self, arm: PhysicsArm, index: int):
        self.arm = arm
        self.index = index
        self.joint = JOINT_NAMES[index]
        self.torque_enabled = False
        self.goal_rad = 0.0
        self.setpoint_rad = 0.0
        self.max_speed_rad_s = 3400.0 / STEPS_PER_RAD
        self.hand_position_steps: float | None = None
        self.servo = None  # bound after the servo is built, to read its Torque_Limit

    # -- Actuator protocol ----------------------------------------------------------------------------------
    def set_goal(self, actual_steps: float, max_speed_steps_s: float, acceleration_steps_s2: float) -> None:
        with self.arm.lock:
            self.goal_rad = actual_steps_to_joint_rad(self.joint, actual_steps, self.arm.mount_offsets)
            self.max_speed_rad_s = max(1.0, max_speed_steps_s) / STEPS_PER_RAD

    def set_torque(self, enabled: bool) -> None:
        with self.arm.lock:
            if enabled and not self.torque_enabled:
                # A servo's motion profile starts from where the shaft is, not from an old setpoint.
                self.setpoint_rad = float(self.arm.sim.joint_positions()[self.index])
            self.torque_enabled = enabled

    def advance(self, now_s: float) -> None:
        self.arm.advance_to(now_s)

    @property
    def position_steps(self) -> float:
        return joint_rad_to_actual_steps(self.joint, float(self.arm.sim.data.qpos[self.arm.qpos_adr[self.index]]),
                                         self.arm.mount_offsets)

    @property
    def velocity_steps_s(self) -> float:
        return float(self.arm.sim.data.qvel[self.arm.qvel_adr[self.index]]) * STEPS_PER_RAD

    @property
    def load_fraction(self) -> float:
        if not self.torque_enabled:
            return 0.0
        force = float(self.arm._filtered_force_nm[self.index])
        return max(-1.0, min(1.0, force / STALL_TORQUE_NM))

    # -- physics side -----------------------------------------------------------------------------------------
    def torque_limit_nm(self) -> float:
        if self.servo is not None and self.servo.memory.has("Torque_Limit"):
            return STALL_TORQUE_NM * min(1000, self.servo.memory.get_raw("Torque_Limit")) / 1000.0
        return STALL_TORQUE_NM

    def _hand_target_rad(self) -> float | None:
        if self.torque_enabled or self.hand_position_steps is None:
            return None
        return actual_steps_to_joint_rad(self.joint, self.hand_position_steps, self.arm.mount_offsets)


class PhysicsArm:
    """One `SO101Sim` and the six actuators that expose its joints to emulated servos, plus the clock.

    All access to the simulation goes through `lock`, since bus threads, camera renders and the caller
    all touch it.
    """

    def __init__(self, sim: SO101Sim, *, lockstep: bool = False, control_period_s: float = 1 / 30,
                 clock=time.perf_counter, mount_offsets: dict[str, int] | None = None):
        if control_period_s <= 0:
            raise ValueError(f"control_period_s must be positive, got {control_period_s}")
        self.sim = sim
        self.lockstep = lockstep
        self.control_period_s = float(control_period_s)
        self.clock = clock
        self.mount_offsets = dict(MOUNT_OFFSETS_STEPS if mount_offsets is None else mount_offsets)
        self.lock = threading.RLock()
        self.ticks = 0
        model = sim.model
        self.qpos_adr = [int(model.jnt_qposadr[model.joint(n).id]) for n in JOINT_NAMES]
        self.qvel_adr = [int(model.jnt_dofadr[model.joint(n).id]) for n in JOINT_NAMES]
        self.actuator_ids = [int(model.actuator(n).id) for n in JOINT_NAMES]
        self._kp = model.actuator_gainprm[self.actuator_ids, 0].copy()
        self._kv = -model.actuator_biasprm[self.actuator_ids, 2].copy()
        self.actuators = {name: PhysicsJointActuator(self, i) for i, name in enumerate(JOINT_NAMES)}
        self._wall_origin_s: float | None = None
        self._carry_s = 0.0
        self._filtered_force_nm = np.zeros(len(JOINT_NAMES))
        self.sync_to_sim()

    # -- state ------------------------------------------------------------------------------------------------
    def sync_to_sim(self) -> None:
        """After the simulation was reset: setpoints and goals start where the joints now are."""
        with self.lock:
            q = self.sim.joint_positions()
            for actuator in self.actuators.values():
                actuator.setpoint_rad = actuator.goal_rad = float(q[actuator.index])
            self._apply_controls(0.0)
            self._filtered_force_nm[:] = 0.0
            self._wall_origin_s = None  # wall-clock mode re-anchors on the next advance

    def servo_time_s(self) -> float:
        """The clock the emulated servos run on: simulated time in lockstep, wall time otherwise."""
        return self.sim.time_s if self.lockstep else self.clock()

    # -- time -------------------------------------------------------------------------------------------------
    def advance_to(self, now_s: float) -> None:
        """Wall-clock mode: bring the simulation up to `now_s`. Lockstep mode: no effect (only ticks move time)."""
        if self.lockstep:
            return
        with self.lock:
            if self._wall_origin_s is None:
                self._wall_origin_s = now_s - self.sim.time_s
                return
            lag = (now_s - self._wall_origin_s) - self.sim.time_s
            if lag > MAX_CATCH_UP_S:
                self._wall_origin_s += lag - MAX_CATCH_UP_S
                lag = MAX_CATCH_UP_S
            if lag >= self.sim.control_timestep_s:
                self._step(lag)

    def tick(self) -> None:
        """Lockstep mode: one control period of physics. Called on every follower Present_Position sync read."""
        with self.lock:
            self.ticks += 1
            self._step(self.control_period_s)

    def _step(self, duration_s: float) -> None:
        """Whole physics substeps (the remainder carries over), with setpoints updated every few substeps and
        the actuator torques low-pass filtered like the load a servo reports."""
        model, data = self.sim.model, self.sim.data
        dt = model.opt.timestep
        self._carry_s += duration_s
        substeps = int(math.floor(self._carry_s / dt + 1e-9))
        self._carry_s -= substeps * dt
        per_chunk = max(1, round(_SETPOINT_CHUNK_S / dt))
        alpha = min(1.0, dt / LOAD_FILTER_S)
        ids = self.actuator_ids
        filtered = self._filtered_force_nm
        for k in range(substeps):
            if k % per_chunk == 0:
                self._apply_controls(min(per_chunk, substeps - k) * dt)
            mujoco.mj_step(model, data)
            filtered += alpha * (data.actuator_force[ids] - filtered)

    def _apply_controls(self, dt_s: float) -> None:
        """Setpoints move toward goals at the servo speed limit; gains and force limits follow torque state."""
        model, data = self.sim.model, self.sim.data
        for actuator in self.actuators.values():
            i = self.actuator_ids[actuator.index]
            hand = actuator._hand_target_rad()
            if actuator.torque_enabled:
                step = actuator.max_speed_rad_s * dt_s
                error = actuator.goal_rad - actuator.setpoint_rad
                actuator.setpoint_rad += max(-step, min(step, error))
                target, kp, kv, limit = actuator.setpoint_rad, self._kp[actuator.index], \
                    self._kv[actuator.index], actuator.torque_limit_nm()
            elif hand is not None:
                target, kp, kv, limit = hand, self._kp[actuator.index], self._kv[actuator.index], 10 * STALL_TORQUE_NM
            else:
                target, kp, kv, limit = float(data.qpos[self.qpos_adr[actuator.index]]), 0.0, 0.0, 0.0
            model.actuator_gainprm[i, 0] = kp
            model.actuator_biasprm[i, 1] = -kp
            model.actuator_biasprm[i, 2] = -kv
            model.actuator_forcerange[i] = (-limit, limit)
            lo, hi = model.actuator_ctrlrange[i]
            data.ctrl[i] = min(hi, max(lo, target))


class ControlTickLogic:
    """Wraps a follower's FeetechBusLogic so that a Present_Position sync read is a lockstep control tick.

    Servos are also handed the simulation's clock instead of the wall clock in lockstep mode, so their
    protection timers and heating run on simulated time.
    """

    def __init__(self, inner, arm: PhysicsArm):
        self._inner = inner
        self.arm = arm

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def handle(self, packet, line_baudrate: int, now_s: float):
        if not self.arm.lockstep:
            self.arm.advance_to(now_s)
            return self._inner.handle(packet, line_baudrate, now_s)
        if packet.code == SYNC_READ and packet.params[:2] == CONTROL_TICK_READ:
            self.arm.tick()
        return self._inner.handle(packet, line_baudrate, self.arm.sim.time_s)


def physics_calibration_steps(joint: str, joint_range_rad: np.ndarray, mount_offsets: dict[str, int]) -> dict:
    """What a careful LeRobot calibration of this joint records: homing at the middle, range at the limits."""
    homing_offset = CENTER_STEP + mount_offsets[joint] - 2047  # LeRobot: offset = actual_at_middle - 2047
    if joint == "wrist_roll":  # LeRobot records wrist_roll as the full turn
        return {"homing_offset": homing_offset, "range_min": 0, "range_max": 4095}
    lo, hi = (2047 + float(r) * STEPS_PER_RAD for r in joint_range_rad)
    return {"homing_offset": homing_offset, "range_min": int(math.ceil(lo)), "range_max": int(math.floor(hi))}
