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


def best_path_score(rec, crops, texts) -> dict:
    """The same model read without the writer's character model (what the LM adds)."""
    if not hasattr(rec, "decode"):
        return {"cer": None, "cer_4plus": None}
    return score_lines(texts, [rec.decode(f, {"beam": 0}).text for f in rec.all_frame_probs(crops)])


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
    ap.add_argument("--pick", choices=["random", "first"], default="random",
                    help="which labelled lines a size keeps: seeded random pages, or the first pages in file order")
    ap.add_argument("--self-train", action="store_true", help="also learn from the other train pages, unlabelled")
    args = ap.parse_args()
    configure_process(threads=args.threads)
    from core.recognize import load_recognizer
    from core.train_recognizer import train_recognizer

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
        out = work / f"size-{size.strip()}-{tag}"
        start = time.perf_counter()
        path = train_recognizer(args.labels, "train", base=args.base, max_minutes=args.max_minutes, out=out,
                                limit_lines=limit, seed=args.seed, recipe=recipe, resume=False, pick=args.pick,
                                self_train=args.self_train,
                                progress=lambda d: print(d["message"], file=sys.stderr, flush=True)
                                if "message" in d else None)
        wall = time.perf_counter() - start
        manifest = json.loads((path / "inkscribe.json").read_text())
        rec = load_recognizer(str(path))
        score = evaluate_recognizer(rec, crops, texts)
        greedy = best_path_score(rec, crops, texts)
        run = {"size": size.strip(), "pick": args.pick, "self_training": manifest.get("self_training"),
               "train_lines": manifest["trained_on"]["lines"], "wall_s": round(wall, 1),
               "steps": manifest["metrics"]["steps"], "epochs": manifest["metrics"]["epochs"],
               "val_cer": manifest["metrics"]["val_cer"], "stopped": manifest["metrics"]["stopped"],
               "eval_cer": score["cer"], "eval_cer_4plus": score["cer_4plus"], "eval_exact": score["exact"],
               "eval_lines_per_s": score["lines_per_s"], "decoding": manifest.get("decoding"),
               "eval_cer_best_path": greedy["cer"], "eval_cer_4plus_best_path": greedy["cer_4plus"],
               "model": str(path)}
        results["runs"].append(run)
        print(json.dumps(run), file=sys.stderr, flush=True)
    print(json.dumps(results, indent=2))
    shutil.rmtree(work / ".cache", ignore_errors=True)


if __name__ == "__main__":
    main()
