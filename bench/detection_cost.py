"""What a detector's boxes cost the page text, part by part (labelled pages, one recognizer).

F1 at IoU 0.5 counts boxes; the user reads text. This reads every page once with the detector's
boxes and once with the labelled boxes, then swaps one kind of detection error at a time for
the labelled truth and reports the page CER of each variant:

- `detected`: the detector's boxes (what the app gives);
- `extra_boxes_dropped`: without the unmatched boxes that hold no labelled line's middle
  (a drawing or a stroke read as a line);
- `missed_lines_added`: plus the labelled box of every line whose middle no box holds;
- `matched_as_labelled`: each box matched at IoU 0.5 replaced by its labelled box (where the
  box's edges cut: lines cut short, loose or tight margins);
- `truth`: the labelled boxes alone (the recognizer's own page CER).

What is left between the variants and `truth` is merged and split lines. Both sides of every
page CER are put in rows (`bench/digitize.py`'s `in_rows`), so reading order costs nothing here.

    OMP_NUM_THREADS=1 .venv/bin/python bench/detection_cost.py --detector default --recognizer MODEL_DIR
"""

from __future__ import annotations

import json

from digitize import in_rows, labelled_lines, page_bench_args
from PIL import Image

from core.detect import load_detector
from core.geometry import bbox
from core.metrics import cer, match_boxes
from core.pipeline import recognize_lines
from core.recognize import load_recognizer
from core.types import Line

VARIANTS = ("detected", "extra_boxes_dropped", "missed_lines_added", "matched_as_labelled", "truth")


def holds_middle(box: Line, line: Line) -> bool:
    x0, y0, x1, y1 = bbox(box.points)
    lx0, ly0, lx1, ly1 = bbox(line.points)
    return x0 <= (lx0 + lx1) / 2 <= x1 and y0 <= (ly0 + ly1) / 2 <= y1


def variants(truth: list[Line], pred: list[Line], pairs: list[tuple[int, int]]) -> dict[str, list[Line]]:
    """The box sets of VARIANTS for one page, given the (truth, pred) matches at IoU 0.5 (Line
    objects shared, so each box is read once)."""
    matched_t = {t for t, _ in pairs}
    matched_p = {p: t for t, p in pairs}
    extra = {i for i, p in enumerate(pred) if i not in matched_p and not any(holds_middle(p, t) for t in truth)}
    missed = [t for i, t in enumerate(truth) if i not in matched_t and not any(holds_middle(p, t) for p in pred)]
    return {
        "detected": pred,
        "extra_boxes_dropped": [p for i, p in enumerate(pred) if i not in extra],
        "missed_lines_added": pred + missed,
        "matched_as_labelled": [truth[matched_p[i]] if i in matched_p else p for i, p in enumerate(pred)],
        "truth": truth,
    }


def main() -> None:
    args, pages = page_bench_args(__doc__.splitlines()[0])
    detector, recognizer = load_detector(args.detector), load_recognizer(args.recognizer)
    refs: list[str] = []
    hyps: dict[str, list[str]] = {v: [] for v in VARIANTS}
    counts = {"extra_boxes": 0, "missed_lines": 0, "matched": 0, "boxes": 0, "lines": 0}
    for page in pages:
        with Image.open(page.image_path) as img:
            rgb = img.convert("RGB")
        truth = labelled_lines(page)
        pred = detector.detect([rgb])[0]
        recognize_lines(rgb, truth + pred, recognizer)
        pairs = match_boxes([t.points for t in truth], [p.points for p in pred])
        sets = variants(truth, pred, pairs)
        refs.append(in_rows(page.lines))
        for name, lines in sets.items():
            hyps[name].append(in_rows(lines))
        counts["extra_boxes"] += len(pred) - len(sets["extra_boxes_dropped"])
        counts["missed_lines"] += len(sets["missed_lines_added"]) - len(pred)
        counts["matched"] += len(pairs)
        counts["boxes"] += len(pred)
        counts["lines"] += len(truth)
    out = {"detector": args.detector, "recognizer": args.recognizer, "pages": len(pages), **counts,
           "page_cer_rows": {name: round(cer(refs, h), 4) for name, h in hyps.items()}}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
