"""What the lines a pick asks for cost the user to correct, and what they hold to learn from.

Replays the picks of `bench/active_learning.py` on the notes' `train` split — the app's queues
(`core.review.queue_order`) with the base model's readings, and whole pages (`first`, `shuffled/SEED`:
seeded random pages) — and prints for the first `--sizes` lines of each: characters and distinct
character pairs of their labels, the mean confidence of the readings a user corrects, and the
character edits that turn those readings into the labels (what a user types). With `--match
sure-pairs/250`, also how many lines each other pick needs to hold as many characters, or to ask
for as many edits, as that one.
With `--rounds MODEL,...`, the queues are replayed in rounds (`core.train.select.queued_in_rounds`):
the base picks the first share, each model (fine-tuned on the rounds before) the next, and a line's
edits are counted from the reading of the model that asked for it.
docs/decisions/0012-queue-by-character-pairs.md and 0013-queue-by-sure-pairs.md.

    OMP_NUM_THREADS=2 .venv/bin/python bench/queue_cost.py --picks sure-pairs,pairs,spread,shuffled/0 \
        --sizes 100,250 --match sure-pairs/250
"""

from __future__ import annotations

import argparse
from statistics import fmean

from devdata import NOTES_LABELS

from core.metrics import char_edits
from core.review import character_pairs
from core.settings import configure_process
from core.train import select
from core.train.data import kept_lines, split_pages


class Replay:
    """The `train` split's labels and the base model's readings of its lines, and the lines each pick takes."""

    def __init__(self, labels: str, model: str, rounds: tuple[str, ...] = ()) -> None:
        self.labels, self.models = labels, (model, *rounds)
        self.round_readings = [select.base_confidences(labels, "train", m) for m in self.models]  # read once each
        self.readings = self.round_readings[0]
        self.pages = split_pages(labels, "train")
        self.texts = {(pi, li): self.pages[pi].lines[li].text for pi, li in self.readings}

    def chosen(self, pick: str, size: int) -> list:
        """(line, the reading the user corrects) for the lines training keeps for `pick`: a queue's in rounds,
        whole pages by `kept_lines`."""
        name, _, seed = pick.partition("/")
        if name in select.CONFIDENCE_PICKS:
            rounds = select.queued_in_rounds(self.labels, "train", self.pages, size, name, self.models)
            return [(key, readings[key]) for readings, keys in zip(self.round_readings, rounds, strict=True)
                    for key in keys]
        keep = kept_lines(self.pages, size, name, int(seed or 0), self.labels, "train", self.models[0])
        return [((pi, li), self.readings[(pi, li)]) for pi, lines in enumerate(keep) for li in sorted(lines)
                if (pi, li) in self.readings]

    def cost(self, chosen: list) -> dict:
        """Characters, distinct pairs, mean confidence and edits of these (line, reading) pairs."""
        labels = [self.texts[key] for key, _ in chosen]
        return {"lines": len(chosen), "characters": sum(len(t) for t in labels),
                "pairs": len(set().union(*(character_pairs(t) for t in labels))),
                "confidence": round(fmean(reading.confidence for _, reading in chosen), 3) if chosen else 0.0,
                "edits": sum(char_edits(self.texts[key], reading.text) for key, reading in chosen)}

    def matching_size(self, pick: str, field: str, goal: int) -> int:
        """The fewest lines of `pick` whose `field` (characters or edits) reaches `goal` (bisection: totals grow)."""
        low, high = 1, len(self.readings)
        while low < high:
            mid = (low + high) // 2
            low, high = (low, mid) if self.cost(self.chosen(pick, mid))[field] >= goal else (mid + 1, high)
        return low


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", default=str(NOTES_LABELS))
    ap.add_argument("--model", default="default", help="the base model whose readings the queues order")
    ap.add_argument("--picks", default="sure-pairs,pairs,spread,fix-next,first,shuffled/0,shuffled/1,shuffled/2")
    ap.add_argument("--sizes", default="100,250")
    ap.add_argument("--match", default="", help="PICK/SIZE: how many lines the other picks need for its totals")
    ap.add_argument("--rounds", default="", help="comma-separated models that read the queues' later rounds")
    args = ap.parse_args()
    configure_process(threads=2)
    replay = Replay(args.labels, args.model, tuple(m for m in args.rounds.split(",") if m))
    picks = args.picks.split(",")
    print("| pick | lines | characters | distinct pairs | confidence | edits to correct |\n|---|---|---|---|---|---|")
    for pick in picks:
        for size in map(int, args.sizes.split(",")):
            c = replay.cost(replay.chosen(pick, size))
            print(f"| {pick} | {c['lines']} | {c['characters']:,} | {c['pairs']:,} | {c['confidence']} | {c['edits']:,} |")
    if args.match:
        pick, _, size = args.match.rpartition("/")
        goal = replay.cost(replay.chosen(pick, int(size)))
        for other in (p for p in picks if p != pick):
            for field in ("characters", "edits"):
                n = replay.matching_size(other, field, goal[field])
                print(f"{other}: {n} lines hold as many {field} as {pick}'s {size} ({goal[field]:,})")


if __name__ == "__main__":
    main()
