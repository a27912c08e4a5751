"""Which lines to correct first: the base model's confidence on every line of a labels file.

The orders themselves are the review stage's (`core.review.queue_order`): `fix-next` is least
confident first, anywhere (the app's first "what to fix next" queue); `spread`, the app's queue
now, takes every page in turn. Replayed on a labels file, a pick gives the N lines a user working
down that queue would have confirmed. The app holds these confidences from transcribing; a replay
reads every line once with the base model, so the trainers keep that reading outside their budget.
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path

CONFIDENCE_PICKS = ("fix-next", "spread")
LineKey = tuple[int, int]  # (page index in file order, line index in the page)


def needs_confidences(pick: str) -> bool:
    return pick in CONFIDENCE_PICKS


def base_confidences(labels: str | Path, split: str, model: str) -> dict[LineKey, tuple[float, float]]:
    """(page, line) → (confidence, width/height) of `model` reading each transcribed line, once per process."""
    path = Path(labels).resolve()
    return _confidences(str(path), path.stat().st_mtime_ns, split, model)


@lru_cache(maxsize=4)
def _confidences(labels: str, _mtime_ns: int, split: str, model: str) -> dict[LineKey, tuple[float, float]]:
    from core.errors import BadInputError
    from core.geometry import crop_line
    from core.ingest import load_image
    from core.recognize.registry import load
    from core.train.data import split_pages

    reader = load(model)
    pages = split_pages(labels, split)
    out: dict[LineKey, tuple[float, float]] = {}
    for pi, page in enumerate(pages):
        try:
            rgb = load_image(page.image_path)
        except BadInputError:
            continue
        keys, crops = [], []
        for li, line in enumerate(page.lines):
            try:
                crop = crop_line(rgb, line.points)
            except ValueError:
                continue
            if line.text.strip() and crop.width >= 2 and crop.height >= 2:
                keys.append((pi, li))
                crops.append(crop)
        for key, crop, reading in zip(keys, crops, reader.recognize(crops), strict=True):
            out[key] = (float(reading.confidence), crop.width / crop.height)
    return out


def replay_queue(labels: str | Path, split: str, pick: str, limit_lines: int | None, model: str, report) -> float:
    """Read the split with `model` when `pick` needs its confidences; returns the seconds it took (0 when cached)."""
    if not (needs_confidences(pick) and limit_lines):
        return 0.0
    start = time.monotonic()
    base_confidences(labels, split, model)
    seconds = time.monotonic() - start
    report({"message": f"read every line with {model} to replay the {pick} queue in {seconds:.0f} s (outside "
                       "the time budget: the app has these confidences from transcribing)"})
    return seconds
