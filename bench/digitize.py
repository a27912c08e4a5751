"""Benchmark the main job on labelled pages: page CER, line detection P/R/F1, s/page, peak memory.

Page CER: the ground-truth lines sorted top-to-bottom and joined by newlines, against the
pipeline's text output for the page (one line per detected line, in reading order).
`page_cer_rows` orders the ground truth in rows instead (boxes side by side read left to right):
sorting by each box's middle alone scrambles the fragments of one row ("operands + opcode
0) Instruction:"), which `page_cer` then counts against a pipeline that reads them in order.
`page_cer_y_sorted` sorts the pipeline's lines the same way as the ground truth, to show how
much of the page CER is reading order (margin notes after the main text) rather than reading.
`--detector truth` reads the labelled boxes instead of detecting: the page CER the recognizer
would give with perfect boxes, so the gap to a detector's row is what its boxes cost.

    .venv/bin/python bench/digitize.py --labels ../shared/data/notes/labels.jsonl --split eval \
        --detector default --recognizer default
"""

from __future__ import annotations

import argparse
import json
import resource
import time

from devdata import NOTES_LABELS
from label_gaps import complete_pages
from PIL import Image

from core.geometry import bbox
from core.labels import read_labels
from core.metrics import cer, detection_counts, detection_scores
from core.pipeline import Engines, read_page
from core.recognize import load_recognizer, resolve_recognizer_spec
from core.settings import configure_process
from core.types import Line


def top_to_bottom(lines) -> str:
    """Lines sorted by the middle of their box, then left to right, joined by newlines."""
    ordered = sorted(lines, key=lambda ln: ((bbox(ln.points)[1] + bbox(ln.points)[3]) / 2, bbox(ln.points)[0]))
    return "\n".join(ln.text for ln in ordered)


def labelled_lines(page) -> list[Line]:
    """The page's labelled boxes as fresh, unread lines (what a perfect detector would return)."""
    return [Line(points=[tuple(p) for p in ln.points]) for ln in page.lines]


class LabelledBoxes:
    """A stand-in detector that returns the current page's labelled boxes (`--detector truth`)."""

    def __init__(self) -> None:
        self.page = None

    def detect(self, images) -> list[list[Line]]:
        return [labelled_lines(self.page) for _ in images]


def in_rows(lines) -> str:
    """Rows top to bottom (a box whose middle lies in the current row's band joins it), each read
    left to right, joined by newlines: the reference order for `page_cer_rows`."""
    rows: list[dict] = []
    for ln in sorted(lines, key=lambda ln: (bbox(ln.points)[1] + bbox(ln.points)[3]) / 2):
        x0, y0, x1, y1 = bbox(ln.points)
        if rows and rows[-1]["top"] <= (y0 + y1) / 2 <= rows[-1]["bottom"]:
            rows[-1]["lines"].append(ln)
        else:
            rows.append({"top": y0, "bottom": y1, "lines": [ln]})
    return "\n".join(ln.text for row in rows for ln in sorted(row["lines"], key=lambda ln: bbox(ln.points)[0]))


def page_bench_args(description: str) -> tuple[argparse.Namespace, list]:
    """The arguments every page-level bench takes (labels, split, one detector, one recognizer),
    with the process's threads set and the labelled pages read."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--labels", default=str(NOTES_LABELS))
    ap.add_argument("--split", default="eval")
    ap.add_argument("--detector", default="default")
    ap.add_argument("--recognizer", default="default")
    ap.add_argument("--limit", type=int, help="only the first N pages")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--complete-pages", action="store_true",
                    help="score only pages whose labels box every line of text (bench/label_gaps.py)")
    args = ap.parse_args()
    configure_process(threads=args.threads)
    pages = read_labels(args.labels, split=args.split)[: args.limit]
    return args, complete_pages(pages) if args.complete_pages else pages


def main() -> None:
    args, pages = page_bench_args(__doc__.splitlines()[0])
    t0 = time.perf_counter()
    if args.detector == "truth":
        truth = LabelledBoxes()
        engines = Engines(truth, load_recognizer(args.recognizer), "truth (labelled boxes)",
                          resolve_recognizer_spec(args.recognizer))
    else:
        engines = Engines.load(args.detector, args.recognizer)
    load_s = time.perf_counter() - t0
    refs, refs_rows, hyps, hyps_sorted, counts, seconds = [], [], [], [], [], []
    for page in pages:
        with Image.open(page.image_path) as img:
            rgb = img.convert("RGB")
        if args.detector == "truth":
            truth.page = page
        start = time.perf_counter()
        result = read_page(rgb, engines, page.image_path.name)
        seconds.append(time.perf_counter() - start)
        refs.append(top_to_bottom(page.lines))
        refs_rows.append(in_rows(page.lines))
        hyps.append("\n".join(ln.text for ln in result.lines))
        hyps_sorted.append(top_to_bottom(result.lines))
        counts.append(detection_counts([ln.points for ln in page.lines], [ln.points for ln in result.lines]))
    det = detection_scores(counts)
    out = {
        "detector": engines.detector_spec,
        "recognizer": engines.recognizer_spec,
        "pages": len(pages),
        "page_cer": round(cer(refs, hyps), 4),
        "page_cer_rows": round(cer(refs_rows, hyps), 4),
        # The same lines sorted like the ground truth: what reading order (columns, margin notes) costs.
        "page_cer_y_sorted": round(cer(refs, hyps_sorted), 4),
        "line_precision": det["precision"],
        "line_recall": det["recall"],
        "line_f1": det["f1"],
        "merged": det["merged"],
        "cut_short": det["cut_short"],
        "split": det["split"],
        "s_per_page": round(sum(seconds) / max(1, len(seconds)), 3),
        "model_load_s": round(load_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": args.threads,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
