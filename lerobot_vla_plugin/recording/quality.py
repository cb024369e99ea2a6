"""Dataset quality gate: the defects that silently ruin imitation learning, found before training.

Each check looks at the joint trajectories of every episode (observation.state and action) and their timestamps:
a servo that stopped reporting (frozen joint), a reading that leaps (jump), frames the recorder did not capture
(timestamp gaps, slow achieved rate), episodes too short for the policy's action chunk, too few tasks for a
language-conditioned policy, joints pinned at the edge of their range (clipped), how much of each joint's range
the data covers, and how different the demonstrations of one task are (identical demos teach nothing new).
Thresholds are relative to the data itself (typical step, joint span), so they work for degrees, radians or
LeRobot's -100..100 normalisation alike.

A check that had nothing to look at (a single episode, no finite value) is a warning that says "not measured",
never a pass: NaN compares false with every threshold, so it would otherwise slip through as "ok". Non-finite
values themselves are a blocking failure of their own.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

JUMP_TYPICAL_STEP_FACTOR = 10.0  # a step this many times the joint's median moving step is a jump ...
JUMP_MIN_SPAN_FRACTION = 0.15  # ... if it also exceeds this fraction of the joint's range over the dataset
JUMP_MOTION_SHARE = 0.6  # ... and makes most of the motion in its direction within JUMP_WINDOW frames around it
JUMP_WINDOW = 2
DROPPED_FRAME_GAP = 1.5  # a timestamp gap above this many frame periods means frames were dropped
SLOW_RATE_FRACTION = 0.9  # an episode whose recorded achieved_hz is below this fraction of fps is flagged
CLIPPED_RUN_SECONDS = 1.0  # sitting exactly at the dataset's extreme for this long looks like a hard limit
CLIPPED_FRACTION = 0.3  # ... or for this fraction of all frames
COVERAGE_BINS = 20
DIVERSITY_SAMPLES = 32  # trajectories are resampled to this many points before DTW
MAX_DIVERSITY_PAIRS = 300


@dataclass
class EpisodeData:
    index: int
    task: str
    timestamps: np.ndarray
    states: np.ndarray  # (frames, joints)
    actions: np.ndarray | None = None
    achieved_hz: float | None = None
    demonstration: str | None = None  # where the demonstration came from, when recorded (scripted, retargeted)

    @property
    def length(self) -> int:
        return len(self.timestamps)


@dataclass
class Check:
    name: str
    passed: bool
    summary: str
    details: list[str] = field(default_factory=list)
    blocking: bool = True  # a failed non-blocking check is a warning; --strict ignores it


def _not_measured(name: str, reason: str) -> Check:
    """A check with nothing to look at: a warning, so an empty or NaN input can never read as a pass."""
    return Check(name, False, f"not measured: {reason}", blocking=False)


@dataclass
class QualityReport:
    fps: int
    joint_names: list[str]
    episodes_per_task: dict[str, int]
    frames_per_task: dict[str, int]
    task_entropy_bits: float
    episode_lengths: list[int]
    chunk_size: int
    joint_span: dict[str, tuple[float, float]]
    joint_coverage: dict[str, float]
    path_diversity: dict[str, dict[str, float]]
    checks: list[Check]
    provenance: dict[str, dict] = field(default_factory=dict)  # per demonstration kind, when recorded

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed and c.blocking]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if not c.passed and not c.blocking]


def _entropy_bits(counts: list[int]) -> float:
    total = sum(counts)
    entropy = -sum(c / total * math.log2(c / total) for c in counts if c) if total else 0.0
    return max(0.0, entropy)  # never "-0.00"


def _signals(episode: EpisodeData) -> list[tuple[str, np.ndarray]]:
    signals = [("state", episode.states)]
    if episode.actions is not None:
        signals.append(("action", episode.actions))
    return signals


def _series(episodes: list[EpisodeData], kind: str) -> list[tuple[EpisodeData, np.ndarray]]:
    """The episodes' `kind` ("state" or "action") trajectories that have at least one step to look at."""
    series = [(e, dict(_signals(e)).get(kind)) for e in episodes]
    return [(e, s) for e, s in series if s is not None and len(s) > 1]


def _finite_range(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (low, high) over the finite values only; NaN where a column has none."""
    finite = np.isfinite(values)
    if len(values) == 0:
        return np.full(values.shape[1:], np.nan), np.full(values.shape[1:], np.nan)
    low = np.where(finite, values, np.inf).min(axis=0)
    high = np.where(finite, values, -np.inf).max(axis=0)
    empty = ~finite.any(axis=0)
    low[empty] = high[empty] = np.nan
    return low, high


def _check_finite(episodes: list[EpisodeData], names: list[str]) -> Check:
    """NaN or inf in a trajectory or a timestamp: the reader or the recorder lost the value."""
    details = []
    for episode in episodes:
        bad = int(np.sum(~np.isfinite(episode.timestamps)))
        if bad:
            details.append(f"episode {episode.index}: {bad} non-finite timestamp(s)")
        for kind, values in _signals(episode):
            for j in np.nonzero((~np.isfinite(values)).any(axis=0))[0]:
                frames = np.nonzero(~np.isfinite(values[:, j]))[0]
                details.append(f"episode {episode.index}: {kind} {names[j]} has {len(frames)} NaN/inf value(s) "
                               f"(first at frame {frames[0]})")
    return Check("finite values", not details,
                 f"{len(details)} signal(s) with NaN/inf values" if details else "no NaN or inf value", details)


def _check_tasks(episodes: list[EpisodeData], min_tasks: int) -> Check:
    counts = Counter(e.task for e in episodes)
    passed = len(counts) >= min_tasks
    summary = (f"{len(counts)} task(s), entropy {_entropy_bits(list(counts.values())):.2f} bits"
               + ("" if passed else f"; a language-conditioned policy needs at least {min_tasks} tasks "
                                    "(--min-tasks 1 to accept)"))
    return Check("tasks", passed, summary, [f"{n} episodes: {task!r}" for task, n in counts.most_common()])


def _check_lengths(episodes: list[EpisodeData], chunk_size: int) -> Check:
    short = [e for e in episodes if e.length < chunk_size]
    return Check("episode length", not short,
                 f"{len(short)} episode(s) shorter than the action chunk ({chunk_size} frames)" if short
                 else f"all episodes have at least {chunk_size} frames (the action chunk)",
                 [f"episode {e.index}: {e.length} frames" for e in short])


def _check_frozen(episodes: list[EpisodeData], names: list[str]) -> tuple[Check, Check]:
    """Constant for a whole episode while moving in others: the servo stopped answering or the reading is stale."""
    details, never_moving, compared, looked = [], [], 0, 0
    for kind in ("state", "action"):
        per_episode = _series(episodes, kind)
        ranges = [_finite_range(s) for _, s in per_episode]
        # A joint with fewer than two finite readings in an episode tells nothing about motion there.
        seen = np.array([np.isfinite(s).sum(axis=0) >= 2 for _, s in per_episode]).reshape(len(per_episode),
                                                                                          len(names))
        moves = np.array([high - low > 0 for low, high in ranges]).reshape(len(per_episode), len(names))
        for j, name in enumerate(names):
            if not seen[:, j].any():
                continue
            looked += 1
            if not moves[:, j].any():
                never_moving.append(f"{kind} {name}")
                continue
            compared += int(seen[:, j].sum() >= 2)
            for (episode, _), moved, measured in zip(per_episode, moves[:, j], seen[:, j], strict=True):
                if measured and not moved:
                    details.append(f"episode {episode.index}: {kind} {name} constant for all "
                                   f"{episode.length} frames (moves in other episodes)")
    if details:
        frozen = Check("frozen joints", False, f"{len(details)} frozen joint reading(s)", details)
    elif not compared:
        frozen = _not_measured("frozen joints", "a frozen joint shows against the episodes where it moves; "
                                                "needs at least 2 episodes with a moving joint")
    else:
        frozen = Check("frozen joints", True, "no frozen joint")
    if not looked:
        unused = _not_measured("unused joints", "no episode with two or more finite readings")
    else:
        unused = Check("unused joints", not never_moving,
                       f"never move in any episode: {', '.join(never_moving)}" if never_moving
                       else "every joint moves in some episode", blocking=False)
    return frozen, unused


def _share_of_motion(steps: np.ndarray, index: int) -> float:
    """The part of the nearby motion in its direction that one step makes: about 1 for a leap or a spike, at
    most 1/2 for a move spread over two or more frames, however fast (a gripper snapping shut)."""
    window = steps[max(0, index - JUMP_WINDOW): index + JUMP_WINDOW + 1]
    same_direction = window[np.isfinite(window) & (np.sign(window) == np.sign(steps[index]))]
    return float(abs(steps[index]) / np.abs(same_direction).sum())


def _check_jumps(episodes: list[EpisodeData], names: list[str]) -> Check:
    details, measured_steps = [], 0
    for kind in ("state", "action"):
        series = _series(episodes, kind)
        if not series:
            continue
        low, high = _finite_range(np.concatenate([s for _, s in series]))
        span = np.nan_to_num(high - low)
        steps = np.concatenate([np.abs(np.diff(s, axis=0)) for _, s in series])
        finite_steps = np.isfinite(steps)
        measured_steps += int(finite_steps.sum())
        moving = finite_steps & (steps > 0)
        typical = np.array([np.median(col[ok]) if ok.any() else 0.0 for col, ok in zip(steps.T, moving.T,
                                                                                        strict=True)])
        threshold = np.maximum(JUMP_TYPICAL_STEP_FACTOR * typical, JUMP_MIN_SPAN_FRACTION * span)
        for episode, values in series:
            signed_steps = np.diff(values, axis=0)
            big = np.abs(signed_steps) > np.maximum(threshold, 1e-9)  # NaN steps: "finite values"
            for frame, j in zip(*np.nonzero(big), strict=True):
                if _share_of_motion(signed_steps[:, j], frame) < JUMP_MOTION_SHARE:
                    continue  # a fast but continuous motion, not a discontinuity
                details.append(f"episode {episode.index} frame {frame + 1}: {kind} {names[j]} jumps "
                               f"{values[frame + 1, j] - values[frame, j]:+.3g} (typical step {typical[j]:.3g})")
    if not details and not measured_steps:
        return _not_measured("jumps", "no two consecutive finite readings in any episode")
    return Check("jumps", not details, f"{len(details)} discontinuities" if details else "no discontinuity",
                 details)


def _check_dropped_frames(episodes: list[EpisodeData], fps: int) -> Check:
    details, measured = [], 0
    for episode in episodes:
        gaps = np.diff(episode.timestamps) * fps
        finite_gaps = gaps[np.isfinite(gaps)]  # a NaN timestamp fails "finite values"
        measured += len(finite_gaps)
        dropped = int(np.sum(np.round(finite_gaps[finite_gaps > DROPPED_FRAME_GAP]) - 1))
        if dropped > 0:
            details.append(f"episode {episode.index}: {dropped} frame(s) missing "
                           f"(largest gap {finite_gaps.max() / fps * 1000:.0f} ms at {fps} fps)")
        if np.any(finite_gaps <= 0):
            details.append(f"episode {episode.index}: timestamps not increasing")
        if episode.achieved_hz is not None:
            measured += 1
            if not np.isfinite(episode.achieved_hz):
                details.append(f"episode {episode.index}: recorded rate is {episode.achieved_hz} Hz")
            elif episode.achieved_hz < SLOW_RATE_FRACTION * fps:
                details.append(f"episode {episode.index}: recorded at {episode.achieved_hz:.1f} Hz, "
                               f"below {SLOW_RATE_FRACTION:.0%} of {fps} fps")
    if not details and not measured:
        return _not_measured("dropped frames", "no episode has two finite timestamps or a recorded rate")
    return Check("dropped frames", not details,
                 f"{len(details)} episode(s) with missing frames or slow rate" if details
                 else "timestamps regular, no dropped frame", details)


def _check_clipped(episodes: list[EpisodeData], names: list[str], fps: int) -> Check:
    """Long stretches exactly at the dataset's extreme of a joint, as when a reading saturates at a limit."""
    states = np.concatenate([e.states for e in episodes])
    low, high = _finite_range(states)
    details, measured = [], 0
    run_frames = max(2, int(CLIPPED_RUN_SECONDS * fps))
    for j, name in enumerate(names):
        if not high[j] > low[j]:  # constant or no finite value: no edge to sit at
            continue
        measured += 1
        at_edge = (states[:, j] == low[j]) | (states[:, j] == high[j])
        longest = max((len(r) for r in "".join("1" if x else "0" for x in at_edge).split("0")), default=0)
        fraction = at_edge.mean()
        if longest >= run_frames and fraction >= CLIPPED_FRACTION:
            details.append(f"state {name}: {fraction:.0%} of frames exactly at {low[j]:.3g} or {high[j]:.3g} "
                           f"(longest run {longest} frames)")
    if not measured:
        return _not_measured("clipped joints", "no joint state varies")
    return Check("clipped joints", not details,
                 f"{len(details)} joint(s) pinned at a limit" if details else "no joint pinned at a limit",
                 details, blocking=False)


def _coverage(episodes: list[EpisodeData], names: list[str]) -> tuple[dict, dict]:
    states = np.concatenate([e.states for e in episodes])
    lows, highs = _finite_range(states)
    span, coverage = {}, {}
    for j, name in enumerate(names):
        low, high = float(lows[j]), float(highs[j])
        span[name] = (low, high)
        if not high > low:
            coverage[name] = 0.0
            continue
        column = states[np.isfinite(states[:, j]), j]
        bins = np.clip(((column - low) / (high - low) * COVERAGE_BINS).astype(int), 0, COVERAGE_BINS - 1)
        coverage[name] = len(np.unique(bins)) / COVERAGE_BINS
    return span, coverage


def _resample(values: np.ndarray, samples: int) -> np.ndarray:
    if len(values) == 1:
        return np.repeat(values, samples, axis=0)
    old = np.linspace(0.0, 1.0, len(values))
    new = np.linspace(0.0, 1.0, samples)
    return np.stack([np.interp(new, old, values[:, j]) for j in range(values.shape[1])], axis=1)


def dtw_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Dynamic time warping distance (mean per-step Euclidean cost along the best alignment)."""
    cost = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            acc[i, j] = cost[i - 1, j - 1] + min(acc[i - 1, j], acc[i, j - 1], acc[i - 1, j - 1])
    return float(acc[n, m] / (n + m))


def _path_diversity(episodes: list[EpisodeData], rng: np.random.Generator) -> tuple[dict, Check]:
    """Per task: mean pairwise DTW of range-normalised state paths, and the spread of where episodes end."""
    low, high = _finite_range(np.concatenate([e.states for e in episodes]))
    span = np.nan_to_num(high - low)
    scale = np.where(span > 0, span, 1.0)
    by_task: dict[str, list[EpisodeData]] = {}
    for e in episodes:
        by_task.setdefault(e.task, []).append(e)
    diversity, details, unmeasured = {}, [], []
    for task, group in by_task.items():
        diversity[task] = {"episodes": len(group), "mean_dtw": float("nan"), "endpoint_spread": float("nan")}
        usable = [e for e in group if e.length > 0 and np.isfinite(e.states).all()]
        if len(usable) < 2:
            unmeasured.append(f"{task!r} ({len(group)} episode(s), {len(usable)} with finite states)"
                              if len(usable) < len(group) else f"{task!r} ({len(group)} episode)")
            continue
        group = usable
        paths = [_resample(e.states / scale, DIVERSITY_SAMPLES) for e in group]
        pairs = [(i, j) for i in range(len(paths)) for j in range(i + 1, len(paths))]
        if len(pairs) > MAX_DIVERSITY_PAIRS:
            pairs = [pairs[k] for k in rng.choice(len(pairs), MAX_DIVERSITY_PAIRS, replace=False)]
        mean_dtw = float(np.mean([dtw_distance(paths[i], paths[j]) for i, j in pairs]))
        ends = np.stack([e.states[-1] / scale for e in group])
        spread = float(np.mean(np.linalg.norm(ends - ends.mean(axis=0), axis=1)))
        diversity[task].update(mean_dtw=mean_dtw, endpoint_spread=spread)
        if mean_dtw < 1e-6:
            details.append(f"{task!r}: its {len(group)} episodes follow the same path (duplicated recordings?)")
    if details:
        return diversity, Check("path diversity", False, f"{len(details)} task(s) with identical demonstrations",
                                details + [f"not measured: {u}" for u in unmeasured], blocking=False)
    if unmeasured:
        reason = f"needs 2 episodes with finite states per task: {', '.join(unmeasured)}"
        measured = len(by_task) - len(unmeasured)
        check = _not_measured("path diversity", reason + (f"; the other {measured} task(s) differ" if measured else ""))
        return diversity, check
    return diversity, Check("path diversity", True, "demonstrations of each task differ", blocking=False)


def _provenance(episodes: list[EpisodeData], rng: np.random.Generator) -> dict[str, dict]:
    """Per demonstration kind (recorded: scripted or teleoperated; generated: retargeted by `lerobot-vla
    multiply`), its episodes and path diversity per task; empty when the episodes do not say."""
    kinds = Counter(e.demonstration for e in episodes if e.demonstration)
    return {kind: {"episodes": count,
                   "path_diversity": _path_diversity([e for e in episodes if e.demonstration == kind], rng)[0]}
            for kind, count in kinds.most_common()}


def analyze(episodes: list[EpisodeData], *, fps: int, joint_names: list[str], chunk_size: int = 50,
            min_tasks: int = 2, seed: int = 0) -> QualityReport:
    if not episodes:
        raise ValueError("The dataset has no episodes to analyse.")
    frozen, unused = _check_frozen(episodes, joint_names)
    span, coverage = _coverage(episodes, joint_names)
    diversity, diversity_check = _path_diversity(episodes, np.random.default_rng(seed))
    checks = [
        _check_finite(episodes, joint_names),
        _check_tasks(episodes, min_tasks),
        _check_lengths(episodes, chunk_size),
        frozen,
        _check_jumps(episodes, joint_names),
        _check_dropped_frames(episodes, fps),
        _check_clipped(episodes, joint_names, fps),
        unused,
        diversity_check,
    ]
    episodes_per_task = Counter(e.task for e in episodes)
    frames_per_task: Counter = Counter()
    for e in episodes:
        frames_per_task[e.task] += e.length
    return QualityReport(
        fps=fps, joint_names=list(joint_names), episodes_per_task=dict(episodes_per_task),
        frames_per_task=dict(frames_per_task), task_entropy_bits=_entropy_bits(list(episodes_per_task.values())),
        episode_lengths=[e.length for e in episodes], chunk_size=chunk_size, joint_span=span,
        joint_coverage=coverage, path_diversity=diversity, checks=checks,
        provenance=_provenance(episodes, np.random.default_rng(seed)))


def format_report(report: QualityReport) -> str:
    lengths = np.array(report.episode_lengths)
    lines = [(f"{len(lengths)} episodes, {int(lengths.sum())} frames at {report.fps} fps; "
              f"task entropy {report.task_entropy_bits:.2f} bits"),
             "Tasks:"]
    for task, n in sorted(report.episodes_per_task.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {n:4d} episodes {report.frames_per_task[task]:7d} frames  {task}")
    lines.append(f"Episode length (frames): min {lengths.min()}, median {int(np.median(lengths))}, "
                 f"max {lengths.max()}, mean {lengths.mean():.1f} ± {lengths.std():.1f}")
    lines.append("Joint ranges (state) and coverage of that range:")
    for name in report.joint_names:
        low, high = report.joint_span[name]
        lines.append(f"  {name:16s} [{low:9.3g}, {high:9.3g}]  {report.joint_coverage[name]:4.0%} covered")
    lines.append("Path diversity per task (mean pairwise DTW / endpoint spread, range-normalised):")
    for task, d in report.path_diversity.items():
        measured = (f"{d['mean_dtw']:.3f} / {d['endpoint_spread']:.3f}" if np.isfinite(d["mean_dtw"])
                    else "not measured")
        lines.append(f"  {measured}  ({d['episodes']} episodes) {task}")
    if report.provenance:
        lines.append("Demonstrations by origin (recorded or generated), mean pairwise DTW per task:")
        for kind, p in report.provenance.items():
            measured = ", ".join(f"{d['mean_dtw']:.3f} {task!r}" for task, d in p["path_diversity"].items()
                                 if np.isfinite(d["mean_dtw"])) or "not measured (fewer than 2 per task)"
            lines.append(f"  {p['episodes']:>5} {kind}: {measured}")
    lines.append("Checks:")
    for check in report.checks:
        status = "ok  " if check.passed else ("FAIL" if check.blocking else "warn")
        lines.append(f"  [{status}] {check.name}: {check.summary}")
        for detail in check.details[:10] if not check.passed else []:
            lines.append(f"         - {detail}")
        if not check.passed and len(check.details) > 10:
            lines.append(f"         ... and {len(check.details) - 10} more")
    verdict = (f"{len(report.failures)} check(s) failed" if report.failures else "all blocking checks passed")
    lines.append(verdict + (f", {len(report.warnings)} warning(s)" if report.warnings else ""))
    return "\n".join(lines)
