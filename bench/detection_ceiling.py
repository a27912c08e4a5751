"""What keeps a detector's F1 from the target: F1 with one kind of miss forgiven at a time.

F1 at IoU 0.5 on the labelled pages, for the detector's boxes and for variants that each set one
kind of error aside (`bench/detection_cost.py` does the same for the page text):

- `detected`: the detector's boxes;
- `small_lines_found`: every labelled line narrower than 30 model px (a bullet, a digit, a
  diagram's letter: `core.evaluate.width_bin` "<30") that no box matches, counted as found;
- `extra_boxes_dropped`: without the boxes that hold no labelled line's middle (on these notes
  mostly lines of text the labels leave unboxed, `bench/label_gaps.py`);
- `both`: the two above together;
- `small_lines_left_out`: lines and boxes under 30 model px taken out of both sides (F1 over
  the rest).

It also says where the missed small lines went: their middle inside another box (a letter or
bullet boxed together with its neighbour) or in no box at all. No recognizer is needed.

    OMP_NUM_THREADS=1 .venv/bin/python bench/detection_ceiling.py --detector default
"""

from __future__ import annotations

import json

from detection_cost import holds_middle
from digitize import labelled_lines, page_bench_args
from PIL import Image

from core.detect import load_detector
from core.evaluate import width_bin
from core.metrics import detection_counts, detection_scores, match_boxes
from core.types import Line

VARIANTS = ("detected", "small_lines_found", "extra_boxes_dropped", "both", "small_lines_left_out")


def variants(truth: list[Line], pred: list[Line], size: tuple[int, int]) -> tuple[dict, dict]:
    """({variant: (truth, pred)}, where the unmatched small lines went) for one page."""
    small = [width_bin(t.points, size) == "<30" for t in truth]
    matched = {t for t, _ in match_boxes([t.points for t in truth], [p.points for p in pred])}
    missed_small = [t for i, t in enumerate(truth) if small[i] and i not in matched]
    kept = [p for p in pred if any(holds_middle(p, t) for t in truth)]
    big_truth = [t for t, s in zip(truth, small, strict=True) if not s]
    big_pred = [p for p in pred if width_bin(p.points, size) != "<30"]
    inside = sum(1 for t in missed_small if any(holds_middle(p, t) for p in pred))
    return ({"detected": (truth, pred), "small_lines_found": (truth, pred + missed_small),
             "extra_boxes_dropped": (truth, kept), "both": (truth, kept + missed_small),
             "small_lines_left_out": (big_truth, big_pred)},
            {"small_lines": sum(small), "small_missed_inside_a_box": inside,
             "small_missed_no_box": len(missed_small) - inside})


def main() -> None:
    args, pages = page_bench_args(__doc__.splitlines()[0])
    detector = load_detector(args.detector)
    counts: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    small = {"small_lines": 0, "small_missed_inside_a_box": 0, "small_missed_no_box": 0}
    for page in pages:
        with Image.open(page.image_path) as img:
            rgb = img.convert("RGB")
        sets, where = variants(labelled_lines(page), detector.detect([rgb])[0], rgb.size)
        for name, (truth, pred) in sets.items():
            counts[name].append(detection_counts([t.points for t in truth], [p.points for p in pred]))
        for key, n in where.items():
            small[key] += n
    scores = {name: {k: s[k] for k in ("precision", "recall", "f1")}
              for name, s in ((n, detection_scores(c)) for n, c in counts.items())}
    print(json.dumps({"detector": args.detector, "pages": len(pages), **small, "variants": scores}, indent=1))


if __name__ == "__main__":
    main()
