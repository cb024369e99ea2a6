"""Hand-off between the policy and a person on the leader arm, without a jump on either side.

LeRobot users see the follower snap to wherever the leader happens to be when teleoperation starts. Here the two
arms are brought together first, each move bounded per tick:

- a leader that can hold a pose (`teleop.can_hold_pose`: an SO-101 leader's STS3215 servos can) is driven to
  the follower's pose, torque on, then released to the person, who picks up exactly where the policy stopped;
- any other leader (or teleoperator) cannot be moved, so the follower is ramped to the leader's pose instead.

States: autonomous (the policy drives) -> aligning (the policy is paused, the follower holds or ramps) -> human
(the follower follows the leader) -> autonomous, when the person hands back (a key). The policy's uncertainty
(flow_vla's calibrated score on each chunk as it starts executing) above its threshold, or a key, starts it; so
does, with `patience_ticks`, a policy that has driven that long without the episode ending (a person watching an
arm that goes nowhere takes over too, whether or not the policy knows it is lost).
Every tick outside `autonomous` is an intervention frame in the recording.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np

from .loop import HandOff

logger = logging.getLogger(__name__)

AUTONOMOUS, ALIGNING, HUMAN = "autonomous", "aligning", "human"


def step_towards(current: dict[str, float], target: dict[str, float], max_step: float) -> dict[str, float]:
    """`current` moved towards `target`, each joint by at most `max_step`."""
    return {key: current[key] + float(np.clip(target[key] - current[key], -max_step, max_step)) for key in target}


def largest_gap(a: dict[str, float], b: dict[str, float]) -> float:
    return max(abs(a[key] - b[key]) for key in b)


class LeaderHandOff(HandOff):
    """Hands the follower to the person on `teleop` (a connected LeRobot teleoperator whose action keys are the
    follower's) and back, as above.

    `max_step`: largest change per tick of whichever arm is being moved into place (action units: degrees on SO
    arms). `tolerance`: how close the arms must be before the person drives. `align_timeout_ticks`: a leader that
    does not reach the pose in time (held by a hand, a blocked joint) is released anyway and the follower ramps to
    it (a ramp has no timeout: it chases the leader until it is there). `on_take_leader`: called the moment the person should take the leader (after it reached the follower's
    pose, or at once when it cannot hold one); the virtual arm's scripted operator starts there.
    `human_done`: polled while the person drives; true means they pressed the hand-back key (the scripted
    operator's way of pressing it). `patience_ticks`: the person takes over after the policy has driven this many
    ticks of an episode in a row (None: only the uncertainty or the key hand the arm over).
    """

    def __init__(self, teleop, *, max_step: float = 3.0, tolerance: float = 1.0, align_timeout_ticks: int = 150,
                 on_take_leader: Callable[[], None] | None = None, human_done: Callable[[], bool] | None = None,
                 patience_ticks: int | None = None, out: Callable[[str], None] | None = None):
        self.teleop = teleop
        self.max_step = max_step
        self.tolerance = tolerance
        self.align_timeout_ticks = align_timeout_ticks
        self.on_take_leader = on_take_leader
        self.human_done = human_done
        self.patience_ticks = patience_ticks
        self.out = out or logger.info
        self.leader_holds = bool(getattr(teleop, "can_hold_pose", False))
        self.state = AUTONOMOUS
        self.interventions = 0
        self.events: list[tuple[str, str]] = []  # (state entered, why), in order, for the summary and tests
        self._lock = threading.Lock()
        self._take_requested: str | None = None
        self._back_requested = False
        self._follower_target: dict[str, float] | None = None
        self._leader_goal: dict[str, float] | None = None
        self._moving_leader = False
        self._align_ticks = 0
        self._autonomous_ticks = 0  # ticks the policy has driven since the episode began or the person handed back
        self.align_ticks = 0  # ticks the last alignment took
        self.gap_at_take_over = float("nan")  # largest joint gap between the arms when the last one began

    # -- requests (any thread) --------------------------------------------------------------------------------

    @property
    def intervening(self) -> bool:
        return self.state != AUTONOMOUS

    def request_take_over(self, why: str = "key") -> None:
        with self._lock:
            if self.state == AUTONOMOUS and self._take_requested is None:
                self._take_requested = why

    def request_hand_back(self) -> None:
        with self._lock:
            if self.state == HUMAN:
                self._back_requested = True

    def toggle(self) -> None:
        """The hand-off key: takes over while the policy drives, hands back while the person does."""
        if self.state == AUTONOMOUS:
            self.request_take_over("key")
        else:
            self.request_hand_back()

    def observe_chunk(self, score: float, threshold: float | None) -> None:
        if threshold is not None and np.isfinite(score) and score > threshold:
            self.request_take_over(f"uncertainty {score:.3g} > threshold {threshold:.3g}")

    def new_episode(self) -> None:
        """An episode ends with the policy in charge of the next one; a leader still holding is released."""
        if self._moving_leader:
            self._release_leader()
        with self._lock:
            self.state, self._take_requested, self._back_requested = AUTONOMOUS, None, False
        self._autonomous_ticks = 0

    # -- the loop's tick --------------------------------------------------------------------------------------

    def drive(self, observation: dict, last_target: dict[str, float] | None) -> dict[str, float] | None:
        """This tick's follower action while the policy is paused, else None (the policy drives)."""
        with self._lock:
            take, self._take_requested = self._take_requested, None
            back, self._back_requested = self._back_requested, False
        if self.state == AUTONOMOUS and take is None and self.patience_ticks is not None:
            if self._autonomous_ticks >= self.patience_ticks:
                take = f"the policy drove {self._autonomous_ticks} ticks without finishing"
        if self.state == AUTONOMOUS and take is not None:
            self._begin(observation, last_target, take)
        elif self.state == HUMAN and (back or (self.human_done is not None and self.human_done())):
            self._enter(AUTONOMOUS, "the person handed back")
            self._autonomous_ticks = 1
            return None
        if self.state == ALIGNING:
            return self._align()
        if self.state == HUMAN:
            return self._leader_action()
        self._autonomous_ticks += 1
        return None

    def _begin(self, observation: dict, last_target: dict[str, float] | None, why: str) -> None:
        keys = list(self.teleop.action_features)
        source = last_target if last_target is not None else observation
        self._follower_target = {key: float(source[key]) for key in keys}
        self.interventions += 1
        self._align_ticks = 0
        leader = self._leader_action()
        self.gap_at_take_over = largest_gap(leader, self._follower_target)
        self._enter(ALIGNING, f"{why}; the leader is {self.gap_at_take_over:.1f} from the follower")
        if self.leader_holds:
            self._leader_goal = leader
            self.teleop.hold_pose(leader)  # torque on where it is: no jump of the leader either
            self._moving_leader = True
        elif self.on_take_leader is not None:
            self.on_take_leader()

    def _align(self) -> dict[str, float]:
        self._align_ticks += 1
        timed_out = self._align_ticks > self.align_timeout_ticks
        if self._moving_leader:
            target = self._follower_target
            self._leader_goal = step_towards(self._leader_goal, target, self.max_step)
            self.teleop.hold_pose(self._leader_goal)
            reached = self._leader_goal == target and largest_gap(self._leader_action(), target) <= self.tolerance
            if reached or timed_out:
                if timed_out:
                    logger.warning("The leader did not reach the follower's pose in %d ticks; releasing it and "
                                   "ramping the follower to it.", self.align_timeout_ticks)
                if self.on_take_leader is not None:
                    self.on_take_leader()
                self._release_leader()
                if timed_out:
                    self._align_ticks = 0
                    return self._follower_target
                return self._enter_human("the leader holds the follower's pose; released to the person")
            return self._follower_target
        leader = self._leader_action()
        self._follower_target = step_towards(self._follower_target, leader, self.max_step)
        if largest_gap(self._follower_target, leader) <= self.tolerance:  # the follower never jumps: no timeout
            return self._enter_human("the follower reached the leader's pose")
        return self._follower_target

    def _enter_human(self, why: str) -> dict[str, float]:
        self.align_ticks = self._align_ticks
        self._enter(HUMAN, why)
        return self._follower_target

    def _release_leader(self) -> None:
        self._moving_leader = False
        self.teleop.release_pose()

    def _leader_action(self) -> dict[str, float]:
        return {key: float(value) for key, value in self.teleop.get_action().items()}

    def _enter(self, state: str, why: str) -> None:
        self.state = state
        self.events.append((state, why))
        self.out({ALIGNING: "Hand-off: the policy pauses", HUMAN: "Hand-off: the person drives",
                  AUTONOMOUS: "Hand-back: the policy drives"}[state] + f" ({why}).")
