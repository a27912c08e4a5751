"""Validation: the character error rate of the current weights on the held-out lines, and the
bookkeeping that keeps the best weights and counts validations without improvement."""

from __future__ import annotations

from core.train.adapter import Adapter
from core.train.checkpoint import RunState
from core.train.data import Sample


def val_cer(adapter: Adapter, val: list[Sample]) -> float:
    """CER of the current weights read as the app reads (best path), back in training mode after."""
    from core.metrics import cer

    rec = adapter.recognizer()
    hyps = [r.text for r in rec.recognize([s.crop for s in val])]
    adapter.train_mode()
    return round(cer([s.text for s in val], hyps), 4)


def record(state: RunState, cer: float, losses: list[float]) -> bool:
    """Add a validation during the loop to the history (with the mean of the last 50 losses); returns
    whether it is the best so far, which resets the count of validations without improvement."""
    recent = losses[-50:]
    state.history.append({"step": state.step, "s": round(state.elapsed, 1), "val_cer": cer,
                          "loss": round(sum(recent) / max(1, len(recent)), 4)})
    if _improves(state, cer):
        state.best_cer, state.bad_vals = cer, 0
        return True
    state.bad_vals += 1
    return False


def record_final(state: RunState, cer: float) -> bool:
    """Add the last weights' validation to the history; returns whether they beat the best so far."""
    state.history.append({"step": state.step, "val_cer": cer})
    if _improves(state, cer):
        state.best_cer = cer
        return True
    return False


def _improves(state: RunState, cer: float) -> bool:
    """Whether `cer` beats the best so far (None before a self-training student's first validation)."""
    return state.best_cer is None or cer < state.best_cer
