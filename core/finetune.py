"""Learn from the store: confirmed lines → fine-tune → score on held-out lines → register → activate.

The one flow behind the app's fine-tune job and `inkscribe train --from-store`. A new model
becomes active only when it reads the held-out lines better than the model that is active now
(not merely better than its base): a fine-tune never makes the user's reading worse.
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


def finetune_recognizer(store: Store, work_dir: Path, out: Path, *, base: str = "default", max_minutes: float = 15.0,
                        name: str | None = None, progress: Progress | None = None,
                        should_stop: Callable[[], bool] | None = None, threads: int | None = None,
                        options: dict | None = None, origin: str = "cli") -> dict:
    """Train on the store's confirmed (not held-out) lines, score, register and maybe activate.

    `out` is the new model directory; when it already exists (a resumed job whose training had
    finished) it is scored and registered as it is. `options` go to `train_recognizer`
    (val_fraction, limit_lines, seed). Returns what the app and the CLI show.
    """
    from core.train_recognizer import train_recognizer

    report = progress or (lambda _d: None)
    dataset.assign_holdout(store)
    summary = dataset.export_labels(store, Path(work_dir) / "labels.jsonl", part="train")
    if summary["lines"] == 0:
        raise InkscribeError("there are no confirmed lines to train on yet: confirm some lines on the Review page")
    forecast = review.forecast(store, summary["lines"])
    set_id = dataset.snapshot(store, origin, summary["line_ids"])
    report({"message": f"training on {summary['lines']} confirmed lines from {summary['documents']} documents"})
    if not out.exists():
        train_recognizer(summary["path"], split="train", base=base, max_minutes=max_minutes, out=out, progress=report,
                         should_stop=should_stop, resume=True, threads=threads, **(options or {}))
    report({"message": "scoring the base, the active and the new model on held-out lines"})
    scores = score_against_active(store, base, out)
    trained_on = {"lines": summary["lines"], "documents": summary["document_names"], "dataset_id": set_id,
                  "characters": summary["characters"], "base": base, "origin": origin}
    metrics = {"lines_used": summary["lines"], "forecast_cer": forecast.get("cer"), **scores["metrics"]}
    model_id = register(store, out, name=name, base=base, trained_on=trained_on, metrics=metrics,
                        activate=scores["better"])
    note = _note(scores, stopped=bool(should_stop and should_stop()))
    return {"model_id": model_id, "model_dir": str(out), "activated": scores["better"], "note": note,
            "base_holdout": scores["base"], "active_holdout": scores["active"], "new_holdout": scores["new"],
            "forecast_cer": forecast.get("cer"), "lines_used": summary["lines"]}


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
