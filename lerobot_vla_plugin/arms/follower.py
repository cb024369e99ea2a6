"""The follower behaviour all our robots share: LeRobot's Robot API with safety on by default.

Compared with LeRobot's SO/Koch followers:
- connect never moves the arm: Goal_Position := Present_Position before torque comes on;
- every goal is checked (finite, calibrated limits), a far first command is ramped, each step is clamped
  against the last observed position (`max_relative_target`, on by default, validated);
- one control tick is one USB transfer (goal write + position read), and `get_observation` reuses that read
  while it is fresher than a new read could be;
- servo faults seen in replies, and low-rate health checks, take torque off with the servo named;
- torque goes off on disconnect, exceptions, Ctrl-C, SIGTERM and interpreter exit (`exit_guard`).
"""

from __future__ import annotations

import logging
import threading
import time
from functools import cached_property

from lerobot.cameras.utils import make_cameras_from_configs
from lerobot.motors.motors_bus import Motor
from lerobot.robots.robot import Robot
from lerobot.utils.errors import DeviceAlreadyConnectedError, DeviceNotConnectedError

from ..motors.errors import ServoNotRespondingError, ServoStatusError
from . import exit_guard
from .definitions import supply_for
from .health import HealthLimits, HealthMonitor, SafetyStop
from .safety import GoalGuard, joint_limits, validate_max_relative_target

logger = logging.getLogger(__name__)

_FAULT_ADVICE = {
    "stopped answering": "Check its cable and power, then run `lerobot-vla doctor`.",
    "overload": "Free the joint or reduce the load, then power-cycle the arm.",
    "overheat": "Let it cool down and reduce the load it holds.",
}


class ArmFollower(Robot):
    """Base class; subclasses set `config_class`, `name`, `bus_class` and implement `_make_motors`,
    `_configure_motors` and `calibrate`."""

    bus_class: type
    # Joints calibrated over a full turn (0..4095) instead of a recorded range.
    full_turn_motors: tuple[str, ...] = ("wrist_roll",)

    def __init__(self, config):
        super().__init__(config)
        self.config = config
        motors = self._make_motors()
        # Validate at construction so a bad value fails before anything is connected or torqued.
        self._max_step = validate_max_relative_target(config.max_relative_target, motors)
        self._health_limits = HealthLimits(
            check_period_s=config.health_check_period_s, temperature_warn_c=config.temperature_warn_c,
            temperature_stop_c=config.temperature_stop_c, load_warn_percent=config.load_warn_percent)
        self.bus = self.bus_class(port=config.port, motors=motors, calibration=self.calibration)
        self.cameras = make_cameras_from_configs(config.cameras)
        self._bus_lock = threading.RLock()
        self._guard: GoalGuard | None = None
        self._monitor: HealthMonitor | None = None
        self._present: dict[str, float] | None = None
        self._present_at_s = 0.0
        self._last_tick_s = 0.0
        self._fault: SafetyStop | None = None
        self._watchdog_stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self.ticks = 0

    # -- what subclasses provide ------------------------------------------------------------------------------

    def _make_motors(self) -> dict[str, Motor]:
        raise NotImplementedError

    def _configure_motors(self) -> None:
        """Operating modes, gains and limits, written with torque off."""
        raise NotImplementedError

    def setup_motors(self) -> None:
        """Assign ids and baud rate one motor at a time, as LeRobot's own arms do (gripper first)."""
        from .motor_setup import setup_motors

        setup_motors(self)

    # -- features ---------------------------------------------------------------------------------------------

    @property
    def _motors_ft(self) -> dict[str, type]:
        return {f"{motor}.pos": float for motor in self.bus.motors}

    @property
    def _cameras_ft(self) -> dict[str, tuple]:
        return {cam: (self.config.cameras[cam].height, self.config.cameras[cam].width, 3) for cam in self.cameras}

    @cached_property
    def observation_features(self) -> dict[str, type | tuple]:
        return {**self._motors_ft, **self._cameras_ft}

    @cached_property
    def action_features(self) -> dict[str, type]:
        return self._motors_ft

    @property
    def is_connected(self) -> bool:
        return self.bus.is_connected and all(cam.is_connected for cam in self.cameras.values())

    @property
    def is_calibrated(self) -> bool:
        return self.bus.is_calibrated

    # -- lifecycle --------------------------------------------------------------------------------------------

    def connect(self, calibrate: bool = True) -> None:
        if self.is_connected:
            raise DeviceAlreadyConnectedError(f"{self} is already connected.")
        self.bus.connect()
        try:
            if not self.is_calibrated and calibrate:
                logger.info("Mismatch between calibration values in the motor and the calibration file or no "
                            "calibration file found")
                self.calibrate()
            for cam in self.cameras.values():
                cam.connect()
            self.configure()
        except BaseException:
            self._close_after_failed_connect()
            raise
        logger.info(f"{self} connected.")

    def _close_after_failed_connect(self) -> None:
        self._stop_watchdog()
        if self.bus.is_connected:
            self.bus.safe_torque_off()
            self.bus.close_port()
        for cam in self.cameras.values():
            if cam.is_connected:
                try:
                    cam.disconnect()
                except Exception as exc:  # noqa: BLE001
                    logger.warning("Could not disconnect camera %s: %s", cam, exc)
        exit_guard.unregister(self)

    def configure(self) -> None:
        with self._bus_lock:
            self.bus.disable_torque()
            self._configure_motors()
            self._hold_present_pose()
            self.bus.enable_torque()
            self._fault = None
            self._present = None
            self._guard = None
            if self.bus.calibration:
                self._present = self.bus.sync_read("Present_Position")
                self._present_at_s = time.perf_counter()
        if self.config.disable_torque_on_disconnect:
            exit_guard.register(self)
        self._start_watchdog()

    def _hold_present_pose(self) -> None:
        """Goal := present, in raw steps, so torque-on holds the arm where it is (no stale goal to chase)."""
        present = self.bus.sync_read("Present_Position", normalize=False)
        for motor, steps in present.items():
            self.bus.write("Goal_Position", motor, steps, normalize=False)

    def disconnect(self) -> None:
        """Torque off and close the bus, then the cameras. A camera that already died does not stop the arm
        from being made safe: only a robot with nothing left connected refuses."""
        if not self.bus.is_connected and not any(cam.is_connected for cam in self.cameras.values()):
            raise DeviceNotConnectedError(f"{self} is not connected.")
        self._stop_watchdog()
        try:
            if self.bus.is_connected:
                with self._bus_lock:
                    self.bus.disconnect(self.config.disable_torque_on_disconnect)
        finally:
            exit_guard.unregister(self)
            for cam in self.cameras.values():
                if not cam.is_connected:
                    continue
                try:
                    cam.disconnect()
                except Exception as exc:  # noqa: BLE001 - the arm is what must be safe; report the camera
                    logger.warning("Could not disconnect camera %s: %s", cam, exc)
        logger.info(f"{self} disconnected.")

    def emergency_torque_off(self, reason: str) -> None:
        """Immediate torque-off (one sync write, no reply awaited); safe to call from a signal handler."""
        if not self.bus.is_connected:
            return
        got_lock = self._bus_lock.acquire(timeout=0.2)
        try:
            self.bus.sync_write("Torque_Enable", dict.fromkeys(self.bus.motors, 0), normalize=False)
            logger.warning("%s: torque off (%s).", self, reason)
        finally:
            if got_lock:
                self._bus_lock.release()

    def release(self, reason: str) -> None:
        """Confirmed torque-off and port close, for interpreter exit."""
        self._stop_watchdog()
        if self.bus.is_connected:
            failed = self.bus.safe_torque_off()
            self.bus.close_port()
            logger.warning("%s: torque off (%s)%s.", self, reason,
                           f"; could not confirm on {', '.join(failed)}" if failed else "")
        exit_guard.unregister(self)

    # -- control ----------------------------------------------------------------------------------------------

    def _require_ready(self) -> None:
        if not self.is_connected:
            raise DeviceNotConnectedError(f"{self} is not connected. Run `.connect()` first.")
        if self._fault is not None:
            raise SafetyStop(f"{self._fault} Torque stays off until the robot is reconnected.", self._fault.motor,
                             self._fault.silent)
        if not self.bus.calibration:
            raise RuntimeError(f"{self} is not calibrated: run `lerobot-calibrate --robot.type={self.config.type} "
                               f"--robot.port={self.config.port} --robot.id={self.id}`.")

    @property
    def guard(self) -> GoalGuard:
        if self._guard is None:
            resolution = {m: self.bus.model_resolution_table[motor.model] for m, motor in self.bus.motors.items()}
            limits = joint_limits(self.bus.motors, self.bus.calibration, resolution)
            self._guard = GoalGuard(limits, self._max_step, ramp_threshold=self.config.ramp_threshold,
                                    ramp_speed_per_s=self.config.ramp_speed, arm_name=str(self))
        return self._guard

    @property
    def monitor(self) -> HealthMonitor:
        if self._monitor is None:
            supplies = {m: supply_for(motor.model, "follower") for m, motor in self.bus.motors.items()}
            self._monitor = HealthMonitor(self.bus, self._health_limits, supplies, arm_name=str(self))
        return self._monitor

    def get_observation(self) -> dict:
        self._require_ready()
        with self._bus_lock:
            fresh = (self._present is not None
                     and time.perf_counter() - self._present_at_s <= self.config.observation_reuse_ms / 1000.0)
            if not fresh:
                self._present = self._guarded(lambda: self.bus.sync_read("Present_Position"))
                self._present_at_s = time.perf_counter()
            obs = {f"{motor}.pos": value for motor, value in self._present.items()}
        for cam_key, cam in self.cameras.items():
            obs[cam_key] = cam.read_latest()
        return obs

    def send_action(self, action: dict) -> dict:
        """Send a safe version of `action` and return what was really sent (like LeRobot's followers)."""
        self._require_ready()
        goal = {key.removesuffix(".pos"): val for key, val in action.items() if key.endswith(".pos")}
        with self._bus_lock:
            if self._present is None:
                self._present = self._guarded(lambda: self.bus.sync_read("Present_Position"))
            safe = self.guard.filter(goal, self._present)
            self._present = self._guarded(lambda: self.bus.sync_write_read("Goal_Position", safe))
            self._present_at_s = self._last_tick_s = time.perf_counter()
            self.ticks += 1
            fatal = self.monitor.fatal_from_status()
            if fatal is None and self.monitor.due():
                fatal = self.monitor.check_now()
            if fatal is not None:
                self._stop_for_fault(*fatal)
        return {f"{motor}.pos": value for motor, value in safe.items()}

    def _guarded(self, transfer):
        """Run one bus transfer; a servo that stays silent through the retries, or fails, stops the arm."""
        try:
            return transfer()
        except ServoNotRespondingError as exc:
            names = ", ".join(exc.motors.values())
            self._stop_for_fault(names, "stopped answering", cause=exc, silent=True)
        except ServoStatusError as exc:
            self._stop_for_fault(exc.motor, ", ".join(exc.errors), cause=exc)

    @property
    def fault(self) -> SafetyStop | None:
        """The servo fault that took torque off, until the robot is reconnected; None while it may move."""
        return self._fault

    def _stop_for_fault(self, motor: str, reason: str, cause: BaseException | None = None, silent: bool = False):
        # Recorded first: from the moment torque starts going off, no command may be sent.
        self._fault = SafetyStop(f"{self}: servo '{motor}' {reason}; torque is being taken off.", motor, silent)
        failed = self.bus.safe_torque_off()
        if self.bus.emulated and "stopped answering" in reason:
            advice = ("The servo emulator serving this port stopped answering in time: check that it still runs "
                      "(a heavily loaded machine can make it late).")
        else:
            advice = next((text for key, text in _FAULT_ADVICE.items() if key in reason),
                          "Check the servo, then reconnect.")
        ids = ", ".join(f"id {self.bus.motors[m].id}" for m in motor.split(", ") if m in self.bus.motors)
        message = f"{self}: torque off because servo '{motor}' ({ids}) on {self.bus.port} {reason}. {advice}"
        if failed:
            cut_power = "stop the emulator" if self.bus.emulated else "switch off the arm's power supply"
            message += f" Could not confirm torque off on {', '.join(failed)}: {cut_power}."
        logger.error(message)
        self._fault = SafetyStop(message, motor, silent)
        raise self._fault from cause

    # -- low-rate health checks while no control tick runs ---------------------------------------------------

    def _start_watchdog(self) -> None:
        if self._watchdog is not None and self._watchdog.is_alive():
            return
        self._watchdog_stop.clear()
        self._watchdog = threading.Thread(target=self._watch, name=f"health {self.bus.port}", daemon=True)
        self._watchdog.start()

    def _stop_watchdog(self) -> None:
        self._watchdog_stop.set()
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.join(timeout=2.0)
        self._watchdog = None

    def _watch(self) -> None:
        """When the control loop is idle (resets, pauses) the arm still holds torque: keep checking it."""
        period = self._health_limits.check_period_s
        while not self._watchdog_stop.wait(period):
            if self._fault is not None or not self.bus.is_connected or not self.bus.calibration:
                continue
            if time.perf_counter() - self._last_tick_s < period:
                continue  # ticks are running and check health themselves
            if not self._bus_lock.acquire(timeout=0.05):
                continue
            try:
                fatal = self.monitor.check_now()
                if fatal is not None:
                    self._stop_for_fault(*fatal)
            except SafetyStop:
                pass  # recorded in self._fault; the next command raises it
            except Exception as exc:  # noqa: BLE001 - a monitoring thread must not die silently
                logger.warning("%s: health check failed: %s", self, exc)
            finally:
                self._bus_lock.release()
