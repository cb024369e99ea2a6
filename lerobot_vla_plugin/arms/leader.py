"""The leader behaviour all our teleoperators share: LeRobot's Teleoperator API, a read one step ahead, and a
`disconnect` that never raises.

LeRobot's teleop loop reads the follower, then the leader, then writes the follower: two round trips one after
the other, each mostly USB latency. When the loop runs fast, our leader starts its next read on a worker
thread as soon as `get_action` returns, so the leader's round trip overlaps the follower's. A reading is only
used while younger than `prefetch_max_age_ms`; a slow loop (e.g. 30 fps recording) reads synchronously.

`lerobot-teleoperate` and `lerobot-record` disconnect the teleoperator before the robot in one `finally`
block: if the leader's disconnect raised, the follower would stay torqued. Ours logs instead.
"""

from __future__ import annotations

import logging
import threading
import time

from lerobot.motors.motors_bus import Motor
from lerobot.teleoperators.teleoperator import Teleoperator
from lerobot.utils.errors import DeviceAlreadyConnectedError, DeviceNotConnectedError

from .definitions import supply_for

logger = logging.getLogger(__name__)


class ReadAhead:
    """Runs `read()` on a worker thread one call ahead of the caller, when calls come often enough."""

    def __init__(self, read, max_age_s: float, name: str, clock=time.perf_counter):
        self._read = read
        self.max_age_s = max_age_s
        self._clock = clock
        self._wake = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self._requested_at: float | None = None
        self._result = None
        self._error: BaseException | None = None
        self._last_call_s: float | None = None
        self._closed = False
        self.used = 0
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            try:
                self._result, self._error = self._read(), None
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, who decides
                self._result, self._error = None, exc
            self._done.set()

    def get(self):
        now = self._clock()
        value = None
        if self._requested_at is not None:
            self._done.wait()
            requested_at, self._requested_at = self._requested_at, None
            if self._error is None and now - requested_at <= self.max_age_s:
                value = self._result
                self.used += 1
        if value is None:
            value = self._read()  # the worker is idle here, so the bus is ours
        if self._last_call_s is not None and now - self._last_call_s <= self.max_age_s:
            self._done.clear()
            self._requested_at = self._clock()
            self._wake.set()
        self._last_call_s = now
        return value

    def wait_idle(self) -> None:
        """Let an in-flight read finish (before anyone else touches the bus)."""
        self._done.wait(timeout=5.0)
        self._requested_at = None

    def close(self) -> None:
        self.wait_idle()
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=2.0)


class ArmLeader(Teleoperator):
    """Base class; subclasses set `config_class`, `name`, `bus_class` and implement `_make_motors`,
    `configure` and `calibrate`."""

    bus_class: type
    # Whether the leader's servos can be torqued to hold a pose: the rollout's hand-off then drives the leader to
    # the follower's pose before a person takes it (see rollout/handoff.py), else it ramps the follower instead.
    can_hold_pose = False

    def __init__(self, config):
        super().__init__(config)
        self.config = config
        self.bus = self.bus_class(port=config.port, motors=self._make_motors(), calibration=self.calibration)
        self._read_ahead: ReadAhead | None = None
        self._holding = False

    def _make_motors(self) -> dict[str, Motor]:
        raise NotImplementedError

    def setup_motors(self) -> None:
        """Assign ids and baud rate one motor at a time, as LeRobot's own arms do (gripper first)."""
        from .motor_setup import setup_motors

        setup_motors(self)

    @property
    def action_features(self) -> dict[str, type]:
        return {f"{motor}.pos": float for motor in self.bus.motors}

    @property
    def feedback_features(self) -> dict[str, type]:
        return {}

    @property
    def is_connected(self) -> bool:
        return self.bus.is_connected

    @property
    def is_calibrated(self) -> bool:
        return self.bus.is_calibrated

    def connect(self, calibrate: bool = True) -> None:
        if self.is_connected:
            raise DeviceAlreadyConnectedError(f"{self} is already connected.")
        self.bus.connect()
        try:
            if not self.is_calibrated and calibrate:
                logger.info("Mismatch between calibration values in the motor and the calibration file or no "
                            "calibration file found")
                self.calibrate()
            self.configure()
            self._warn_about_supply()
        except BaseException:
            self.bus.safe_torque_off()
            self.bus.close_port()
            raise
        if self.config.prefetch_max_age_ms > 0:
            self._read_ahead = ReadAhead(lambda: self.bus.sync_read("Present_Position"),
                                         self.config.prefetch_max_age_ms / 1000.0, name=f"leader {self.bus.port}")
        logger.info(f"{self} connected.")

    def _warn_about_supply(self) -> None:
        """Leaders are 7.4 V/5 V servos; a 12 V supply (the follower's) is the classic mix-up."""
        health = self.bus.read_health()
        for motor, h in health.items():
            supply = supply_for(self.bus.motors[motor].model, "leader")
            if h.voltage_v is not None and not supply.min_v <= h.voltage_v <= supply.max_v:
                logger.warning("Leader servo '%s' (id %d) on %s sees %.1f V (expected %.1f-%.1f V). %s", motor,
                               h.servo_id, self.bus.port, h.voltage_v, supply.min_v, supply.max_v, supply.advice)

    def get_action(self) -> dict[str, float]:
        if not self.is_connected:
            raise DeviceNotConnectedError(f"{self} is not connected. Run `.connect()` first.")
        if self._read_ahead is not None:
            positions = self._read_ahead.get()
        else:
            positions = self.bus.sync_read("Present_Position")
        return {f"{motor}.pos": value for motor, value in positions.items()}

    def hold_pose(self, action: dict[str, float]) -> None:
        """Torque on, holding `action` (the units `get_action` reads). The goal is written before the torque, so
        the first call holds the leader where it is when given its present pose."""
        if not self.can_hold_pose:
            raise NotImplementedError(f"{self} cannot hold a pose.")
        if self._read_ahead is not None:
            self._read_ahead.wait_idle()  # the bus is ours for the write
        self.bus.sync_write("Goal_Position", {key.removesuffix(".pos"): value for key, value in action.items()})
        if not self._holding:
            self.bus.enable_torque()
            self._holding = True

    def release_pose(self) -> None:
        """Torque off: the leader is a person's again."""
        if self._read_ahead is not None:
            self._read_ahead.wait_idle()
        self.bus.disable_torque()
        self._holding = False

    def send_feedback(self, feedback: dict[str, float]) -> None:
        raise NotImplementedError(f"{self} has no force feedback.")

    def disconnect(self) -> None:
        """Never raises (beyond 'not connected'): a failing leader must not skip the follower's torque-off."""
        if not self.is_connected:
            raise DeviceNotConnectedError(f"{self} is not connected.")
        try:
            if self._read_ahead is not None:
                self._read_ahead.close()
                self._read_ahead = None
            self.bus.disconnect()
        except Exception as exc:  # noqa: BLE001
            logger.error("%s: disconnect failed (%s); closing the port anyway.", self, exc)
            self.bus.close_port()
        logger.info(f"{self} disconnected.")
