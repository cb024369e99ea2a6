"""Honest cadence: what rate a take was really recorded at, measured per episode.

Datasets stamp frame i at i / fps whatever happened. When the loop ran slower, or a camera delivered the same
frame twice, the dataset silently claims motion faster or smoother than it was. So each take measures:

- achieved control rate, on the clock the data lives on: the wall clock for a real robot, the simulated clock
  for a lockstep virtual arm (where the data is exact however slow the machine is);
- each camera's delivered fps: distinct frames per second (a camera handing back the same frame object again
  delivered nothing new);
- loop period statistics on the wall clock (p95, max, late frames), and the recorder's own time per frame.

`CadenceReport.problems(min_hz)` says, in words, why a take falls below a threshold.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

LATE_FACTOR = 1.5  # a wall-clock period longer than this many nominal periods is a late frame
WARN_FRACTION = 0.95  # warn when the achieved rate is below this fraction of the target


@dataclass
class CadenceReport:
    target_fps: float
    frames: int
    clock: str  # "wall" or "lockstep"
    achieved_hz: float  # on the data clock
    wall_clock_hz: float
    period_p95_ms: float
    period_max_ms: float
    late_frames: int
    recorder_ms_mean: float
    camera_fps: dict[str, float] = field(default_factory=dict)
    extra_ticks: int = 0  # lockstep: control ticks beyond one per frame (data no longer exact)

    def problems(self, min_hz: float | None) -> list[str]:
        """Why this take is below `min_hz` (control rate or any camera), in words; empty when it is not."""
        if not min_hz:
            return []
        found = []
        if self.achieved_hz < min_hz:
            found.append(f"control loop ran at {self.achieved_hz:.1f} Hz")
        for name, fps in self.camera_fps.items():
            if fps < min_hz:
                found.append(f"camera '{name}' delivered {fps:.1f} fps")
        return found

    def warnings(self) -> list[str]:
        """Below-target signs worth a warning even without --min-hz."""
        found = [f"{p} (target {self.target_fps:g})" for p in self.problems(self.target_fps * WARN_FRACTION)]
        if self.extra_ticks:
            found.append(f"{self.extra_ticks} extra lockstep ticks (frames no longer 1/{self.target_fps:g} s apart)")
        return found

    def metadata(self) -> dict:
        """Episode metadata columns (same keys every episode, so all rows share one schema)."""
        return {
            "achieved_hz": self.achieved_hz,
            "target_fps": self.target_fps,
            "wall_clock_hz": self.wall_clock_hz,
            "cadence_clock": self.clock,
            "period_p95_ms": self.period_p95_ms,
            "period_max_ms": self.period_max_ms,
            "late_frames": self.late_frames,
            "recorder_ms_mean": self.recorder_ms_mean,
            "camera_fps": dict(self.camera_fps),
        }

    def summary(self) -> str:
        cameras = ", ".join(f"{name} {fps:.1f} fps" for name, fps in self.camera_fps.items())
        text = f"{self.achieved_hz:.1f} Hz"
        if self.clock == "lockstep":
            text += f" (lockstep; wall {self.wall_clock_hz:.1f} Hz)"
        else:
            text += f" (p95 period {self.period_p95_ms:.1f} ms, {self.late_frames} late)"
        return text + (f", cameras {cameras}" if cameras else "")


class CadenceMeter:
    """Fed once per recorded frame by the control loop; cheap enough to run every tick."""

    def __init__(self, target_fps: float, camera_names: list[str], *, data_clock: Callable[[], float] | None = None,
                 lockstep: bool = False, wall_clock: Callable[[], float] = time.perf_counter):
        if target_fps <= 0:
            raise ValueError(f"target fps must be positive, got {target_fps}")
        self.target_fps = float(target_fps)
        self.camera_names = list(camera_names)
        self.lockstep = lockstep
        self.wall_clock = wall_clock
        self.data_clock = data_clock or wall_clock
        self._wall: list[float] = []
        self._data: list[float] = []
        self._distinct = dict.fromkeys(self.camera_names, 0)
        self._previous: dict[str, int] = {}
        self._recorder_s = 0.0
        self._keep_alive: list = []  # last frame's images: while alive, no new image can reuse their id()
        self.extra_ticks = 0

    @property
    def frames(self) -> int:
        return len(self._wall)

    def frame(self, observation: Mapping, wall_s: float | None = None, data_s: float | None = None) -> None:
        """One frame was recorded, whose observation was read at `wall_s` (now if None)."""
        self._wall.append(self.wall_clock() if wall_s is None else wall_s)
        self._data.append(self.data_clock() if data_s is None else data_s)
        for name in self.camera_names:
            image = observation.get(name)
            if image is None:
                continue
            identity = id(image)
            if self._previous.get(name) != identity:
                self._distinct[name] += 1
            self._previous[name] = identity
        self._keep_alive = [observation.get(name) for name in self.camera_names]

    def add_recorder_time(self, seconds: float) -> None:
        self._recorder_s += seconds

    def report(self) -> CadenceReport:
        n = self.frames
        nominal = 1.0 / self.target_fps
        wall = np.asarray(self._wall)
        data = np.asarray(self._data)
        periods = np.diff(wall) if n > 1 else np.zeros(0)
        # Rate = frames per second of data: n frames cover n periods (the last one ends after it was read).
        data_span = (data[-1] - data[0]) + nominal if n else 0.0
        wall_span = (wall[-1] - wall[0]) + (float(np.mean(periods)) if periods.size else nominal) if n else 0.0
        achieved = n / data_span if data_span > 0 else 0.0
        wall_hz = n / wall_span if wall_span > 0 else 0.0
        camera_fps = {name: (count / data_span if data_span > 0 else 0.0) for name, count in self._distinct.items()}
        return CadenceReport(
            target_fps=self.target_fps,
            frames=n,
            clock="lockstep" if self.lockstep else "wall",
            achieved_hz=_round(achieved),
            wall_clock_hz=_round(wall_hz),
            period_p95_ms=_round(float(np.percentile(periods, 95)) * 1000 if periods.size else 0.0),
            period_max_ms=_round(float(periods.max()) * 1000 if periods.size else 0.0),
            late_frames=int(np.sum(periods > LATE_FACTOR * nominal)),
            recorder_ms_mean=_round(self._recorder_s / n * 1000 if n else 0.0),
            camera_fps={name: _round(fps) for name, fps in camera_fps.items()},
            extra_ticks=self.extra_ticks,
        )


def _round(value: float) -> float:
    return round(float(value), 3) if math.isfinite(value) else 0.0
