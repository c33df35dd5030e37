"""When the policy node's next inference is due (no ROS types here).

Inference is triggered by data: the joint reading that arrives once an inference is due starts it, so the
observation is as young as the robot's joint rate allows, instead of up to one joint period old at a fixed timer.
Due times lie on a grid of `period_ns` (so triggers from data keep the average rate at the configured rate, however
the readings fall between the grid points); after a gap (a busy worker, missing inputs, a clock jump) the grid
restarts from the next start.
"""

from __future__ import annotations

import dataclasses

__all__ = ["InferenceSchedule"]


@dataclasses.dataclass
class InferenceSchedule:
    period_ns: int
    next_due_ns: int | None = None
    """None: due now (nothing started yet)."""

    def __post_init__(self) -> None:
        if self.period_ns <= 0:
            raise ValueError(f"InferenceSchedule.period_ns: must be > 0, got {self.period_ns}")

    def due(self, now_ns: int, early_ns: int = 0) -> bool:
        """Whether an inference started at `now_ns` is on time, counting one up to `early_ns` before its due time
        as on time (half the input period: the reading nearest the grid point takes it). A due time more than one
        period ahead means the clock went back: due at once."""
        if self.next_due_ns is None:
            return True
        ahead = self.next_due_ns - now_ns
        return ahead <= early_ns or ahead > self.period_ns

    def overdue(self, now_ns: int) -> bool:
        """Due for more than half a period: no reading came to trigger it (the timer's fallback)."""
        return self.due(now_ns - self.period_ns // 2)

    def started(self, now_ns: int) -> None:
        """An inference (or an attempt at one) started at `now_ns`: the next is due one period after this one's due
        time, or one period from now when this one started over half a period late (no catch-up burst) or the
        clock went back."""
        due = self.next_due_ns
        if due is None or now_ns - due > self.period_ns // 2 or due - now_ns > self.period_ns:
            self.next_due_ns = now_ns + self.period_ns
        else:
            self.next_due_ns = due + self.period_ns

    def reset(self) -> None:
        self.next_due_ns = None
