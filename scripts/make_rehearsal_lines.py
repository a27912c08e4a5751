"""Build the shipped rehearsal lines (models/rehearsal-lines) from the CC BY 4.0 lines.

A seeded sample of the handwritten lines the shipped recognizer learned from, cut as every
fine-tune cuts a line and stored gray at the recognizer's input height: a fine-tune mixes a few
of them in so that it keeps the characters the user's lines lack (`core.train.rehearsal`). Lines
that only name their page (a copyist's page id) are left out. Never the notes data set.

    .venv/bin/python scripts/make_rehearsal_lines.py --ccby ../shared/data/lines-ccby --out models/rehearsal-lines
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from datetime import datetime
from pathlib import Path

from train_recognizer_base import ccby_sets

from core.labels import LabelLine, LabelPage, iter_line_crops, read_labels
from core.recognize.preprocess import to_gray
from core.train.rehearsal import MANIFEST_KIND

HEIGHT = 48  # the shipped recognizer's input height: stored larger would only be scaled down


def sampled_lines(ccby: Path, count: int, seed: int) -> list[tuple[str, LabelLine, LabelPage]]:
    """(set name, LabelLine, page) for `count` seeded random handwritten lines across the sets."""
    found = []
    for labels in ccby_sets(ccby):
        for page in read_labels(labels):
            found += [(labels.parent.name, line, page) for line in page.lines
                      if line.text.strip() and line.text.strip() != page.doc]
    return random.Random(seed).sample(found, min(count, len(found)))


def write_set(ccby: Path, out: Path, count: int, seed: int) -> int:
    """Cut the sampled lines into `out` (images + lines.jsonl + inkscribe.json); returns the lines written."""
    picked = sampled_lines(ccby, count, seed)
    set_of = {id(line): name for name, line, _ in picked}  # the picked lines, with their set
    pages = list({id(page): page for _, _, page in picked}.values())
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rows = []
    for _, line, crop in iter_line_crops(pages):
        if id(line) not in set_of:
            continue
        gray = to_gray(crop)
        if gray.height > HEIGHT:
            gray = gray.resize((max(2, round(gray.width * HEIGHT / gray.height)), HEIGHT))
        name = f"line-{len(rows):04d}.png"  # flat: the package data globs one folder deep
        gray.save(tmp / name, optimize=True)
        rows.append({"image": name, "text": line.text.strip(), "set": set_of[id(line)]})
    (tmp / "lines.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    manifest = {"kind": MANIFEST_KIND, "name": out.name, "created": datetime.now().isoformat(timespec="seconds"),
                "lines": len(rows), "seed": seed, "height": HEIGHT,
                "sets": sorted({r["set"] for r in rows}), "license": "CC BY 4.0, see models/README.md",
                "notes": "never (the notes data set is not in it)"}
    (tmp / "inkscribe.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if out.exists():
        raise SystemExit(f"{out} exists: shipped data is versioned, never overwritten; remove it on purpose first")
    tmp.rename(out)
    return len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ccby", required=True, help="the lines-ccby folder (one set per folder with labels.jsonl)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--lines", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"{write_set(Path(args.ccby), Path(args.out), args.lines, args.seed)} lines written to {args.out}")


if __name__ == "__main__":
    main()
