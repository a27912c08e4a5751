"""What the lines a queue asks for cost the user to correct, and what they hold to learn from.

Replays the app's queues (`core.review.queue_order`) on the notes' `train` split with the base
model's readings, as `bench/active_learning.py` does, and prints for the first `--sizes` lines of
each: characters and distinct character pairs of their labels, the base model's mean confidence,
and the character edits that turn its readings into the labels (what a user types). With
`--match pairs/250`, also the size at which each other queue's lines hold as many characters, or
need as many edits, as that queue's. docs/decisions/0011-what-to-fix-next.md.

    OMP_NUM_THREADS=2 .venv/bin/python bench/queue_cost.py --picks spread,pairs --sizes 100,250 --match pairs/250
"""

from __future__ import annotations

import argparse
from statistics import fmean

from devdata import NOTES_LABELS

from core.metrics import char_edits
from core.review import character_pairs, queue_order
from core.settings import configure_process
from core.train import select
from core.train.data import split_pages


def cost(keys: list, readings: dict, texts: dict) -> dict:
    """Characters, distinct pairs, mean base confidence and edits of these lines."""
    labels = [texts[k] for k in keys]
    return {"lines": len(keys), "characters": sum(len(t) for t in labels),
            "pairs": len(set().union(*(character_pairs(t) for t in labels))),
            "confidence": round(fmean(readings[k].confidence for k in keys), 3) if keys else 0.0,
            "edits": sum(char_edits(texts[k], readings[k].text) for k in keys)}


def matching_size(pick: str, readings: dict, texts: dict, field: str, goal: int) -> int:
    """The fewest lines of `pick`'s queue whose `field` (characters or edits) reaches `goal`."""
    keys = queue_order(readings, len(readings), pick)
    total = 0
    for n, key in enumerate(keys, 1):
        total += len(texts[key]) if field == "characters" else char_edits(texts[key], readings[key].text)
        if total >= goal:
            return n
    return len(keys)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", default=str(NOTES_LABELS))
    ap.add_argument("--model", default="default", help="the base model whose readings the queues order")
    ap.add_argument("--picks", default="spread,pairs")
    ap.add_argument("--sizes", default="100,250")
    ap.add_argument("--match", default="", help="PICK/SIZE: how many lines the other picks need for its totals")
    args = ap.parse_args()
    configure_process(threads=2)
    readings = select.base_confidences(args.labels, "train", args.model)
    pages = split_pages(args.labels, "train")
    texts = {(pi, li): pages[pi].lines[li].text for pi, li in readings}
    picks = args.picks.split(",")
    print("| pick | lines | characters | distinct pairs | base confidence | edits to correct |\n|---|---|---|---|---|---|")
    for pick in picks:
        for size in map(int, args.sizes.split(",")):
            c = cost(queue_order(readings, size, pick), readings, texts)
            print(f"| {pick} | {c['lines']} | {c['characters']:,} | {c['pairs']:,} | {c['confidence']} | {c['edits']:,} |")
    if args.match:
        pick, _, size = args.match.partition("/")
        goal = cost(queue_order(readings, int(size), pick), readings, texts)
        for other in (p for p in picks if p != pick):
            for field in ("characters", "edits"):
                n = matching_size(other, readings, texts, field, goal[field])
                print(f"{other}: {n} lines hold as many {field} as {pick}'s {size} ({goal[field]:,})")


if __name__ == "__main__":
    main()
