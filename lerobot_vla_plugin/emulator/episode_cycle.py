"""Episodes of stock `lerobot-*` commands on the virtual SO-101: a new scene and demonstration for each one, and
each one's outcome reported.

Stock `lerobot-record` never tells a robot where its episodes begin or end: it drives the arm through the episode,
through the reset phase (the same teleoperator reads and goal writes) and then saves the episode, touching no servo
until the next one starts. That save is the one trace an episode boundary leaves on the bus, so it is the signal:
control traffic (Present_Position reads and Goal_Position writes, on the follower or the leader; health reads do
not count) that pauses for `pause_s` ends the episode. Its outcome is evaluated by `evaluation.outcome` and
reported, and the scene is reset at once to the next seed, the scripted operator's next demonstration ready; the
demonstration's clock starts with the next control packet. A new `lerobot-record` run starts the same way (its
connect comes after a pause), so one emulator serves any number of runs.

Only an episode in which the follower was commanded (Goal_Position sync writes, frame after frame, as every control
loop sends) is reported; connect-time reads and writes are not an episode, nor is a pause before the first frame. A calibration (emulator/calibration_hand.py) is not an
episode either: the scene it disturbed is set up again, same seed, once its traffic pauses.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from lerobot_vla_plugin.evaluation.outcome import EpisodeMonitor, EpisodeResult
from lerobot_vla_plugin.motors.feetech import protocol as fp
from lerobot_vla_plugin.motors.feetech.tables import MODELS
from lerobot_vla_plugin.sim.scene_seeds import evaluation_scene_seed, recording_scene_seed
from lerobot_vla_plugin.sim.so101 import TASKS

from .physics import CONTROL_TICK_READ

SCENE_RANGES = {"recording": recording_scene_seed, "evaluation": evaluation_scene_seed}
_GOAL_POSITION_ADDRESS = MODELS["sts3215"].registers["Goal_Position"].address
_READS = (fp.Instruction.READ, fp.Instruction.SYNC_READ)
_WRITES = (fp.Instruction.WRITE, fp.Instruction.SYNC_WRITE)
_POLL_S = 0.02
# A control loop writes goals frame after frame; a single goal write is a connect setting goal := present.
_LOOP_GOAL_WRITES = 2


def is_control_traffic(packet) -> bool:
    """A control loop's packet: a Present_Position read or a Goal_Position write."""
    if packet.code in _READS:
        return bytes(packet.params[:2]) == CONTROL_TICK_READ
    return packet.code in _WRITES and bool(packet.params) and packet.params[0] == _GOAL_POSITION_ADDRESS


class EpisodeCycle:
    """Runs `virtual`'s episodes for commands that do not know about it; see the module docstring.

    seed: scene seeds come from `scenes` ("recording" or "evaluation", sim/scene_seeds.py) from this seed on.
    results_path: each finished episode is appended there as one JSON line (`EpisodeResult` fields plus
    `session`, the emulator's start time); `say` prints the one-line summary.
    """

    def __init__(self, virtual, *, pause_s: float, seed: int = 0, scenes: str = "recording",
                 results_path: str | Path, say: Callable[[str], None] = print):
        if scenes not in SCENE_RANGES:
            raise ValueError(f"scenes must be one of {sorted(SCENE_RANGES)}, got {scenes!r}")
        if not pause_s > virtual.control_period_s:
            raise ValueError(f"the episode pause ({pause_s:g} s) must be longer than one control period "
                             f"({virtual.control_period_s:.3f} s), or every frame would end an episode")
        self.virtual = virtual
        self.pause_s = float(pause_s)
        self.seed = seed
        self.scene_seed = SCENE_RANGES[scenes]
        self.results_path = Path(results_path).expanduser().resolve()
        self.session = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._say = say
        self._lock = threading.Lock()
        self._index = 0
        self._monitor: EpisodeMonitor | None = None
        self._last_traffic_s: float | None = None
        self._commanded = False
        self._goal_writes = 0
        self._disturbed = False
        self._clock_started = False
        self._first_traffic_s = 0.0
        self._ticks = 0
        self._start_sim_s = 0.0
        self._success_sim_s: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="episode cycle", daemon=True)

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> EpisodeCycle:
        self.results_path.parent.mkdir(parents=True, exist_ok=True)
        self._set_scene()
        self.virtual.episode_listener = self
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching; an episode that was commanded but not yet reported is reported now."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        self.virtual.episode_listener = None
        with self._lock:
            finished, last = self._commanded, self._last_traffic_s
            self._commanded = False
        if finished:
            self._report(last)

    @property
    def episode(self) -> int:
        """Index of the current scene (0 for the first)."""
        return self._index

    # -- called by the virtual arm's bus threads --------------------------------------------------------------
    def on_packet(self, role: str, packet) -> None:
        if not is_control_traffic(packet):
            return
        with self._lock:
            now = time.monotonic()
            self._last_traffic_s = now
            if self.virtual.calibrating:
                self._disturbed = True
                self._commanded = False  # traffic from a calibration's connect is not an episode either
                self._goal_writes = 0
                return
            if not self._clock_started:
                self._clock_started = True
                self._first_traffic_s = now
                self.virtual.restart_demonstration()
                self._start_sim_s = self.virtual.sim.time_s
            if role == "follower" and packet.code == fp.Instruction.SYNC_WRITE:
                self._goal_writes += 1
                self._commanded = self._goal_writes >= _LOOP_GOAL_WRITES

    def on_control_tick(self) -> None:
        """After each follower control tick: the outcome is followed tick by tick, as `lerobot-vla eval` does."""
        if self.virtual.calibrating:
            return
        self._ticks += 1
        monitor = self._monitor
        if monitor is None:
            return
        with self.virtual.lock:
            done = monitor.update()
            sim_now = self.virtual.sim.time_s
        if done and self._success_sim_s is None:
            self._success_sim_s = sim_now - self._start_sim_s

    # -- the watcher ------------------------------------------------------------------------------------------
    def _watch(self) -> None:
        while not self._stop.wait(_POLL_S):
            with self._lock:
                last = self._last_traffic_s
                paused = (last is not None and not self.virtual.calibrating
                          and time.monotonic() - last >= self.pause_s)
                finished, redo = paused and self._commanded, paused and self._disturbed
                if paused:
                    self._commanded = self._disturbed = False
                    self._goal_writes = 0
                    self._last_traffic_s = None
                    if not finished:  # nothing but connect traffic before this pause: the episode has yet to start
                        self._clock_started = False
                        self._ticks = 0
            if finished:
                self._report(last)
                self._index += 1
            if finished or redo:
                self._set_scene()

    def _set_scene(self) -> None:
        """The current index's scene and demonstration; the demonstration's clock waits for control traffic.

        Traffic that comes while the demonstration is being planned already belongs to the new episode (the
        operator holds the leader still meanwhile)."""
        with self._lock:
            self._monitor = None
            self._clock_started = False
            self._ticks = 0
            self._success_sim_s = None
            self._start_sim_s = self.virtual.sim.time_s
        self.virtual.new_episode(seed=self.scene_seed(self.seed, self._index))
        with self.virtual.lock:
            self._monitor = EpisodeMonitor(self.virtual.sim, self.virtual.task)

    def _report(self, last_traffic_s: float) -> None:
        virtual, monitor = self.virtual, self._monitor
        if monitor is None:  # ended while its demonstration was still being planned: nothing happened to judge
            return
        with virtual.lock:
            failure_mode = monitor.failure_mode()
            simulated_s = virtual.sim.time_s - self._start_sim_s
        result = EpisodeResult(
            episode=self._index, task=virtual.task, instruction=TASKS[virtual.task],
            scene_seed=self.scene_seed(self.seed, self._index), success=monitor.success, failure_mode=failure_mode,
            time_to_success_s=self._success_sim_s, simulated_s=round(simulated_s, 4),
            wall_s=round(last_traffic_s - self._first_traffic_s, 3), ticks=self._ticks,
            target_touched=monitor.target_touched, target_lifted=monitor.target_lifted,
            other_touched=monitor.other_touched)
        with self.results_path.open("a") as f:
            f.write(json.dumps({"session": self.session, **dataclasses.asdict(result)}) + "\n")
        outcome = "success" if result.success else f"failure ({failure_mode})"
        self._say(f"episode {result.episode}: {result.instruction!r}, scene seed {result.scene_seed}: {outcome}")
