"""The training loop over a stand-in adapter (no real network): step cap, early stop, stop requests."""

from __future__ import annotations

import inspect

import pytest

from core.recognize import BaseRecognizer, Recognition
from core.train.adapter import Adapter, adapter_for
from core.train.budget import TimeBudget
from core.train.checkpoint import Checkpoint
from core.train.ctc import CTCAdapter
from core.train.data import DataSplit, Sample
from core.train.encoder_decoder import EncoderDecoderAdapter
from core.train.loop import Run, configure_optimizer
from core.train.recipe import RECIPE


class Reader(BaseRecognizer):
    def __init__(self, text: str):
        self.text = text

    def _predict(self, crops):
        return [Recognition(self.text, 1.0) for _ in crops]


class Linear(Adapter):
    """A linear layer that reads every line as `reads` (so its validation CER never changes), or as the
    next of `reads` at each validation when it is an iterator."""

    family, loss_name = "test", "mse"

    def __init__(self, recipe: dict, reads: str = ""):
        import torch

        self.model, self.recipe, self.added, self.reads = torch.nn.Linear(2, 1), recipe, [], reads

    def unknown_chars(self, texts):
        return []

    def train_mode(self):
        self.model.train()

    def batches(self, samples, rng):
        return [[i] for i in range(len(samples))]

    def loss(self, samples, rng):
        import torch

        return (self.model(torch.ones(len(samples), 2)) ** 2).mean()

    def recognizer(self, name="training"):
        return Reader(self.reads if isinstance(self.reads, str) else next(self.reads))

    def save(self, folder, state):
        raise AssertionError("the loop never saves a model")

    def finish_seconds(self, data, val, read_seconds):
        return read_seconds

    def fit_decoder(self, data, val, state, tune, deadline, report):
        raise AssertionError("the loop never fits a decoder")

    def describe(self):
        return {}


def _build(tmp_path, stop=lambda: False, reads="", cer_to_beat: float | None = None, resume: bool = False,
           **recipe) -> Run:
    """A run as `train_recognizer` builds one: from the checkpoint in `tmp_path/work` when `resume` finds one."""
    from accelerate import Accelerator
    from PIL import Image

    rec = {**RECIPE, **recipe}
    adapter = Linear(rec, reads)
    samples = [Sample(Image.new("RGB", (40, 10), "white"), "ab", "p0") for _ in range(4)]
    accelerator = Accelerator(cpu=True)
    optim = configure_optimizer(adapter, rec, accelerator)
    checkpoint = Checkpoint(tmp_path / "work", {})
    state, best, fallback = checkpoint.restore(adapter.model, optim, resume, lambda _d: None)
    return Run(adapter, DataSplit(samples, samples, 1, 1), samples, rec, optim, accelerator, state, best,
               checkpoint, lambda _d: None, stop, seed=0, cer_to_beat=cer_to_beat, fallback=fallback)


def _run(tmp_path, stop=lambda: False, reads="", cer_to_beat: float | None = None, **recipe) -> Run:
    run = _build(tmp_path, stop, reads, cer_to_beat, **recipe)
    run.validate_base()
    run.train(TimeBudget.start(0.0, 1e6, 0.0))
    run.finish()
    return run


def test_the_step_cap_ends_the_run_and_the_last_weights_are_validated(tmp_path):
    run = _run(tmp_path, reads="ab", max_steps=6, val_every_steps=4, patience=100)
    assert run.state.step == 6 and run.state.epoch == 1 and not run.stopped_early and not run.cancelled
    assert [h["step"] for h in run.state.history] == [4, 6] and run.state.base_cer == 0.0
    assert (tmp_path / "work" / "checkpoint.pt").is_file()


def test_validations_without_improvement_stop_the_run_early(tmp_path):
    run = _run(tmp_path, reads="", max_steps=100, val_every_steps=2, patience=3)
    assert run.stopped_early and run.state.step == 6 and run.state.bad_vals == 3
    assert run.best is not None and run.state.best_cer == run.state.base_cer == 1.0  # the base stays the best


@pytest.mark.parametrize("steps", [7, 8])  # 7: `finish` validates the last weights; 8: the loop's last step did
def test_keeping_the_last_weights_neither_stops_early_nor_keeps_a_better_earlier_validation(tmp_path, steps):
    # the base reads 0.0, the validations 0.5, 1.0, 1.0, 1.0: patience 2 would stop the run at step 4
    reads = ["ab", "a", "", "", "", ""]
    run = _run(tmp_path, reads=iter(reads), max_steps=steps, val_every_steps=2, patience=2, keep="last")
    assert not run.stopped_early and run.state.step == steps and run.state.bad_vals == 3 + (steps == 8)
    assert run.state.best_cer == 1.0 and [h["val_cer"] for h in run.state.history] == [0.5, 1.0, 1.0, 1.0]
    kept_best = _run(tmp_path / "best", reads=iter(reads), max_steps=steps, val_every_steps=2, patience=100)
    assert kept_best.state.best_cer == 0.0  # keeping the best, the base's perfect reading stays


def test_a_stop_request_cancels_between_steps(tmp_path):
    calls = iter(range(100))
    run = _run(tmp_path, stop=lambda: next(calls) >= 3, max_steps=100, val_every_steps=50)
    assert run.cancelled and run.state.step == 3 and run.state.history == []  # no validation after a stop


def test_each_family_has_a_complete_adapter():
    assert adapter_for("ctc") is CTCAdapter and adapter_for("encoder-decoder") is EncoderDecoderAdapter
    assert not inspect.isabstract(CTCAdapter) and not inspect.isabstract(EncoderDecoderAdapter)
    with pytest.raises(TypeError):
        type("Partial", (Adapter,), {})()  # an adapter that leaves out a step cannot be built
    assert EncoderDecoderAdapter.fit_decoder is not Adapter.fit_decoder  # TrOCR's is a no-op, but its own


@pytest.mark.parametrize(("cer_to_beat", "kept"), [(0.9, "own"), (0.4, "base")])
def test_with_a_cer_to_beat_the_base_is_only_the_fallback(tmp_path, cer_to_beat, kept):
    # the base reads perfectly, the run's weights worse: 0.5 at step 2, 1.0 at step 4
    run = _run(tmp_path, reads=iter(["ab", "a", ""]), cer_to_beat=cer_to_beat, max_steps=4, val_every_steps=2,
               patience=100)
    assert run.state.base_cer == 0.0 and [h["val_cer"] for h in run.state.history] == [0.5, 1.0]
    if kept == "own":  # under the bar: the run's best weights, not the base's
        assert run.state.best_cer == 0.5 and run.best is not run.fallback
        assert not (run.best["weight"] == run.fallback["weight"]).all()
    else:  # never under it: the base's weights and CER come back
        assert run.state.best_cer == 0.0 and run.best is run.fallback


def test_a_resumed_run_keeps_its_fallback(tmp_path):
    """Killed after a validation under the base (0.5 against 0.0) and resumed, the run still falls back."""
    killed = _build(tmp_path, reads=iter(["ab", "a"]), cer_to_beat=0.4, max_steps=2, val_every_steps=2, patience=100)
    killed.validate_base()
    killed.train(TimeBudget.start(0.0, 1e6, 0.0))  # ends at the step cap, checkpointed, never finished
    assert killed.state.best_cer == 0.5 and killed.best is not killed.fallback
    resumed = _build(tmp_path, reads=iter([""]), cer_to_beat=0.4, resume=True, max_steps=4, val_every_steps=2,
                     patience=100)
    resumed.validate_base()  # the base's score comes from the checkpoint, not a new validation
    resumed.train(TimeBudget.start(0.0, 1e6, 0.0))
    resumed.finish()
    assert resumed.state.step == 4 and [h["val_cer"] for h in resumed.state.history] == [0.5, 1.0]
    assert resumed.state.best_cer == 0.0 and (resumed.best["weight"] == killed.fallback["weight"]).all()
