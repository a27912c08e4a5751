"""Evaluate: recognizers on labelled line crops, detectors on labelled pages.

Benchmarks, the CLI, the app's Evaluate page and training's validation all score through
these functions so every number means the same thing everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from core.errors import CancelledError
from core.geometry import bbox, iou
from core.ingest import load_image
from core.labels import LabelPage, iter_line_crops, read_labels
from core.metrics import cer, detection_counts, detection_scores, match_boxes, wer

if TYPE_CHECKING:
    from core.recognize import Recognizer


def load_line_set(labels: str | Path, split: str | None = "eval", limit: int | None = None):
    """(crops, texts) of every labelled line in a split; crops cut as inference cuts them."""
    pages = read_labels(labels, split=split)
    crops, texts = [], []
    for _, line, crop in iter_line_crops(pages):
        crops.append(crop)
        texts.append(line.text)
        if limit and len(texts) >= limit:
            break
    return crops, texts


def score_lines(references: Sequence[str], hypotheses: Sequence[str]) -> dict:
    """CER/WER (corpus level), exact-match share, and CER over 4+ character lines."""
    long_pairs = [(r, h) for r, h in zip(references, hypotheses, strict=True) if len(r.strip()) >= 4]
    n = len(references)
    return {
        "lines": n,
        "cer": round(cer(references, hypotheses), 4),
        "wer": round(wer(references, hypotheses), 4),
        "exact": round(sum(r.strip() == h.strip() for r, h in zip(references, hypotheses, strict=True)) / n, 4)
        if n
        else 0.0,
        "cer_4plus": round(cer([r for r, _ in long_pairs], [h for _, h in long_pairs]), 4),
    }


def evaluate_recognizer(spec: str | Path | Recognizer, crops: Sequence[Image.Image], texts: Sequence[str],
                        keep_lines: bool = False, progress: Callable[[int], None] | None = None,
                        should_stop: Callable[[], bool] | None = None) -> dict:
    """Score a recognizer (a spec, or one already loaded so a caller can reuse it) on labelled crops.

    With `progress` (lines read so far) or `should_stop`, the crops are read in chunks so a
    background job can report and stop between them (CancelledError); without, in one call.
    """
    from core.recognize import load_recognizer

    if isinstance(spec, str | Path):
        recognizer = load_recognizer(str(spec))
    else:
        recognizer, spec = spec, spec.name
    start = time.perf_counter()
    results = _read_in_chunks(recognizer, list(crops), progress, should_stop)
    elapsed = time.perf_counter() - start
    hyps = [r.text for r in results]
    out = {"recognizer": spec, **score_lines(texts, hyps), "lines_per_s": round(len(crops) / elapsed, 2) if elapsed else 0.0}
    if keep_lines:
        out["per_line"] = [
            {"reference": t, "hypothesis": r.text, "confidence": round(r.confidence, 4)}
            for t, r in zip(texts, results, strict=True)
        ]
    return out


READ_CHUNK = 64  # lines per recognize() call when progress is reported: batching stays efficient


def _read_in_chunks(recognizer, crops: list, progress: Callable[[int], None] | None,
                    should_stop: Callable[[], bool] | None) -> list:
    """Recognize in chunks when someone watches (progress, cancel); a chunk is never cut short."""
    if progress is None and should_stop is None:
        return list(recognizer.recognize(crops))
    results: list = []
    for i in range(0, len(crops), READ_CHUNK):
        if should_stop is not None and should_stop():
            raise CancelledError("stopped on request")
        results.extend(recognizer.recognize(crops[i:i + READ_CHUNK]))
        if progress is not None:
            progress(len(results))
    return results


def evaluate_recognizers(labels: str | Path, split: str, specs: Sequence[str], limit: int | None = None) -> dict:
    crops, texts = load_line_set(labels, split, limit)
    return {"models": [evaluate_recognizer(s, crops, texts) for s in specs]}


def evaluate_detector(
    spec: str, pages: Sequence[LabelPage], progress: Callable[[int, int], None] | None = None
) -> dict:
    from core.detect import load_detector

    detector = load_detector(spec)
    counts, seconds = [], 0.0
    for i, page in enumerate(pages):
        rgb = load_image(page.image_path)  # the same size limits and colour handling as any input
        start = time.perf_counter()
        lines = detector.detect([rgb])[0]
        seconds += time.perf_counter() - start
        counts.append(detection_counts([ln.points for ln in page.lines], [ln.points for ln in lines]))
        if progress:
            progress(i + 1, len(pages))
    return {"detector": spec, **detection_scores(counts), "s_per_page": round(seconds / max(1, len(pages)), 3)}


WIDTH_BINS = ((0, 30, "<30"), (30, 120, "30-120"), (120, 240, "120-240"), (240, float("inf"), ">=240"))


def width_bin(points, page_size: tuple[int, int]) -> str:
    """A line's width as a share of the page's longer side x 640: "<30" are 1-3 characters."""
    x0, _, x1, _ = bbox(points)
    w = (x1 - x0) / max(page_size) * 640
    return next(name for lo, hi, name in WIDTH_BINS if lo <= w < hi)


def detection_report(truths: Sequence, preds: Sequence, sizes: Sequence[tuple[int, int]]) -> dict:
    """`detection_scores` over pages plus recall per line-width bin (what small or long lines cost)."""
    out = detection_scores([detection_counts(t, p) for t, p in zip(truths, preds, strict=True)])
    found: dict[str, list[int]] = {}
    for truth, pred, size in zip(truths, preds, sizes, strict=True):
        for t in truth:
            hit = found.setdefault(width_bin(t, size), [0, 0])
            hit[0] += 1
            hit[1] += any(iou(t, p) >= 0.5 for p in pred)
    out["recall_by_width"] = {name: round(found[name][1] / found[name][0], 3) for *_, name in WIDTH_BINS if name in found}
    return out


def sweep_reading(detector, pages: Sequence[LabelPage], reads: Sequence[tuple[float, int]],
                  confs: Sequence[float]) -> list[dict]:
    """Score a YOLO detector read at each (squeeze_x, imgsz) and confidence threshold on labelled pages.

    Each page is loaded once and read once per (squeeze_x, imgsz) at the lowest threshold;
    higher thresholds filter those boxes. The detector's own settings are put back afterwards.
    """
    truths = [[ln.points for ln in p.lines] for p in pages]
    sizes: list[tuple[int, int]] = []
    found: list[list[list]] = [[] for _ in reads]  # per reading, per page: (points, confidence)
    seconds = [0.0 for _ in reads]
    saved = (detector.squeeze_x, detector.imgsz, detector.conf)
    try:
        for page in pages:
            image = load_image(page.image_path)
            sizes.append(image.size)
            for r, (squeeze_x, imgsz) in enumerate(reads):
                detector.squeeze_x, detector.imgsz, detector.conf = float(squeeze_x), int(imgsz), min(confs)
                start = time.perf_counter()
                lines = detector.detect([image])[0]
                seconds[r] += time.perf_counter() - start
                found[r].append([(ln.points, ln.det_confidence) for ln in lines])
    finally:
        detector.squeeze_x, detector.imgsz, detector.conf = saved
    rows = []
    for r, (squeeze_x, imgsz) in enumerate(reads):
        for conf in confs:
            preds = [[pts for pts, c in page if c >= conf] for page in found[r]]
            rows.append({"squeeze_x": float(squeeze_x), "imgsz": int(imgsz), "conf": float(conf),
                         **detection_report(truths, preds, sizes),
                         "s_per_page": round(seconds[r] / max(1, len(pages)), 3)})
    return rows


MARGIN_SIDES = ("left", "top", "right", "bottom")


def fit_box_margins(detector, pages: Sequence[LabelPage]) -> dict:
    """How far each side of the detector's boxes sits from the labelled box it matches (IoU ≥ 0.5),
    as the median share of the detected box's height, per side (positive: the label reaches further).

    A recognizer learns from crops of labelled boxes; a detector whose boxes are cut tighter or
    looser than those feeds it crops unlike any it learnt from. The shipped detector's boxes
    reached ~8 % of a line's height below the labels'; moving them took the notes' eval page CER
    from 0.497 to 0.477 with the base recognizer (docs/decisions/0007-detector.md).
    """
    import numpy as np

    offsets: dict[str, list[float]] = {side: [] for side in MARGIN_SIDES}
    saved = detector.margins
    detector.margins = {}
    try:
        for page in pages:
            found = [ln.points for ln in detector.detect([load_image(page.image_path)])[0]]
            for ti, pi in match_boxes([ln.points for ln in page.lines], found):  # as the scores match them
                tx0, ty0, tx1, ty1 = bbox(page.lines[ti].points)
                px0, py0, px1, py1 = bbox(found[pi])
                h = max(1.0, py1 - py0)
                for side, d in zip(MARGIN_SIDES, (px0 - tx0, py0 - ty0, tx1 - px1, ty1 - py1), strict=True):
                    offsets[side].append(d / h)
    finally:
        detector.margins = saved
    matched = len(offsets["top"])
    return {"margins": {s: round(float(np.median(v)), 3) if v else 0.0 for s, v in offsets.items()},
            "matched_lines": matched}


def evaluate_detectors(labels: str | Path, split: str, specs: Sequence[str]) -> dict:
    pages = read_labels(labels, split=split)
    return {"detectors": [evaluate_detector(s, pages) for s in specs]}
