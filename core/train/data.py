"""Training data: line crops cut from labelled pages, with whole pages held out for validation.

Crops are cut with `core.geometry.crop_line`, exactly as at inference. Validation uses whole
held-out PAGES: lines of one page look alike, so a line split would flatter the score.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import BadInputError


@dataclass
class Sample:
    crop: object  # PIL image, RGB as cut from the page
    text: str
    page: str


@dataclass
class DataSplit:
    train: list[Sample]
    val: list[Sample]
    train_pages: int
    val_pages: int
    skipped_empty: int = 0
    skipped_unreadable: int = 0
    problems: list[str] = field(default_factory=list)


def load_samples(labels: str | Path, split: str, val_fraction: float, limit_lines: int | None, seed: int) -> DataSplit:
    """Train/val samples from a labels file; validation pages are held out whole."""
    from core.geometry import crop_line
    from core.ingest import load_image
    from core.labels import read_labels

    pages = sorted(read_labels(labels, split=split), key=lambda p: str(p.image_path))
    problems = list(getattr(pages, "problems", []))
    rng = random.Random(seed)
    order = list(pages)
    rng.shuffle(order)
    n_val = 0
    if len(order) >= 2 and val_fraction > 0:
        n_val = min(len(order) - 1, max(1, round(val_fraction * len(order))))
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
    val = cut(val_pages)
    if not train:
        raise BadInputError(
            f"{labels}: no trainable lines in split {split!r} "
            f"({empty} empty transcriptions, {unreadable} unreadable crops)"
        )
    used_pages = len({s.page for s in train})
    if not val:  # a single page: validate on what we train on, and say so
        val = list(train)
        problems.append("only one usable page: validation reuses the training lines")
    return DataSplit(train, val, used_pages, len({s.page for s in val}) if n_val else 0, empty, unreadable, problems)


def validation_lines(data: DataSplit, cap: int, seed: int) -> list[Sample]:
    """The validation lines a run scores: all held-out lines, or a seeded sample of `cap`."""
    return data.val if len(data.val) <= cap else random.Random(seed).sample(data.val, cap)
