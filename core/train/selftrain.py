"""Self-training: learn the hand from the writer's unlabelled lines as well as the corrected ones.

A teacher is fine-tuned on the labelled lines for part of the time budget, reads the unlabelled
pool (line boxes only, never their texts), and its most confident readings join the labelled
lines for the rest of the budget, in a student that starts from the teacher. Readings are vetted
first: empty ones, unsure ones and a string that comes back again and again (self-training's
known collapse) are left out, and the training log says how many. Validation stays on labelled
pages only, and both fine-tunes keep their last weights, not their best-validating: a few dozen
validation lines cannot choose among a run's weights. The student's weights replace the teacher's
if they read those pages better than the first base did (not the teacher: a validation page of
first pages is too few lines to rank the two; decision 0010).
"""

from __future__ import annotations

import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from core.labels import read_labels
from core.train.adapter import Progress
from core.train.data import Sample

TEACHER_SHARE = 0.45  # of the budget: the teacher's fine-tune
READ_SHARE = 0.2  # of the budget, at most: reading the pool (a random part of it when it is large)
KEEP_SHARE = 0.6  # the most confident share of the pool's readings that the student learns from
# A page with fewer of its readings among the confident share is left out whole: read upside down,
# the shipped model's median confidence on notes lines drops from 0.76-0.85 to 0.44-0.52.
UNSURE_PAGE_SHARE = 0.25
COLLAPSE_SHARE = 0.03  # a reading on more than this share of the kept lines (and on 5+) is a collapse
READ_CHUNK = 64
REHEARSE = 150  # lines of the base's own training data in each fine-tune (core.train.rehearsal)


def pool_crops(pages: Sequence, rng: random.Random) -> list[Sample]:
    """Every boxed line of the pool pages as a crop with no text, in seeded random order; each names its
    page with its folder too (the app's pages are `DOC_ID/page-NNNN.png`). Unreadable pages are skipped."""
    from core.errors import BadInputError
    from core.labels import iter_line_crops

    out = []
    for page in pages:
        try:
            crops = [crop for _, _, crop in iter_line_crops([page])]
        except BadInputError:
            continue
        name = f"{page.image_path.parent.name}/{page.image_path.name}"
        out += [Sample(crop, "", name) for crop in crops if crop.width >= 2 and crop.height >= 2]
    rng.shuffle(out)
    return out


def vet(readings: Sequence[tuple[Sample, str, float]], keep_share: float = KEEP_SHARE) -> tuple[list[Sample], dict]:
    """The readings worth learning from: non-empty, among the most confident, no collapsed string, and
    not from a page whose readings are mostly unsure (a drawing, a page upside down or in another hand)."""
    found = [(s, t.strip(), c) for s, t, c in readings if t.strip()]
    found.sort(key=lambda r: -r[2])
    kept = found[: round(keep_share * len(found))]
    unsure_pages = _mostly_unsure_pages(readings, kept)
    sure = [r for r in kept if r[0].page not in unsure_pages]
    counts = Counter(t for _, t, _ in sure)
    collapsed = {t for t, n in counts.items() if n >= 5 and n > COLLAPSE_SHARE * len(sure)}
    learned = [Sample(s.crop, t, s.page) for s, t, _ in sure if t not in collapsed]
    stats = {"read": len(readings), "empty": len(readings) - len(found), "unsure": len(found) - len(kept),
             "unsure_pages": sorted(unsure_pages), "unsure_page_lines": len(kept) - len(sure),
             "collapsed": sorted(collapsed), "collapsed_lines": len(sure) - len(learned), "learned": len(learned),
             "min_confidence": round(kept[-1][2], 4) if kept else None}
    return learned, stats


def _mostly_unsure_pages(readings: Sequence[tuple[Sample, str, float]], kept: Sequence[tuple]) -> set[str]:
    """Pages (of 3+ readings) with under UNSURE_PAGE_SHARE of their readings among the confident ones kept."""
    total = Counter(s.page for s, _, _ in readings)
    confident = Counter(s.page for s, _, _ in kept)
    return {page for page, n in total.items() if n >= 3 and confident[page] < UNSURE_PAGE_SHARE * n}


def read_pool(recognizer, crops: Sequence[Sample], deadline: float,
              should_stop: Callable[[], bool]) -> list[tuple[Sample, str, float]]:
    """The teacher's reading of as much of the pool as the deadline allows (the crops are in random order)."""
    out = []
    for start in range(0, len(crops), READ_CHUNK):
        if time.monotonic() >= deadline or should_stop():
            break
        chunk = crops[start : start + READ_CHUNK]
        out += [(s, r.text, r.confidence) for s, r in zip(chunk, recognizer.recognize([s.crop for s in chunk]),
                                                            strict=True)]
    return out


def self_train(labels: str | Path, out: Path, max_minutes: float, progress: Progress | None = None,
               should_stop: Callable[[], bool] | None = None, pool: str | Path | None = None,
               pool_split: str | None = None, **train_kwargs) -> Path:
    """Teacher on the labelled lines, pseudo-labels on the pool, student on both; returns the student's dir.

    The pool is the split's lines the run keeps no label of, plus the pages of the labels file
    `pool` (`pool_split`: only that split of it; texts ignored), e.g. the app's unconfirmed lines.
    `train_kwargs` go to both fine-tunes (split, base, pick, limit_lines, seed, ...); the whole run
    keeps to `max_minutes`, reading the pool included.
    """
    from core.modeldir import read_manifest
    from core.recognize import resolve_recognizer_spec
    from core.recognize.registry import clear_cache
    from core.settings import configure_process
    from core.train import select
    from core.train.data import load_samples
    from core.train_recognizer import train_recognizer

    t0 = time.monotonic()
    report = progress or (lambda _d: None)
    stop = should_stop or (lambda: False)
    kw = {"split": "train", "val_fraction": 0.1, "limit_lines": None, "seed": 0, "pick": "random", "base": "default",
          **train_kwargs}
    kw["pick_model"] = kw.get("pick_model") or kw["base"]  # the student's base is the teacher, not what picked
    kw["recipe"] = {"keep": "last", "rehearse": REHEARSE, **(kw.get("recipe") or {})}  # both, unless told otherwise
    configure_process(threads=kw.get("threads"))
    t0 += select.replay_queue(labels, kw["split"], kw["pick"], kw["limit_lines"], kw["pick_model"], report)
    out = Path(out).expanduser().resolve()
    teacher_dir = out.parent / f".{out.name}.teacher"
    shutil.rmtree(teacher_dir, ignore_errors=True)  # a crashed run's teacher is trained again
    report({"message": "self-training: the teacher learns the labelled lines first"})
    train_recognizer(labels, out=teacher_dir, max_minutes=max_minutes * TEACHER_SHARE, progress=report,
                     should_stop=stop, **kw)
    try:
        data = load_samples(labels, kw["split"], kw["val_fraction"], kw["limit_lines"], kw["seed"], kw["pick"],
                            kw["pick_model"])
        pages = data.pool + (read_labels(pool, split=pool_split) if pool else [])
        crops = pool_crops(pages, random.Random(kw["seed"]))
        deadline = t0 + 60 * max_minutes * (TEACHER_SHARE + READ_SHARE)
        learned, stats = _pseudo_labels(teacher_dir, crops, deadline, stop, report)
        first_base_cer = read_manifest(teacher_dir)["metrics"]["base_val_cer"]
        stats.update(pool_pages=len(pages), pool_lines=len(crops), base_val_cer=first_base_cer)
        del crops, data  # the crops not learned from are freed before the student trains
        left = max_minutes - (time.monotonic() - t0) / 60
        base = resolve_recognizer_spec(kw["base"])  # the student's manifest names it
        return train_recognizer(labels, out=out, max_minutes=max(left, 0.05), progress=report, should_stop=stop,
                                extra_train=learned, provenance={"self_training": stats, "base": base},
                                cer_to_beat=first_base_cer, **{**kw, "base": str(teacher_dir)})
    finally:
        clear_cache()
        shutil.rmtree(teacher_dir, ignore_errors=True)


def _pseudo_labels(model_dir: Path, crops: Sequence[Sample], deadline: float, stop: Callable[[], bool],
                   report: Progress) -> tuple[list[Sample], dict]:
    """The model's vetted readings of the pool, read until `deadline`, and what vetting left out."""
    from core.recognize.registry import clear_cache, load

    learned, stats = vet(read_pool(load(str(model_dir)), crops, deadline, stop))
    clear_cache()  # the next model is loaded fresh
    report({"message": f"self-training: read {stats['read']} of {len(crops)} unlabelled lines; learning from "
                       f"{stats['learned']} (left out: {stats['empty']} empty, {stats['unsure']} unsure, "
                       f"{stats['unsure_page_lines']} more on {len(stats['unsure_pages'])} mostly unsure pages "
                       f"{stats['unsure_pages']}, {stats['collapsed_lines']} collapsed {stats['collapsed']})"})
    return learned, stats
