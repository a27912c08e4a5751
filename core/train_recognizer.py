"""Fine-tune a recognizer on corrected lines (labels.jsonl) so it learns one person's hand.

`train_recognizer` puts the parts in `core.train` together: the data (`core.train.data`: whole
pages held out), the recipe (`core.train.recipe` and the network's entry in
`core.recognize.networks`), the engine family's adapter (`core.train.adapter`), the time budget
(`core.train.budget`: warm-up, then cosine decay to the end of `max_minutes`, because the user gives
a time budget, not an epoch count), the loop and its validations (`core.train.loop`), the
checkpoint an interrupted run resumes from (`core.train.checkpoint`, in `<out>.work/`), and, after
the last step, the decoder's fit. The best-validating weights (the last, with the recipe's `keep`)
become a new, self-contained model directory (written atomically, never over an existing one).

Training runs on the `device` setting (core.device) through an `accelerate.Accelerator`: float16
mixed precision on CUDA (losses in float32), full precision elsewhere, so CPU numbers are unchanged.
Checkpoints and best-weight snapshots hold CPU tensors, so they resume and save on any machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from core.device import resolve_device, training_accelerator
from core.errors import BadInputError, CancelledError, ModelError
from core.recognize.networks import CTC, family_of
from core.train import select
from core.train.adapter import Adapter, Progress, adapter_for
from core.train.budget import TimeBudget
from core.train.checkpoint import Checkpoint
from core.train.data import DataSplit, Sample, load_samples, validation_lines
from core.train.loop import Run, configure_optimizer
from core.train.recipe import RECIPE, default_recipe
from core.train.rehearsal import rehearsal_lines

__all__ = ["RECIPE", "DataSplit", "Sample", "default_recipe", "load_samples", "train_recognizer", "training_device",
           "validation_lines"]
SHOWN_PROBLEMS = 5  # rows of the labels file left out that the training log names; the rest are counted


def training_device(engine: str, preference: str | None = None, report: Progress | None = None) -> str:
    """The device a fine-tune of `engine` runs on: `preference` (None: the `device` setting), except that
    CTC training on MPS runs on the CPU. torch (2.14) has no MPS kernel for CTC loss, and its CPU
    fallback copies every batch back and forth, which is slower than training on the CPU alone."""
    device = resolve_device(preference)
    if family_of(engine) == CTC and device == "mps":
        if report:
            report({"message": "training on the CPU: torch has no MPS kernel for CTC loss "
                               "(the fine-tuned model still reads on MPS)"})
        return "cpu"
    return device


def train_recognizer(
    labels: str | Path,
    split: str = "train",
    base: str = "default",
    max_minutes: float = 15,
    out: str | Path | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = True,
    val_fraction: float = 0.1,
    limit_lines: int | None = None,
    seed: int = 0,
    recipe: dict | None = None,
    threads: int | None = None,
    device: str | None = None,
    pick: str = "random",
    pick_model: str | Sequence[str] | None = None,
    self_train: bool = False,
    pool: str | Path | None = None,
    pool_split: str | None = None,
    extra_train: list[Sample] | None = None,
    provenance: dict | None = None,
    cer_to_beat: float | None = None,
) -> Path:
    """Fine-tune `base` on `labels` (split `split`) for at most `max_minutes`; returns the new model dir.

    `should_stop()` ends training early, keeping the best weights (before the first validation:
    CancelledError, checkpoint kept). `device`: see `training_device`. `pick` chooses the
    `limit_lines` labelled lines (`core.train.data.PICKS`, read with `pick_model` or `base`; a model per
    round of corrections, `core.train.select.queued_in_rounds`); `self_train`
    (`core.train.selftrain`) adds the unlabelled rest and `pool`, via `extra_train` and `provenance`;
    `cer_to_beat`: the base's weights are kept only if the run's never validate under it (`Run.cer_to_beat`).
    """
    if self_train:
        from core.train.selftrain import self_train as run_self_training

        return run_self_training(labels, _output_dir(out, base), max_minutes, progress, should_stop, split=split,
                                 base=base, resume=resume, val_fraction=val_fraction, limit_lines=limit_lines,
                                 seed=seed, recipe=recipe, threads=threads, device=device, pick=pick,
                                 pick_model=pick_model, pool=pool, pool_split=pool_split)
    t0 = time.monotonic()  # the budget covers the whole call, loading torch included
    import torch

    from core.recognize.registry import engine_of, resolve
    from core.settings import configure_process

    configure_process(threads=threads)
    report = progress or (lambda _d: None)
    t0 += select.replay_queue(labels, split, pick, limit_lines, pick_model or base, report)
    if max_minutes <= 0:
        raise BadInputError("max_minutes must be positive")
    resolved = resolve(base)
    family = engine_of(resolved)
    device = training_device(family, device, report)  # a device not here is refused before any work
    accelerator = training_accelerator(device)
    precision = "float16 mixed precision" if accelerator.mixed_precision == "fp16" else "full precision"
    report({"message": f"training on {device}, {precision}"})
    out = _output_dir(out, resolved)

    report({"message": "cutting line crops"})
    data = load_samples(labels, split, val_fraction, limit_lines, seed, pick, pick_model or base)
    data.train += extra_train or []
    rec = {**default_recipe(resolved), **(recipe or {})}
    val = validation_lines(data, int(rec["val_lines"]), seed)
    data.rehearsal = rehearsal_lines(int(rec["rehearse"]), seed)
    torch.manual_seed(seed)
    adapter = adapter_for(family)(resolved, rec, [s.text for s in data.learned()], device)
    not_learnable = _announce(adapter, data, val, report)

    optim = configure_optimizer(adapter, rec, accelerator)
    rounds = select.round_models(pick_model or base)
    picked_by = {"pick_rounds": list(rounds)} if len(rounds) > 1 else {}  # what read each round of a queue replay
    signature = {"labels": str(Path(labels).resolve()), "split": split, "base": resolved, "limit_lines": limit_lines,
                 "seed": seed, "val_fraction": val_fraction, "recipe": rec, "alphabet_added": adapter.added,
                 **({"pick": pick} if pick != "random" else {}), **picked_by,
                 **({"extra_train": len(extra_train)} if extra_train else {})}
    checkpoint = Checkpoint(out.parent / f"{out.name}.work", signature)
    state, best, fallback = checkpoint.restore(adapter.model, optim, resume, report)
    run = Run(adapter, data, val, rec, optim, accelerator, state, best, checkpoint, report,
              should_stop or (lambda: False), seed, cer_to_beat=cer_to_beat, fallback=fallback)
    run.validate_base()
    run.train(TimeBudget.start(t0, max_minutes, state.elapsed))
    run.finish()
    source = {"labels": str(Path(labels).resolve()), "split": split, "limit_lines": limit_lines, "seed": seed,
              "pick": pick, **picked_by}
    return _save(run, out, resolved, source, not_learnable, device, t0, checkpoint, provenance)


def _save(run: Run, out: Path, resolved: str, source: dict, not_learnable: list[str], device: str, t0: float,
          checkpoint: Checkpoint, provenance: dict | None) -> Path:
    """After the last step: fit the decoder, write the model directory, drop the checkpoint."""
    from core.modeldir import write_model_dir

    state, report = run.state, run.report
    if run.cancelled and not state.history:
        raise CancelledError(f"training stopped before the first validation; resume with the same output {out}")
    if state.step == 0 and not run.cancelled:
        report({"message": "the time budget ran out before the first training step (loading the model and reading "
                           "the validation lines used it); the saved model is the base network. Give it more minutes."})
    run.adapter.fit_decoder(run.data, run.val, run.best, tune=not run.cancelled, deadline=run.budget.decoder_deadline,
                            report=report)
    manifest = {**_manifest(run, out, resolved, source, not_learnable, device, t0), **(provenance or {})}
    path = write_model_dir(out, manifest, lambda tmp: run.adapter.save(tmp, run.best))
    checkpoint.discard()
    report({"message": f"saved {path} (validation CER {state.best_cer:.3f}, base {state.base_cer:.3f})",
            "val_cer": state.best_cer, "best_val_cer": state.best_cer})
    return path


def _output_dir(out: str | Path | None, resolved: str) -> Path:
    """Where the new model goes (default: the next free `recognizer-vN`); never an existing model or the base."""
    from core.modeldir import next_version_dir
    from core.settings import get_settings

    out = Path(out) if out else next_version_dir(get_settings().models_dir, "recognizer")
    out = out.expanduser().resolve()
    if out.exists():
        raise ModelError(f"{out}: a model already exists there; models are never overwritten")
    if Path(resolved).is_absolute() and Path(resolved) == out:
        raise ModelError("the output directory must differ from the base model")
    return out


def _announce(adapter: Adapter, data: DataSplit, val: list[Sample], report: Progress) -> list[str]:
    """Tell the user what the run trains on and which characters it adds or cannot learn; returns the latter."""
    not_learnable = adapter.unknown_chars([s.text for s in data.train + data.val])
    report({"message": f"{len(data.train)} training lines on {data.train_pages} pages, {len(val)} validation lines"
            f" on {data.val_pages} pages; skipped {data.skipped_empty} empty and {data.skipped_unreadable} unreadable"})
    if data.rehearsal:
        report({"message": f"rehearsal: {len(data.rehearsal)} lines of the base's own training data are learned too, so "
                           "the model keeps the characters your lines lack"})
    for problem in data.problems[:SHOWN_PROBLEMS]:
        report({"message": f"labels: {problem}"})
    if len(data.problems) > SHOWN_PROBLEMS:
        report({"message": f"and {len(data.problems) - SHOWN_PROBLEMS} more problems with the labels"})
    if adapter.added:
        report({"message": f"characters added to the alphabet: {''.join(adapter.added)}"})
    if not_learnable:
        report({"message": f"characters the model cannot produce (outside its alphabet; dropped from targets): "
                           f"{''.join(not_learnable)}"})
    return not_learnable


def _manifest(run: Run, out: Path, resolved: str, source: dict, not_learnable: list[str], device: str,
              t0: float) -> dict:
    """The new model's `inkscribe.json`: what it was trained on, how, and how well it validated."""
    state, data, recipe = run.state, run.data, run.recipe
    stopped = ("early (no val improvement)" if run.stopped_early else "on request" if run.cancelled else
               "time" if state.step else "time, before the first step")
    return {
        "kind": "recognizer",
        "engine": run.adapter.family,
        "name": out.name,
        "base": resolved,
        "trained_on": {"labels": source["labels"], "split": source["split"], "lines": len(data.train),
                       "pages": data.train_pages, "val_lines": len(run.val), "val_pages": data.val_pages,
                       "skipped_empty": data.skipped_empty, "skipped_unreadable": data.skipped_unreadable,
                       "limit_lines": source["limit_lines"], "seed": source["seed"], "pick": source["pick"],
                       **({"rehearsal_lines": len(data.rehearsal)} if data.rehearsal else {}),
                       **({"pick_rounds": source["pick_rounds"]} if "pick_rounds" in source else {})},
        "metrics": {"val_cer": state.best_cer, "base_val_cer": state.base_cer,
                    "train_seconds": round(state.elapsed, 1), "wall_seconds": round(time.monotonic() - t0, 1),
                    "set_aside_for_finish_s": round(run.budget.reserved, 1),
                    "finish_s": round(time.monotonic() - run.loop_end, 1),
                    "steps": state.step, "epochs": round(state.step * recipe["batch_size"] / len(data.learned()), 2),
                    "stopped": stopped},
        "recipe": {**recipe, "optimizer": "AdamW", "schedule": "linear warm-up + cosine decay over the time budget",
                   "loss": run.adapter.loss_name,
                   "selection": "last weights" if run.keeps_last() else "best validation CER"},
        "not_learnable": not_learnable,
        "device": {"trainer": device, "mixed_precision": run.accelerator.mixed_precision},
        "history": state.history,
        **run.adapter.describe(),
    }
