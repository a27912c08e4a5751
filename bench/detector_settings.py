"""Choose how a YOLO detector reads pages (narrowing, size, confidence) on labelled pages.

Run it on the notes' *train* split (never eval: eval is for the score that gets reported). Each
(squeeze_x, imgsz) reading detects once at a low confidence; every threshold then keeps the
boxes above it and is scored with core.metrics (P/R/F1 at IoU 0.5, merged, split), plus the
recall of lines by width — the line's width as a share of the page's longer side × 640, so
"<30" are 1–3 character lines and ">=240" full-width ones. Prints a table, then JSON.

    OMP_NUM_THREADS=1 .venv/bin/python bench/detector_settings.py --detector models/detector-yolo \\
        --reads 2,640 2,960 2.5,1120 --confs 0.25,0.35,0.45 --every 3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from devdata import NOTES_LABELS as NOTES

from core.settings import configure_process


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", default="default")
    ap.add_argument("--labels", type=Path, default=NOTES)
    ap.add_argument("--split", default="train")
    ap.add_argument("--every", type=int, default=3, help="score every Nth page of the split")
    ap.add_argument("--reads", nargs="+", default=["2,640"], help="squeeze_x,imgsz pairs to try")
    ap.add_argument("--confs", default="0.25,0.35,0.45")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    configure_process(threads=args.threads)
    from core.detect import load_detector
    from core.evaluate import sweep_reading
    from core.labels import read_labels

    pages = read_labels(args.labels, split=args.split)[:: args.every]
    reads = [(float(r.split(",")[0]), int(r.split(",")[1])) for r in args.reads]
    rows = sweep_reading(load_detector(args.detector), pages, reads, [float(c) for c in args.confs.split(",")])
    cols = ["squeeze_x", "imgsz", "conf", "precision", "recall", "f1", "merged", "recall_by_width"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    best = max(rows, key=lambda r: r["f1"])
    print(json.dumps({"detector": args.detector, "split": args.split, "pages": len(pages), "best": best,
                      "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
