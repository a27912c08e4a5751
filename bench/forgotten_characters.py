"""Which characters a fine-tune gets wrong, by how often the lines it learned from hold them.

A fine-tune on a few pages of one subject can forget what those pages lack: a character its
labelled lines never hold may come out wrong every time, though the base read it. This reads the
`eval` lines of 4+ characters with each model and counts, per character of the references, the
edits that substitute or delete it (jiwer's character alignment), grouped by how often the pick's
kept labelled lines hold that character. Rehearsal (`core/train/rehearsal.py`) came out of it:
docs/decisions/0010-self-training.md. Prints one JSON object per model.

    OMP_NUM_THREADS=1 .venv/bin/python bench/forgotten_characters.py --pick first --limit-lines 250 \
        --models default MODEL_DIR
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

from devdata import NOTES_LABELS

from core.evaluate import load_line_set
from core.settings import configure_process
from core.train.data import PICKS, load_samples

GROUPS = ((0, 0), (1, 4), (5, 19), (20, None))  # times a character occurs in the labelled lines


def edits_by_character(references: list[str], readings: list[str]) -> tuple[Counter, Counter, int]:
    """(occurrences, substitutions + deletions) per reference character, and the insertions."""
    import jiwer

    seen, wrong, inserted = Counter(), Counter(), 0
    for ref, hyp in zip(references, readings, strict=True):
        seen.update(ref)
        for chunk in jiwer.process_characters(ref, hyp).alignments[0]:
            if chunk.type in ("substitute", "delete"):
                wrong.update(ref[chunk.ref_start_idx : chunk.ref_end_idx])
            elif chunk.type == "insert":
                inserted += chunk.hyp_end_idx - chunk.hyp_start_idx
    return seen, wrong, inserted


def report(model: str, learned: Counter, references: list[str], readings: list[str]) -> dict:
    """Per group of characters: how many, their occurrences, errors, errors per occurrence, share of edits."""
    seen, wrong, inserted = edits_by_character(references, readings)
    edits = sum(wrong.values()) + inserted
    groups = []
    for low, high in GROUPS:
        chars = [c for c in seen if learned[c] >= low and (high is None or learned[c] <= high)]
        n, e = sum(seen[c] for c in chars), sum(wrong[c] for c in chars)
        groups.append({"learned_times": f"{low}-{high if high is not None else ''}", "characters": len(chars),
                       "occurrences": n, "errors": e, "per_occurrence": round(e / max(n, 1), 3),
                       "share_of_edits": round(e / max(edits, 1), 3)})
    worst = [[c, wrong[c], seen[c], learned[c]] for c, _ in wrong.most_common(15)]
    return {"model": model, "characters": sum(seen.values()), "edits": edits, "insertions": inserted,
            "groups": groups, "worst (char, errors, occurrences, learned)": worst}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", default=str(NOTES_LABELS))
    ap.add_argument("--pick", default="first", choices=PICKS)
    ap.add_argument("--limit-lines", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", nargs="+", required=True, help="recognizers to read the eval lines with")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    configure_process(threads=args.threads)
    from core.recognize import load_recognizer

    kept = load_samples(args.labels, "train", 0.1, args.limit_lines, args.seed, args.pick)
    learned = Counter(c for s in kept.train for c in s.text)
    crops, texts = load_line_set(args.labels, "eval")
    lines = [(crop, text) for crop, text in zip(crops, texts, strict=True) if len(text) >= 4]
    for model in args.models:
        readings = [r.text for r in load_recognizer(model).recognize([c for c, _ in lines])]
        print(json.dumps(report(model, learned, [t for _, t in lines], readings), ensure_ascii=False))


if __name__ == "__main__":
    main()
