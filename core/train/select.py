"""Which lines to correct first: the base model's confidence on every line of a labels file.

The orders themselves are the review stage's (`core.review.queue_order`): `fix-next` is least
confident first, anywhere (the app's first "what to fix next" queue); `spread` takes every page in
turn; `pairs` takes every page in turn for the line adding most new character pairs, and
`sure-pairs`, the app's queue now, weighs those pairs by the reading's confidence². Replayed on
a labels file, a pick gives the N lines a user working down that queue would have confirmed.
The app holds these readings from transcribing; a replay reads every line once with the base
model, so the trainers keep that reading outside their budget. Given several models, a replay
takes the user's rounds: each model (the base, then each fine-tune between rounds) picks an equal
share of the lines from those the rounds before left, their texts counting as known pairs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from core.review import PAIR_PICKS, LineKey, QueueLine, queue_order

CONFIDENCE_PICKS = ("fix-next", "spread", *PAIR_PICKS)


def base_confidences(labels: str | Path, split: str, model: str) -> dict[LineKey, QueueLine]:
    """(page, line) → `model`'s reading of each transcribed line (confidence, width/height, text), once per process."""
    path = Path(labels).resolve()
    return _confidences(str(path), path.stat().st_mtime_ns, split, model)


@lru_cache(maxsize=4)
def _confidences(labels: str, _mtime_ns: int, split: str, model: str) -> dict[LineKey, QueueLine]:
    from core.errors import BadInputError
    from core.labels import iter_line_crops
    from core.recognize.registry import load
    from core.train.data import split_pages

    reader = load(model)
    out: dict[LineKey, QueueLine] = {}
    for pi, page in enumerate(split_pages(labels, split)):
        index = {id(line): li for li, line in enumerate(page.lines)}
        try:
            lines = [(index[id(line)], crop) for _, line, crop in iter_line_crops([page])
                     if line.text.strip() and crop.width >= 2 and crop.height >= 2]
        except BadInputError:
            continue
        for (li, crop), reading in zip(lines, reader.recognize([c for _, c in lines]), strict=True):
            out[(pi, li)] = QueueLine(float(reading.confidence), crop.width / crop.height, reading.text)
    return out


def round_models(model: str | Sequence[str]) -> tuple[str, ...]:
    """The model that reads each round of corrections: one name, or one per round."""
    return (model,) if isinstance(model, str) else tuple(model)


def queued_in_rounds(labels: str | Path, split: str, pages: list, limit: int, pick: str,
                     model: str | Sequence[str]) -> list[list[LineKey]]:
    """Per round, the lines a user working down the `pick` queue confirms, each round read by the next of `model`.

    Round r takes its share of `limit` from the lines not yet taken, the texts of those taken before
    counting as known (the user confirmed them); one round is the queue read once by one model.
    """
    models = round_models(model)
    rounds: list[list[LineKey]] = []
    for r, name in enumerate(models):
        share = limit * (r + 1) // len(models) - limit * r // len(models)
        taken = {key for keys in rounds for key in keys}
        known = [pages[pi].lines[li].text for pi, li in taken]
        left = {key: line for key, line in base_confidences(labels, split, name).items() if key not in taken}
        rounds.append(queue_order(left, share, pick, known))
    return rounds


def replay_queue(labels: str | Path, split: str, pick: str, limit_lines: int | None, model: str | Sequence[str],
                 report) -> float:
    """Read the split with each of `model` when `pick` needs its confidences; returns the seconds it took.

    Said once per process and model: a later call (self-training's teacher and student) finds the reading cached.
    """
    if not (pick in CONFIDENCE_PICKS and limit_lines):
        return 0.0
    total = 0.0
    for name in round_models(model):
        misses, start = _confidences.cache_info().misses, time.monotonic()
        base_confidences(labels, split, name)
        if _confidences.cache_info().misses == misses:
            continue
        seconds = time.monotonic() - start
        total += seconds
        report({"message": f"read every line with {name} to replay the {pick} queue in {seconds:.0f} s (outside "
                           "the time budget: the app has these confidences from transcribing)"})
    return total
