"""Checkpoint and resume: an interrupted run continues where it stopped.

The checkpoint (`<out>.work/checkpoint.pt`) holds the weights, the optimizer, the run's progress,
the best weights so far and the fallback a self-training student keeps (`Run.fallback`), all as
CPU tensors so a run resumes on any machine. It is only resumed by a run with the same settings
(`signature`); anything else starts over.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.device import to_cpu

CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class RunState:
    """A run's progress: what a checkpoint keeps besides weights and what the manifest reports."""

    step: int = 0
    epoch: int = 0
    elapsed: float = 0.0  # seconds of training, earlier calls included
    elapsed_steps: float = 0.0  # of which in optimizer steps
    best_cer: float | None = None
    base_cer: float | None = None
    bad_vals: int = 0  # validations in a row without improvement
    history: list[dict] = field(default_factory=list)
    val_seconds: float = 0.0  # one validation of the base
    longest_step_s: float | None = None

    def step_seconds(self) -> float:
        """The longest step so far (the mean before steps were timed one by one; 0 before any)."""
        if self.longest_step_s is not None:
            return self.longest_step_s
        return self.elapsed_steps / self.step if self.step else 0.0

    @classmethod
    def from_dict(cls, values: dict) -> RunState:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def snapshot(model) -> dict:
    """A CPU copy of the weights (the best so far): loadable anywhere, and off the training device's memory."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class Checkpoint:
    """The checkpoint of one run, in `work`, valid for runs with this `signature` (settings as JSON)."""

    def __init__(self, work: Path, signature: dict):
        self.work = work
        self.path = work / CHECKPOINT_FILE
        self.signature = json.loads(json.dumps(signature))  # as it reads back: tuples become lists

    def restore(self, model, optim, resume: bool,
                report: Callable[[dict], None]) -> tuple[RunState, dict | None, dict | None]:
        """(progress, best weights, fallback weights) to continue from: the checkpoint's when `resume` finds one
        with the same settings (its weights and optimizer loaded into `model` and `optim`), else a fresh start."""
        state, best, fallback = RunState(), None, None
        if resume and self.path.is_file():
            saved = self._read()
            if saved and saved.get("signature") == self.signature:
                model.load_state_dict(saved["model"])
                optim.load_state_dict(saved["optim"])
                state, best, fallback = RunState.from_dict(saved["state"]), saved.get("best"), saved.get("fallback")
                report({"message": f"resumed from step {state.step} ({state.elapsed:.0f} s trained)"})
            else:
                report({"message": "checkpoint is from different settings; starting over"})
        elif not resume and self.work.exists():
            shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True, exist_ok=True)
        return state, best, fallback

    def _read(self) -> dict | None:
        import torch

        try:
            return torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a corrupt checkpoint is only a lost head start
            return None

    def save(self, model, optim, state: RunState, best: dict | None, fallback: dict | None = None) -> None:
        """Atomic: a crash mid-write leaves the previous checkpoint intact."""
        import torch

        payload = {"signature": self.signature, "model": to_cpu(model.state_dict()), "optim": to_cpu(optim.state_dict()),
                   "state": dataclasses.asdict(state), "best": best, "fallback": fallback}
        tmp = self.path.with_suffix(".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, self.path)

    def discard(self) -> None:
        """The model is written: nothing is left to resume."""
        shutil.rmtree(self.work, ignore_errors=True)
