"""Learning curve: fine-tune the default recognizer on growing slices of the notes' train split.

For each size: train (time-boxed), then score the best checkpoint on the `eval` split (pages of
documents never trained on). Trained weights go to --work (outside the repo: the notes may not
be used for shipped weights). Prints one JSON object.

    OMP_NUM_THREADS=1 .venv/bin/python bench/learning_curve.py --sizes 250,all --max-minutes 5
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from devdata import NOTES_LABELS as NOTES

from core.evaluate import evaluate_recognizer, load_line_set, score_lines
from core.settings import configure_process
from core.train.data import PICKS


def best_path_score(rec, crops, texts) -> dict:
    """The same model read without the writer's character model (what the LM adds)."""
    if not hasattr(rec, "decode"):
        return {"cer": None, "cer_4plus": None}
    return score_lines(texts, [rec.decode(f, {"beam": 0}).text for f in rec.all_frame_probs(crops)])


def fine_tune_and_score(labels: str, eval_set: tuple, out: Path, *, base: str, max_minutes: float,
                        limit_lines: int | None, seed: int, recipe: dict, pick: str, self_train: bool,
                        transductive: bool = False, pick_model: tuple[str, ...] | None = None,
                        reuse: bool = False) -> dict:
    """One time-boxed fine-tune on the train split, scored on `eval_set` (crops, texts); what a table row needs.

    `transductive`: the eval pages (boxes only) join the self-training pool, as in the app, where
    the pages to be read are among the user's unconfirmed ones. `pick_model`: what reads each round of
    a queue pick (default: `base`, one round). `reuse`: a model already in `out` is scored, not trained again.
    """
    from core.recognize import load_recognizer
    from core.train_recognizer import train_recognizer

    crops, texts = eval_set
    start = time.perf_counter()
    kept = reuse and (out / "inkscribe.json").exists()
    path = out if kept else train_recognizer(
        labels, "train", base=base, max_minutes=max_minutes, out=out, limit_lines=limit_lines, seed=seed,
        recipe=recipe, resume=False, pick=pick, pick_model=pick_model, self_train=self_train,
        pool=labels if self_train and transductive else None, pool_split="eval" if transductive else None,
        progress=lambda d: print(d["message"], file=sys.stderr, flush=True) if "message" in d else None)
    manifest = json.loads((path / "inkscribe.json").read_text())
    wall = manifest["metrics"]["wall_seconds"] if kept else time.perf_counter() - start
    rec = load_recognizer(str(path))
    score = evaluate_recognizer(rec, crops, texts)
    greedy = best_path_score(rec, crops, texts)
    return {"pick": pick, "seed": seed, "self_training": manifest.get("self_training"),
            "transductive": bool(self_train and transductive), "train_lines": manifest["trained_on"]["lines"],
            "val_lines": manifest["trained_on"]["val_lines"], "val_pages": manifest["trained_on"]["val_pages"],
            "wall_s": round(wall, 1),
            "steps": manifest["metrics"]["steps"], "epochs": manifest["metrics"]["epochs"],
            "val_cer": manifest["metrics"]["val_cer"], "stopped": manifest["metrics"]["stopped"],
            "eval_cer": score["cer"], "eval_cer_4plus": score["cer_4plus"], "eval_exact": score["exact"],
            "eval_lines_per_s": score["lines_per_s"], "decoding": manifest.get("decoding"),
            "eval_cer_best_path": greedy["cer"], "eval_cer_4plus_best_path": greedy["cer_4plus"], "model": str(path)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", default=str(NOTES))
    ap.add_argument("--sizes", default="100,250,500,1000,all", help="comma-separated line counts or 'all'")
    ap.add_argument("--max-minutes", type=float, default=15.0, help="training budget per size")
    ap.add_argument("--base", default="default")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "inkscribe-bench" / "learning-curve"))
    ap.add_argument("--recipe", default="{}", help="JSON overrides of the training recipe")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-base", action="store_true", help="do not score the untrained base")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (2 on a quiet 2-core machine)")
    ap.add_argument("--pick", choices=PICKS, default="random",
                    help="which labelled lines a size keeps (core.train.data.PICKS): seeded random pages (validation "
                         "pages on top, or out of the kept lines: shuffled), the first pages in file order, or the "
                         "app's queues (sure-pairs, the current one; pairs, spread, fix-next)")
    ap.add_argument("--self-train", action="store_true", help="also learn from the other train lines, unlabelled")
    ap.add_argument("--transductive", action="store_true",
                    help="with --self-train: the eval pages (boxes only) join the unlabelled pool, as in the app")
    args = ap.parse_args()
    configure_process(threads=args.threads)
    recipe = json.loads(args.recipe)
    crops, texts = load_line_set(args.labels, "eval")
    results = {"labels": args.labels, "eval_lines": len(texts), "max_minutes": args.max_minutes, "recipe": recipe,
               "threads": args.threads, "runs": []}
    if not args.skip_base:
        results["base"] = evaluate_recognizer(args.base, crops, texts)
        print(json.dumps({"base": results["base"]}), file=sys.stderr, flush=True)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    tag = time.strftime("%H%M%S")
    for size in args.sizes.split(","):
        limit = None if size.strip() == "all" else int(size)
        run = fine_tune_and_score(args.labels, (crops, texts), work / f"size-{size.strip()}-{tag}", base=args.base,
                                  max_minutes=args.max_minutes, limit_lines=limit, seed=args.seed, recipe=recipe,
                                  pick=args.pick, self_train=args.self_train, transductive=args.transductive)
        results["runs"].append({"size": size.strip(), **run})
        print(json.dumps(results["runs"][-1]), file=sys.stderr, flush=True)
    print(json.dumps(results, indent=2))
    shutil.rmtree(work / ".cache", ignore_errors=True)


if __name__ == "__main__":
    main()
