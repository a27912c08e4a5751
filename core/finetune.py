"""Learn from the store: confirmed lines → fine-tune → score on held-out lines → register → activate.

The one flow behind the app's fine-tune job and `inkscribe train --from-store`. A new model
becomes active only when it reads the held-out lines better than the model that is active now
(not merely better than its base): a fine-tune never makes the user's reading worse. Where it was
measured to help, it also self-trains on the unconfirmed lines (`self_training_helps`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core import dataset, review
from core.errors import InkscribeError
from core.modeldir import read_manifest
from core.recognize import resolve_recognizer_spec
from core.store import Store

Progress = Callable[[dict], None]

MIN_POOL_LINES = 200  # unlabelled lines below which self-training is off by default
MIN_POOL_PER_CONFIRMED = 1.0  # and unlabelled lines per confirmed training line, at least


def self_training_helps(confirmed_lines: int, pool_lines: int) -> bool:
    """Whether self-training is on by default: only in the regime where it was measured to help.

    With 250 labelled lines and ~3,300 unlabelled ones it lowered CER(4+) 0.111 → 0.085–0.093 in the same
    15-minute budget (docs/decisions/0010-self-training.md). With a small pool, or one smaller than the
    labelled lines, the teacher's and the reading's share of the budget buys little, so it stays off.
    """
    return pool_lines >= MIN_POOL_LINES and pool_lines >= MIN_POOL_PER_CONFIRMED * confirmed_lines


def finetune_recognizer(store: Store, work_dir: Path, out: Path, *, base: str = "default", max_minutes: float = 15.0,
                        name: str | None = None, progress: Progress | None = None,
                        should_stop: Callable[[], bool] | None = None, threads: int | None = None,
                        options: dict | None = None, origin: str = "cli", self_train: bool | None = None) -> dict:
    """Train on the store's confirmed (not held-out) lines, score, register and maybe activate.

    `out` is the new model directory; when it already exists (a resumed job whose training had
    finished) it is scored and registered as it is. `options` go to `train_recognizer`
    (val_fraction, limit_lines, seed). `self_train`: also learn from the unconfirmed lines of pages
    not held out (None: `self_training_helps` decides). Returns what the app and the CLI show.
    """
    report = progress or (lambda _d: None)
    dataset.assign_holdout(store)
    summary = dataset.export_labels(store, Path(work_dir) / "labels.jsonl", part="train")
    if summary["lines"] == 0:
        raise InkscribeError("there are no confirmed lines to train on yet: confirm some lines on the Review page")
    forecast = review.forecast(store, summary["lines"])
    set_id = dataset.snapshot(store, origin, summary["line_ids"])
    report({"message": f"training on {summary['lines']} confirmed lines from {summary['documents']} documents"})
    self_training = _train(store, Path(work_dir), out, summary, self_train, report, base=base, max_minutes=max_minutes,
                           should_stop=should_stop, threads=threads, **(options or {}))
    report({"message": "scoring the base, the active and the new model on held-out lines"})
    scores = score_against_active(store, base, out)
    trained_on = {"lines": summary["lines"], "documents": summary["document_names"], "dataset_id": set_id,
                  "characters": summary["characters"], "base": base, "origin": origin, "self_training": self_training}
    metrics = {"lines_used": summary["lines"], "forecast_cer": forecast.get("cer"), **scores["metrics"]}
    model_id = register(store, out, name=name, base=base, trained_on=trained_on, metrics=metrics,
                        activate=scores["better"])
    note = _note(scores, stopped=bool(should_stop and should_stop()))
    return {"model_id": model_id, "model_dir": str(out), "activated": scores["better"], "note": note,
            "base_holdout": scores["base"], "active_holdout": scores["active"], "new_holdout": scores["new"],
            "forecast_cer": forecast.get("cer"), "lines_used": summary["lines"], "self_training": self_training}


def _train(store: Store, work_dir: Path, out: Path, summary: dict, self_train: bool | None, report: Progress,
           **train_kw) -> dict:
    """Fine-tune into `out` unless it exists (a resumed job whose training had finished: kept as it is).

    Returns the manifest's self-training stats, or {"off": why}, for the Models page and the caller.
    """
    from core.train_recognizer import train_recognizer

    off = None
    if not out.exists():
        pool, off = _self_training_pool(store, work_dir, summary["lines"], self_train, report)
        extra = {"self_train": True, "pool": pool} if pool else {}
        train_recognizer(summary["path"], split="train", out=out, progress=report, resume=True, **extra, **train_kw)
    return read_manifest(out).get("self_training") or {"off": off or "the model was trained without it"}


def _self_training_pool(store: Store, work_dir: Path, confirmed: int, self_train: bool | None,
                        report: Progress) -> tuple[str | None, str | None]:
    """(the unlabelled pool's labels file, None) when self-training is on, else (None, why it is off).

    The choice is reported, so the user sees why a run took longer to start learning (or did not).
    """
    off = "turned off for this run"
    if self_train is not False:
        pool = dataset.export_pool(store, work_dir / "pool.jsonl")
        if not pool["lines"]:
            off = "there are no unconfirmed lines outside the held-out pages to learn from"
        elif self_train is None and not self_training_helps(confirmed, pool["lines"]):
            off = (f"{pool['lines']} unconfirmed lines for {confirmed} confirmed ones; by default it needs at least "
                   f"{MIN_POOL_LINES}, and at least as many as the confirmed ones (where it was measured to help)")
        else:
            report({"message": f"self-training: also learning from {pool['lines']} unconfirmed lines on "
                               f"{pool['pages']} pages (their boxes, never their texts)"})
            return pool["path"], None
    report({"message": f"self-training off: {off}"})
    return None, off


def score_against_active(store: Store, base: str, new_dir: Path) -> dict:
    """Held-out scores of the base, the active model and the new one; `better`: the new beats the active."""
    specs = {"base": resolve_recognizer_spec(base), "active": resolve_recognizer_spec(store.active_spec("recognizer")),
             "new": str(Path(new_dir).resolve())}
    unique = list(dict.fromkeys(specs.values()))
    result = review.compare_on_holdout(store, unique)
    by_spec = dict(zip(unique, result["models"], strict=True)) if result["lines"] else {}
    got = {role: by_spec.get(spec) for role, spec in specs.items()}
    better = bool(got["new"] and got["active"] and got["new"]["cer"] < got["active"]["cer"])
    metrics = {}
    if got["new"]:
        metrics = {"holdout_cer": got["new"]["cer"], "holdout_wer": got["new"]["wer"],
                   "holdout_exact": got["new"]["exact"], "holdout_lines": result["lines"],
                   "base_holdout_cer": got["base"]["cer"], "active_holdout_cer": got["active"]["cer"]}
    return {**got, "better": better, "metrics": metrics}


def register(store: Store, model_dir: Path, *, name: str | None = None, base: str = "default",
             trained_on: dict | None = None, metrics: dict | None = None, activate: bool = False) -> int:
    """Record a model directory in the store (so the app lists it); its manifest's metrics are kept too."""
    manifest = read_manifest(model_dir)
    model_id = store.register_model(manifest.get("kind", "recognizer"), name or Path(model_dir).name, model_dir,
                                    engine=manifest.get("engine"), base=base,
                                    trained_on={**manifest.get("trained_on", {}), **(trained_on or {})},
                                    metrics={**manifest.get("metrics", {}), **(metrics or {})}, activate=activate)
    if activate:
        from core.recognize.registry import clear_cache

        clear_cache()
    return model_id


def _note(scores: dict, stopped: bool) -> str:
    if scores["better"]:
        note = "activated: it reads your held-out lines better than the active model"
    elif scores["new"]:
        note = "kept the active model: the new one did not read your held-out lines better"
    else:
        note = "not activated automatically: confirm lines on at least 2 pages so there are held-out lines to compare on"
    return ("Stopped on request; the best weights so far were kept and " + note) if stopped else note
