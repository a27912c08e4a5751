"""The time budget: the user gives minutes, not epochs, so the run's clock drives the schedule.

The budget covers the whole call (loading torch included). What comes after the last step
(validating the last weights, the decoder's choice, writing the model) is set aside from it, at
most half of what is left, and the learning-rate schedule ends where the loop does. A resumed run
gets what was left of its budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# The time after the last step is estimated from a few lines; the estimate fell short by 20-30 %
# (a 5-minute run took 308 s, an all-lines 15-minute run 914 s), so it is set aside with this margin.
FINISH_MARGIN = 1.3
# What the run keeps for writing the model directory after the decoder's choice, which stops
# trying settings when the budget is this close to its end (on a slower machine than estimated,
# 500- and 1,000-line runs once took 927 and 936 s of their 900).
SAVE_SECONDS = 5.0


@dataclass
class TimeBudget:
    """One run's clock (`time.monotonic()` seconds)."""

    seconds: float  # the whole budget
    end: float  # when the run must be done, model written
    trained_before: float  # seconds of training in earlier, interrupted calls
    loop_start: float
    reserved: float = 0.0  # set aside for the finish
    deadline: float = 0.0  # when the loop stops
    loop_seconds: float = 1e-6  # the loop's whole length, earlier calls included: the schedule's unit

    @classmethod
    def start(cls, t0: float, minutes: float, trained_before: float) -> TimeBudget:
        """The budget of a call that began at `t0`, its loop starting now."""
        seconds = minutes * 60.0
        return cls(seconds, t0 + seconds - trained_before, trained_before, time.monotonic())

    def elapsed(self, now: float | None = None) -> float:
        """Seconds of training so far, earlier calls included."""
        return self.trained_before + ((time.monotonic() if now is None else now) - self.loop_start)

    def set_aside(self, finish_estimate: Callable[[], float], step_seconds: float) -> None:
        """Keep time for the finish and move the loop's deadline (and the schedule's end) to match.

        The estimate gets a margin (FINISH_MARGIN) plus the longest step so far, because a step that
        starts just before the deadline runs past it, and a batch of wide lines takes longer than most,
        plus SAVE_SECONDS, which the decoder's choice leaves for writing the model (without them a run
        validated on 45 lines once had time for 1 of the choice's 51 settings).
        Called again at every validation: decoding gets faster as the network learns.
        """
        left = self.end - time.monotonic()
        self.reserved = min(FINISH_MARGIN * finish_estimate() + step_seconds + SAVE_SECONDS, max(0.0, left) / 2)
        self.deadline = self.end - self.reserved if left > 0 else time.monotonic()
        self.loop_seconds = max(1e-6, self.trained_before + self.deadline - self.loop_start)

    def fraction(self, now: float, step: int, max_steps: int | None) -> float:
        """How far through its schedule the run is: by the clock, or by the step cap when that is further."""
        frac = min(1.0, self.elapsed(now) / self.loop_seconds)
        return max(frac, step / max_steps) if max_steps else frac

    @property
    def val_every(self) -> float:
        """Seconds between validations: a sixth of the budget, within 20 s to 3 minutes."""
        return max(20.0, min(180.0, self.seconds / 6))

    def steps_guess(self, step: int, now: float) -> int | None:
        """Steps the budget allows at the pace so far: a guess from the first step on, since a short
        budget on a slow machine may see only a few steps (two in a 1-minute job, once)."""
        elapsed = self.elapsed(now)
        rate = step / max(1e-6, elapsed)
        return max(step, int(rate * self.loop_seconds)) if elapsed >= 5 else None

    def eta(self, now: float) -> float:
        """Seconds until the run is done: the loop's rest plus what is set aside."""
        return round(max(0.0, self.deadline - now) + self.reserved, 1)

    @property
    def decoder_deadline(self) -> float:
        """When the decoder's choice stops trying settings, to leave time to write the model."""
        return self.end - SAVE_SECONDS
