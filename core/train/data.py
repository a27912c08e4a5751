"""Training data: line crops cut from labelled pages, with whole pages held out for validation.

Crops are cut with `core.geometry.crop_line`, exactly as at inference. Validation uses whole
held-out PAGES: lines of one page look alike, so a line split would flatter the score.

Which labelled lines a run keeps (`PICKS`, with `limit_lines`): `random` pages in seeded random
order (the learning curve's slices; validation pages on top of them); `first`, the first pages in
file order — what a user who corrects the pages in front of them gives; `shuffled`, the first pages
of a seeded random page order (random pages with validation out of the kept lines, as for every
pick but `random`: the fair match for the others); `fix-next`, `spread`, `pairs` and
`sure-pairs` (the current one), the lines the app's queues ask for (`core.train.select`). The
split's lines a run keeps no label of (for `random`, its unkept pages), outside its validation
pages, are its unlabelled `pool` (boxes, never texts), which self-training reads.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import BadInputError


@dataclass
class Sample:
    crop: object  # PIL image, RGB as cut from the page
    text: str
    page: str


# the queue names are spelled out, not taken from core.train.select: the CLI imports this at startup, the
# review stage pulls in numpy and PIL (tests/test_train_selftrain.py checks that every queue is here)
PICKS = ("random", "first", "shuffled", "fix-next", "spread", "pairs", "sure-pairs")


@dataclass
class DataSplit:
    train: list[Sample]
    val: list[Sample]
    train_pages: int
    val_pages: int
    skipped_empty: int = 0
    skipped_unreadable: int = 0
    problems: list[str] = field(default_factory=list)
    pool: list = field(default_factory=list)  # LabelPages: the lines of the split the run keeps no label of
    rehearsal: list[Sample] = field(default_factory=list)  # the base's own lines (`core.train.rehearsal`)

    def learned(self) -> list[Sample]:
        """Every line the network trains on: the user's, then the rehearsal lines."""
        return self.train + self.rehearsal


def _held_out(order: list, val_fraction: float) -> int:
    """How many of these pages validation takes: a share, at least one, never all."""
    if len(order) >= 2 and val_fraction > 0:
        return min(len(order) - 1, max(1, round(val_fraction * len(order))))
    return 0


def _first_pages(pages: list, limit_lines: int) -> list[set[int]]:
    """Per page, the lines kept: pages in file order up to `limit_lines` transcribed lines (the last page cut)."""
    kept: list[set[int]] = []
    count = 0
    for page in pages:
        take = [i for i, ln in enumerate(page.lines) if ln.text.strip()][: max(limit_lines - count, 0)]
        count += len(take)
        kept.append(set(take))
    return kept


def _shuffled_pages(pages: list, limit_lines: int, seed: int) -> list[set[int]]:
    """Per page (file order), the lines kept: whole pages in seeded random order up to `limit_lines`."""
    order = list(range(len(pages)))
    random.Random(seed).shuffle(order)
    kept: list[set[int]] = [set() for _ in pages]
    for index, lines in zip(order, _first_pages([pages[i] for i in order], limit_lines), strict=True):
        kept[index] = lines
    return kept


def kept_lines(pages: list, limit_lines: int, pick: str, seed: int = 0, labels=None, split: str = "train",
               model: str | Sequence[str] = "default") -> list[set[int]]:
    """Per page (file order), the lines a pick other than `random` keeps: `labels` and `model` (one per round of
    corrections, `core.train.select.queued_in_rounds`) serve the queues."""
    if pick == "first":
        return _first_pages(pages, limit_lines)
    if pick == "shuffled":
        return _shuffled_pages(pages, limit_lines, seed)
    return _queued_lines(pages, labels, split, limit_lines, pick, model)


def _queued_lines(pages: list, labels, split: str, limit_lines: int, pick: str,
                  model: str | Sequence[str]) -> list[set[int]]:
    """Per page, the lines kept: the ones the app's queue (`pick`) asks for first, read by `model` (or per round)."""
    from core.train import select

    kept: list[set[int]] = [set() for _ in pages]
    for keys in select.queued_in_rounds(labels, split, pages, limit_lines, pick, model):
        for pi, li in keys:
            kept[pi].add(li)
    return kept


def _split_lines(page, keep: set[int]) -> tuple:
    """(the page with only the kept lines, the page with the others)."""
    make = type(page)
    return (make(page.image_path, page.doc, page.split, [ln for i, ln in enumerate(page.lines) if i in keep]),
            make(page.image_path, page.doc, page.split, [ln for i, ln in enumerate(page.lines) if i not in keep]))


def split_pages(labels: str | Path, split: str) -> list:
    """The split's pages in file-name order (the one order picks and their line keys refer to), with
    the labels file's `problems` (rows left out)."""
    from core.labels import LabelsList, read_labels

    pages = read_labels(labels, split=split)
    ordered = LabelsList(sorted(pages, key=lambda p: str(p.image_path)))
    ordered.problems = pages.problems
    return ordered


def load_samples(labels: str | Path, split: str, val_fraction: float, limit_lines: int | None, seed: int,
                 pick: str = "random", pick_model: str | Sequence[str] = "default") -> DataSplit:
    """Train/val samples from a labels file; validation pages are held out whole (see `PICKS`).

    `pick_model` reads the lines for the confidence picks (the base model, as in the app's queue; or
    one model per round of corrections).
    """
    from core.geometry import crop_line
    from core.ingest import load_image

    if pick not in PICKS:
        raise BadInputError(f"unknown pick {pick!r} (known: {', '.join(PICKS)})")
    pages = split_pages(labels, split)
    problems = list(getattr(pages, "problems", []))
    rng = random.Random(seed)
    rest: list = []
    if pick != "random" and limit_lines:
        keep = kept_lines(pages, limit_lines, pick, seed, labels, split, pick_model)
        halves = [_split_lines(page, k) for page, k in zip(pages, keep, strict=True)]
        pages = [kept for kept, _ in halves if kept.lines]
        rest = [other for _, other in halves if other.lines]
        limit_lines = None
    order = list(pages)
    rng.shuffle(order)
    n_val = _held_out(order, val_fraction)
    val_pages, train_pages = order[:n_val], order[n_val:]
    empty = unreadable = 0

    def cut(page_list) -> list[Sample]:
        nonlocal empty, unreadable
        out: list[Sample] = []
        for page in page_list:
            try:
                rgb = load_image(page.image_path)  # the same size limits and colour handling as any input
            except BadInputError as exc:
                unreadable += len(page.lines)
                problems.append(str(exc))
                continue
            for line in page.lines:
                text = line.text.strip()
                if not text:
                    empty += 1
                    continue
                try:
                    crop = crop_line(rgb, line.points)
                except ValueError:
                    unreadable += 1
                    continue
                if crop.width < 2 or crop.height < 2:
                    unreadable += 1
                    continue
                out.append(Sample(crop, text, page.image_path.name))
        return out

    train = cut(train_pages)
    if limit_lines:
        train = train[:limit_lines]  # pages are already in seeded random order
        kept = {s.page for s in train}
        rest = [p for p in train_pages if p.image_path.name not in kept]
    val = cut(val_pages)
    held = {p.image_path for p in val_pages}
    pool = [p for p in rest if p.image_path not in held]
    if not train:
        raise BadInputError(
            f"{labels}: no trainable lines in split {split!r} "
            f"({empty} empty transcriptions, {unreadable} unreadable crops)"
        )
    used_pages = len({s.page for s in train})
    if not val:  # a single page: validate on what we train on, and say so
        val = list(train)
        problems.append("only one usable page: validation reuses the training lines")
    return DataSplit(train, val, used_pages, len({s.page for s in val}) if n_val else 0, empty, unreadable, problems,
                     pool)


def validation_lines(data: DataSplit, cap: int, seed: int) -> list[Sample]:
    """The validation lines a run scores: all held-out lines, or a seeded sample of `cap`."""
    return data.val if len(data.val) <= cap else random.Random(seed).sample(data.val, cap)
