"""The training loop: optimizer steps on the time budget's schedule, validations, early stopping.

Kraken's seams, our way: the adapter's `loss` is the training step, its `recognizer` the
validation step, `configure_optimizer` the optimizer; `Run` only schedules them. Training runs on
the device through an `accelerate.Accelerator` (float16 mixed precision on CUDA, full precision
elsewhere, so CPU numbers are unchanged).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.train.adapter import Adapter, Progress
from core.train.budget import TimeBudget
from core.train.checkpoint import Checkpoint, RunState, snapshot
from core.train.data import DataSplit, Sample
from core.train.recipe import lr_at
from core.train.validation import record, record_final, val_cer


def configure_optimizer(adapter: Adapter, recipe: dict, accelerator):
    """AdamW over the adapter's trainable parameters, prepared for the accelerator's precision.

    Only the optimizer is prepared: the model is already on the device, autocast wraps the loss (the
    frozen convs bypass forward), and a prepared model's patched forward would follow it into its deep copies.
    """
    import torch

    return accelerator.prepare(torch.optim.AdamW(adapter.params(), lr=recipe["lr"], weight_decay=recipe["weight_decay"]))


def optimizer_step(adapter: Adapter, optim, accelerator, samples: list[Sample], rng: random.Random,
                   clip: float) -> float:
    """One optimizer step on `samples` under the accelerator's precision; returns the loss. A loss that is
    not finite takes no step (accelerate's fp16 scaler also skips steps whose gradients overflow)."""
    with accelerator.autocast():
        loss = adapter.loss(samples, rng)
    optim.zero_grad(set_to_none=True)
    value = float(loss.detach())
    if math.isfinite(value):
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(adapter.params(), clip)
        optim.step()
    return value


@dataclass
class Run:
    """One fine-tuning run from its first validation to its last: `validate_base`, `train`, `finish`."""

    adapter: Adapter
    data: DataSplit
    val: list[Sample]
    recipe: dict
    optim: Any
    accelerator: Any
    state: RunState
    best: dict | None  # the best weights so far (CPU)
    checkpoint: Checkpoint
    report: Progress
    stop: Callable[[], bool]
    seed: int
    budget: TimeBudget | None = None
    losses: list[float] = field(default_factory=list)
    steps_since_val: int = 0
    last_val: float = 0.0
    stopped_early: bool = False
    cancelled: bool = False
    loop_end: float = 0.0
    # None: the base's weights compete with the run's own. Else the base is only the fallback: the run's best
    # weights replace it if they validate under this CER (a self-training student against its first base's);
    # the fallback is checkpointed, so a resumed run keeps the rule
    cer_to_beat: float | None = None
    fallback: dict | None = None

    def validate_base(self) -> None:
        """Score the base on a fresh start: the number to beat, and the time one validation takes."""
        self.adapter.train_mode()
        if self.state.base_cer is not None:
            return
        started = time.monotonic()
        self.state.base_cer = val_cer(self.adapter, self.val)
        self.state.val_seconds = round(time.monotonic() - started, 2)
        self.report({"message": f"base model: validation CER {self.state.base_cer:.3f}",
                     "val_cer": self.state.base_cer, "step": 0})
        if self.best is None:
            self.best, self.state.best_cer = snapshot(self.adapter.model), self.state.base_cer
            if self.cer_to_beat is not None:
                self.fallback, self.state.best_cer = self.best, None  # the first validation replaces it

    def train(self, budget: TimeBudget) -> None:
        """Epochs until the deadline, the step cap, a stop request or `patience` validations without gain."""
        self.budget = budget
        self._set_aside()
        self.last_val = time.monotonic()
        rng = random.Random(self.seed * 1000 + self.state.step)
        while not self._epoch(rng):
            self.state.epoch += 1
        self.loop_end = time.monotonic()

    def _epoch(self, rng: random.Random) -> bool:
        """One pass over the training lines; True when the loop is over."""
        lines = self.data.learned()
        for batch in self.adapter.batches(lines, rng):
            now = time.monotonic()
            if self._over(now):
                return True
            self._train_step([lines[i] for i in batch], rng, now)
            if self._validation_due():
                self._validate()
                if self.state.bad_vals >= self.recipe["patience"] and not self.keeps_last():
                    self.stopped_early = True
                    return True
        return False

    def _over(self, now: float) -> bool:
        max_steps = self.recipe["max_steps"]
        stopping = self.stop()
        if now >= self.budget.deadline or stopping or (max_steps and self.state.step >= max_steps):
            self.cancelled = stopping and now < self.budget.deadline
            return True
        return False

    def _train_step(self, batch: list[Sample], rng: random.Random, now: float) -> None:
        state, recipe = self.state, self.recipe
        lr = lr_at(self.budget.fraction(now, state.step, recipe["max_steps"]), recipe)
        for group in self.optim.param_groups:
            group["lr"] = lr
        loss = optimizer_step(self.adapter, self.optim, self.accelerator, batch, rng, recipe["grad_clip"])
        if math.isfinite(loss):
            self.losses.append(loss)
        state.step += 1
        step_s = time.monotonic() - now
        state.elapsed_steps += step_s
        state.longest_step_s = max(state.longest_step_s or 0.0, step_s)
        self.steps_since_val += 1
        self.report({"step": state.step, "total_steps": self.budget.steps_guess(state.step, now), "epoch": state.epoch,
                     "loss": round(loss, 4), "eta_s": self.budget.eta(now), "best_val_cer": state.best_cer})

    def _validation_due(self) -> bool:
        if self.recipe["val_every_steps"]:
            return self.steps_since_val >= self.recipe["val_every_steps"]
        return (time.monotonic() - self.last_val >= self.budget.val_every
                and self.steps_since_val >= self.recipe["min_steps_per_val"])

    def _validate(self) -> None:
        state = self.state
        cer = val_cer(self.adapter, self.val)
        state.elapsed = self.budget.elapsed()
        if record(state, cer, self.losses):
            self.best = snapshot(self.adapter.model)
        self.report({"step": state.step, "val_cer": cer, "best_val_cer": state.best_cer,
                     "message": f"step {state.step}: validation CER {cer:.3f} (best {state.best_cer:.3f})"})
        self.save_checkpoint()
        self._set_aside()
        self.last_val, self.steps_since_val = time.monotonic(), 0

    def _set_aside(self) -> None:
        self.budget.set_aside(lambda: self.adapter.finish_seconds(self.data, self.val, float(self.state.val_seconds)),
                              self.state.step_seconds())

    def finish(self) -> None:
        """Validate the last weights (cosine decay usually makes them the best) and checkpoint; the recipe's
        `keep: last` keeps them even where an earlier validation read better."""
        keep_last = self.keeps_last() and not self.cancelled
        if self.steps_since_val > 0 and not self.cancelled:
            last = val_cer(self.adapter, self.val)
            if record_final(self.state, last) or keep_last:
                self.best, self.state.best_cer = snapshot(self.adapter.model), last
        elif keep_last and self.state.history:  # the loop ended on a validation of these very weights
            self.best, self.state.best_cer = snapshot(self.adapter.model), self.state.history[-1]["val_cer"]
        self._keep_base_unless_beaten()
        self.state.elapsed = self.budget.elapsed()
        self.save_checkpoint()

    def keeps_last(self) -> bool:
        """The recipe's `keep: last`: no early stop, and the last weights are kept (decision 0010)."""
        return self.recipe["keep"] == "last"

    def _keep_base_unless_beaten(self) -> None:
        """With `cer_to_beat`, the base's weights come back unless the run's best validated under it."""
        if self.fallback is not None and (self.state.best_cer is None or self.state.best_cer >= self.cer_to_beat):
            self.best, self.state.best_cer = self.fallback, self.state.base_cer

    def save_checkpoint(self) -> None:
        self.checkpoint.save(self.adapter.model, self.optim, self.state, self.best, self.fallback)
