"""Helpers for the arm tests: emulated arms on real ptys, stock LeRobot commands run as subprocesses, and a
'hand' that moves limp emulated joints the way a person moves a leader arm."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import wait_until

BIN = Path(sys.executable).parent
SO_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")


def emulated(arm: str, **kwargs):
    from lerobot_vla_plugin.emulator.bus import EmulatedBus

    return EmulatedBus.for_arm(arm, **kwargs)


def wait_for_packets(bus, count: int = 3) -> None:
    """Wait until the host has sent `count` more packets, i.e. it has seen the emulator's latest state."""
    start = bus.packets_handled
    wait_until(lambda: bus.packets_handled >= start + count, what=f"{count} packets on {bus.port}")


def move_by_hand(bus, steps_by_id: dict[int, float]) -> None:
    for servo_id, steps in steps_by_id.items():
        bus.servo(servo_id).actuator.hand_position_steps = float(steps)


def lerobot_env(home: Path) -> dict[str, str]:
    return {**os.environ, "HF_LEROBOT_HOME": str(home), "HF_LEROBOT_CALIBRATION": str(home / "calibration"),
            "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


class Command:
    """A stock command running as a subprocess, its output collected by a thread so prompts can be awaited."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], cwd: Path):
        self.name = name
        argv = [str(BIN / name), *args] if name.startswith("lerobot") else [sys.executable, name, *args]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env, cwd=cwd)
        self._chunks: list[str] = []
        self._joined = ""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        fd = self.proc.stdout.fileno()
        while True:
            data = os.read(fd, 65536)  # big reads: the commands print progress many times a second
            if not data:
                return
            with self._lock:
                self._chunks.append(data.decode(errors="replace"))

    @property
    def output(self) -> str:
        with self._lock:
            if self._chunks:
                self._joined += "".join(self._chunks)
                self._chunks.clear()
            return self._joined

    def wait_for(self, text: str, timeout_s: float = 120.0, after: int = 0) -> int:
        """Wait until `text` appears in the output (after offset `after`); returns the offset just past it."""
        deadline = time.monotonic() + timeout_s
        while True:
            index = self.output.find(text, after)
            if index >= 0:
                return index + len(text)
            if self.proc.poll() is not None:
                self._reader.join(timeout=5)
                index = self.output.find(text, after)
                if index >= 0:
                    return index + len(text)
                raise AssertionError(f"{self.name} exited ({self.proc.returncode}) before printing {text!r}:\n"
                                     f"{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not print {text!r}:\n{self.tail()}")
            time.sleep(0.02)

    def send(self, line: str = "") -> None:
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def finish(self, timeout_s: float = 120.0) -> int:
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.name} did not finish:\n{self.tail()}") from None
        self._reader.join(timeout=5)
        return self.proc.returncode

    def tail(self, n: int = 4000) -> str:
        return self.output[-n:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


ENTRY_POINTS = str(Path(__file__).with_name("entry_points.py"))


class CommandSequence(Command):
    """Stock console scripts run one after the other in one interpreter (see entry_points.py)."""

    def __init__(self, plan: list[tuple[str, list[str]]], env: dict[str, str], cwd: Path):
        import json

        super().__init__(ENTRY_POINTS, [json.dumps(plan)], env, cwd)
        self.plan = plan
        self._offset = 0

    def started(self, index: int) -> None:
        self._offset = self.wait_for(f"<<START {index} ")

    def ended(self, index: int, timeout_s: float = 180.0) -> int:
        end = self.wait_for(f"<<END {index} rc=", timeout_s=timeout_s)
        rc = int(self.output[end:].split(">>", 1)[0])
        self._offset = end
        return rc

    def next(self) -> None:
        """Let the next command start."""
        self.send()

    def wait_for(self, text: str, timeout_s: float = 180.0, after: int | None = None) -> int:
        return super().wait_for(text, timeout_s, self._offset if after is None else after)

    def section(self, index: int) -> str:
        start = self.output.find(f"<<START {index} ")
        end = self.output.find(f"<<END {index} ")
        return self.output[start: end if end >= 0 else None]


@pytest.fixture
def commands():
    """Start stock commands; any still running at the end of the test is killed."""
    started: list[Command] = []

    def start(name_or_plan, args_or_env, env_or_cwd, cwd: Path | None = None) -> Command:
        if isinstance(name_or_plan, list):
            command = CommandSequence(name_or_plan, args_or_env, env_or_cwd)
        else:
            command = Command(name_or_plan, args_or_env, env_or_cwd, cwd)
        started.append(command)
        return command

    yield start
    for command in started:
        command.kill()


def drive_calibration(command: Command, bus, *, middle: float = 2100, swing: float = 600) -> None:
    """Play the user in LeRobot's calibration flow: centre the arm, sweep every joint, press ENTER twice."""
    ids = [servo.id for servo in bus.servos]
    command.wait_for("middle of its range of motion and press ENTER")
    move_by_hand(bus, dict.fromkeys(ids, middle))
    command.send()
    command.wait_for("Press ENTER to stop")
    wait_for_packets(bus)
    for target in (middle - swing, middle + swing, middle):
        move_by_hand(bus, dict.fromkeys(ids, target))
        wait_for_packets(bus)
    command.send()


def write_calibration(device, calibration) -> None:
    """Give a device a calibration both in its servos' EEPROM and in its JSON file, without prompts."""
    bus = device.bus
    bus.connect()
    bus.disable_torque()
    bus.write_calibration(calibration)
    bus.close_port()
    device.calibration = calibration
    device._save_calibration()
    bus.calibration = calibration


def so_calibration(range_min: int = 1000, range_max: int = 3000):
    from lerobot.motors.motors_bus import MotorCalibration

    return {j: MotorCalibration(i + 1, 0, 0, 0 if j == "wrist_roll" else range_min,
                                4095 if j == "wrist_roll" else range_max) for i, j in enumerate(SO_JOINTS)}
