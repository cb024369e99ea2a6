"""The actions the control loop executes, one per tick, and how a newly arrived chunk joins them.

A chunk computed from the observation at tick k arrives d ticks later; meanwhile the loop kept executing the
previous chunk. The new chunk's first actions plan a path the arm has already travelled, so `merge` drops as many of
them as were executed since the request. Ticks on which the queue was dry (the arm held its target) do not count:
the arm did not move along the plan then, so the plan resumes where the arm is. The first chunk of an episode
therefore runs from its start.

What joins the old remainder and the new chunk:
- a policy with real-time chunking (RTC) was given the remainder and its first actions already continue it, so the
  new chunk replaces the remainder as is;
- any other policy's chunk may start somewhere else: a short linear crossfade from the old remainder (over at most
  as many actions as remain of it; when the queue ran dry, from the held target) into the new chunk keeps the
  boundary step bounded.
"""

from __future__ import annotations

import numpy as np


class ActionQueue:
    """Rows of robot-space actions (one per tick), with the policy-space (normalised) rows RTC needs alongside."""

    def __init__(self, crossfade_steps: int = 4):
        if crossfade_steps < 0:
            raise ValueError("crossfade_steps must be >= 0")
        self.crossfade_steps = crossfade_steps
        self.clear()

    def clear(self) -> None:
        self._actions = np.zeros((0, 0))
        self._normalized: np.ndarray | None = None
        self._next = 0
        self.executed = 0  # actions popped since the last clear (held ticks excluded)
        self.last_action: np.ndarray | None = None
        self.chunk_start = False  # the last pop returned the first action of a merged chunk
        self.held = False  # the last pop found the queue dry and returned the last target again
        self._fresh = False

    def remaining(self) -> int:
        return len(self._actions) - self._next

    def leftover_normalized(self) -> np.ndarray | None:
        """The unexecuted policy-space rows (what an RTC policy continues from); None when there are none."""
        if self._normalized is None or self.remaining() == 0:
            return None
        return self._normalized[self._next:].copy()

    def pop(self) -> np.ndarray | None:
        """This tick's action; when the queue is dry, the last target again (the arm holds, it never jumps);
        None only before the first chunk of an episode, when there is no target to hold yet."""
        self.held = self.remaining() == 0
        if self.held:
            self.chunk_start = False
            return None if self.last_action is None else self.last_action.copy()
        action = self._actions[self._next].copy()
        self.chunk_start, self._fresh = self._fresh, False
        self._next += 1
        self.executed += 1
        self.last_action = action
        return action.copy()

    def merge(self, actions: np.ndarray, normalized: np.ndarray | None = None, *, executed_since_request: int,
              crossfade: bool) -> int:
        """Replace the remainder by `actions` (chunk_len, action_dim) minus the `executed_since_request` actions
        already run; crossfade into it when `crossfade`. Returns how many actions were dropped."""
        actions = np.array(actions, dtype=float)
        if actions.ndim != 2 or len(actions) == 0:
            raise ValueError(f"a chunk is (steps, action_dim) with steps > 0, got shape {actions.shape}")
        if not np.isfinite(actions).all():
            raise ValueError("a chunk with non-finite actions cannot join the queue")
        # Keep at least the chunk's last action: a chunk shorter than the delay still says where to go.
        drop = min(max(0, executed_since_request), len(actions) - 1)
        new = actions[drop:]
        new_normalized = None if normalized is None else np.array(normalized, dtype=float)[drop:]
        if crossfade and self.crossfade_steps > 0 and self.last_action is not None:
            old = self._actions[self._next:]
            if len(old) == 0:  # the queue ran dry: the arm holds the last target, fade from there
                old = np.repeat(self.last_action[None], self.crossfade_steps, axis=0)
            steps = min(self.crossfade_steps, len(new), len(old))  # only where the old plan says something
            weights = (np.arange(1, steps + 1) / (steps + 1))[:, None]
            new = new.copy()
            new[:steps] = (1 - weights) * old[:steps] + weights * new[:steps]
        self._actions = new
        self._normalized = new_normalized
        self._next = 0
        self._fresh = True
        return drop
