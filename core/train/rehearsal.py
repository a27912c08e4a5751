"""Rehearsal: a few lines of the shipped recognizer's own training data in every self-training run.

A fine-tune on the first pages of one notebook forgets the characters those lines lack: after
one, the characters its labelled lines never held (capitals, '/', brackets) came out wrong 95 %
of the time, against 49 % for the base, and its pseudo-labels taught the student the same. A
seeded sample of the CC BY 4.0 handwritten lines the base learned from (`models/rehearsal-lines`,
built by `scripts/make_rehearsal_lines.py`), mixed into the training lines, keeps those
characters alive (decision 0010). They train the network only: the writer's character model, the validation and
the manifest's line counts are the user's lines alone.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from core.settings import SHIPPED_MODELS
from core.train.data import Sample

REHEARSAL_DIR = SHIPPED_MODELS / "rehearsal-lines"
MANIFEST_KIND = "rehearsal-lines"


def rehearsal_lines(count: int, seed: int, folder: Path = REHEARSAL_DIR) -> list[Sample]:
    """`count` seeded lines of the rehearsal set, as training samples; none if the set is missing."""
    from PIL import Image

    index = folder / "lines.jsonl"
    if count <= 0 or not index.is_file():
        return []
    rows = [json.loads(line) for line in index.read_text(encoding="utf-8").splitlines() if line.strip()]
    picked = random.Random(seed).sample(rows, min(count, len(rows)))
    out = []
    for row in picked:
        with Image.open(folder / row["image"]) as img:
            out.append(Sample(img.convert("RGB"), row["text"], f"{folder.name}/{row['image']}"))
    return out
