"""Benchmark line detectors on the notes' eval pages, and the fine-tune on the notes' train pages.

    OMP_NUM_THREADS=1 .venv/bin/python bench/detector.py --detectors classical default
    OMP_NUM_THREADS=1 .venv/bin/python bench/detector.py --detectors default --finetune --minutes 15

Scores come from core.evaluate.evaluate_detector (P/R/F1 at IoU 0.5, merged, split, cut short, s/page).
`--complete-pages` scores only the pages whose labels box every line of text (bench/label_gaps.py).
Fine-tuned weights go to --out (outside the repository), never into models/.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from devdata import NOTES_LABELS as NOTES
from label_gaps import complete_pages

from core.evaluate import evaluate_detector
from core.labels import read_labels
from core.settings import configure_process


def table(rows: list[dict]) -> str:
    cols = ["detector", "pages", "precision", "recall", "f1", "merged", "split", "cut_short", "s_per_page"]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", type=Path, default=NOTES)
    ap.add_argument("--split", default="eval")
    ap.add_argument("--detectors", nargs="*", default=["classical", "default"])
    ap.add_argument("--finetune", action="store_true", help="fine-tune 'default' on the train split, then score it")
    ap.add_argument("--minutes", type=float, default=15, help="fine-tune time budget")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "inkscribe-bench", help="where fine-tuned models go")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--base", default="default", help="with --finetune: the detector to start from")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--complete-pages", action="store_true",
                    help="score only pages whose labels box every line of text (bench/label_gaps.py)")
    args = ap.parse_args(argv)

    configure_process(threads=args.threads)
    pages = read_labels(args.labels, split=args.split)
    if args.complete_pages:
        pages = complete_pages(pages)
    results: dict = {"labels": str(args.labels), "split": args.split, "threads": args.threads,
                     "complete_pages_only": args.complete_pages}
    rows = [evaluate_detector(spec, pages) for spec in args.detectors]
    if args.finetune:
        from core.modeldir import next_version_dir
        from core.train_detector import train_detector

        args.out.mkdir(parents=True, exist_ok=True)
        dest = next_version_dir(args.out, "detector-ft")
        start = time.perf_counter()
        path = train_detector(args.labels, split="train", base=args.base, max_minutes=args.minutes, out=dest,
                              threads=args.threads,
                              progress=lambda p: print(json.dumps(p), file=sys.stderr, flush=True))
        results["finetune"] = {"model": str(path), "seconds": round(time.perf_counter() - start, 1),
                               "max_minutes": args.minutes}
        rows.append(evaluate_detector(str(path), pages))
    results["detectors"] = rows
    print(table(rows))
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
