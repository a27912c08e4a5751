"""The time budget and the schedule: what is set aside for the finish, and where the loop stops."""

from __future__ import annotations

import pytest

from core.train import budget as budget_module
from core.train.budget import FINISH_MARGIN, SAVE_SECONDS, TimeBudget
from core.train.recipe import RECIPE, lr_at


@pytest.fixture
def clock(monkeypatch):
    """A hand-moved `time.monotonic` for the budget module."""
    now = [1000.0]
    monkeypatch.setattr(budget_module.time, "monotonic", lambda: now[0])
    return now


def test_the_budget_covers_the_whole_call_and_a_resumed_run_gets_what_was_left(clock):
    b = TimeBudget.start(t0=990.0, minutes=2, trained_before=30.0)  # began 10 s ago, 30 s trained before
    assert b.end == 990.0 + 120 - 30 and b.loop_start == 1000.0
    clock[0] += 5
    assert b.elapsed() == 35.0 and b.decoder_deadline == b.end - SAVE_SECONDS


def test_the_finish_is_set_aside_with_a_margin_and_never_more_than_half_of_what_is_left(clock):
    b = TimeBudget.start(t0=1000.0, minutes=10, trained_before=0.0)
    b.set_aside(lambda: 10.0, step_seconds=2.0)
    assert b.reserved == pytest.approx(FINISH_MARGIN * 10 + 2 + SAVE_SECONDS)
    assert b.decoder_deadline - b.deadline == pytest.approx(FINISH_MARGIN * 10 + 2)  # the finish gets its estimate
    assert b.deadline == pytest.approx(b.end - b.reserved) and b.loop_seconds == pytest.approx(600 - b.reserved)
    b.set_aside(lambda: 1e6, step_seconds=0.0)  # a huge estimate: at most half of the 600 s left
    assert b.reserved == 300 and b.deadline == 1300
    clock[0] = b.end + 1  # out of time: the loop stops now
    b.set_aside(lambda: 10.0, step_seconds=0.0)
    assert b.reserved == 0 and b.deadline == clock[0]


def test_the_schedule_follows_the_clock_or_the_step_cap_when_that_is_further(clock):
    b = TimeBudget.start(t0=1000.0, minutes=10, trained_before=0.0)
    b.set_aside(lambda: 0.0, step_seconds=0.0)  # the loop ends SAVE_SECONDS before the budget does
    assert b.fraction(1000.0 + 150, step=0, max_steps=None) == pytest.approx(150 / (600 - SAVE_SECONDS))
    assert b.fraction(1000.0 + 150, step=50, max_steps=100) == 0.5
    assert b.fraction(1000.0 + 900, step=0, max_steps=None) == 1.0
    assert b.steps_guess(10, 1000.0 + 4) is None  # too early to guess
    assert b.steps_guess(10, 1000.0 + 60) == int(10 / 60 * (600 - SAVE_SECONDS))
    assert b.eta(1000.0 + 100) == 500.0


@pytest.mark.parametrize(("minutes", "seconds"), [(1, 20.0), (6, 60.0), (60, 180.0)])
def test_validations_come_every_sixth_of_the_budget_within_bounds(minutes, seconds):
    assert TimeBudget.start(0.0, minutes, 0.0).val_every == seconds


def test_learning_rate_warms_up_then_decays_to_two_percent():
    recipe = {**RECIPE, "lr": 1.0, "warmup": 0.1}
    assert lr_at(0.0, recipe) == 0.05  # the warm-up's floor
    assert lr_at(0.05, recipe) == pytest.approx(0.5)
    assert lr_at(0.1, recipe) == pytest.approx(1.0)
    assert lr_at(0.55, recipe) == pytest.approx(0.51)
    assert lr_at(1.0, recipe) == pytest.approx(0.02)
