"""How right a teacher's readings of the self-training pool are, by how sure it was.

Self-training (core/train/selftrain.py) learns from a teacher's most confident readings of lines
whose texts it never sees. The notes label those lines, so this reads a run's pool with a model
and scores its readings against the labels it ignored: CER by fifth of confidence, of the share
self-training keeps, and of other ways to choose (the least sure character, the sum of doubts,
best path and beam search agreeing, every word a known one: the writer's labelled lines' or the
text prior's) — and, with `--second`, of what it reads with a second model's frame probabilities
averaged into its own (tried as the pseudo-labeller, not kept).
docs/decisions/0010-self-training.md.

    OMP_NUM_THREADS=2 .venv/bin/python bench/pseudo_labels.py --model MODEL_DIR --pick first --limit-lines 250 \
        [--second default]
"""

from __future__ import annotations

import argparse
import json
import random

import numpy as np
from devdata import NOTES_LABELS

from core.labels import iter_line_crops
from core.metrics import cer
from core.recognize.charlm import stdlib_prose, words_of
from core.recognize.crnn import DEFAULT_DECODING, best_path, ctc_greedy
from core.recognize.registry import load
from core.train.data import PICKS, load_samples
from core.train.selftrain import KEEP_SHARE


def pool_lines(labels: str, pick: str, limit_lines: int, seed: int, count: int) -> tuple[list[tuple], frozenset]:
    """(crop, labelled text) of `count` lines of the pool a self-training run would read, in seeded order,
    and the words (3+ letters, case-folded) of the lines it learns with labels."""
    data = load_samples(labels, "train", 0.1, limit_lines, seed, pick)
    out = [(crop, line.text) for _, line, crop in iter_line_crops(data.pool) if min(crop.size) >= 2]
    random.Random(seed).shuffle(out)
    return out[:count], words_of(s.text for s in data.train)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", default=str(NOTES_LABELS))
    ap.add_argument("--model", required=True, help="the teacher: a fine-tuned CTC model directory")
    ap.add_argument("--pick", choices=PICKS, default="first")
    ap.add_argument("--limit-lines", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lines", type=int, default=1500, help="how many pool lines to read")
    ap.add_argument("--second", help="a CTC model of the same input height whose frames are averaged in, 50/50")
    args = ap.parse_args()
    lines, writer_words = pool_lines(args.labels, args.pick, args.limit_lines, args.seed, args.lines)
    rec = load(args.model)
    frames = rec.all_frame_probs([c for c, _ in lines])
    refs = [t for _, t in lines]
    read = [rec.decode(f).text for f in frames]  # as self-training reads: the model's own decoder
    peaks = [np.array(best_path(f, rec.alphabet)[1] or [0.0]) for f in frames]  # each character's peak
    mean = np.array([p.mean() for p in peaks])
    beam = {**rec.decoding, "beam": DEFAULT_DECODING["beam"]}
    agree = np.array([rec.decode(f, beam).text == ctc_greedy(f, rec.alphabet)[0] for f in frames])

    def score(idx, texts: list[str] = read) -> dict:
        idx = list(idx)
        return {"lines": len(idx), "cer": round(cer([refs[i] for i in idx], [texts[i] for i in idx]), 4),
                "mean_chars": round(float(np.mean([len(refs[i]) for i in idx])), 1) if idx else 0}

    n, keep = len(lines), round(KEEP_SHARE * len(lines))
    by = {name: np.argsort(key, kind="stable") for name, key in
          (("confidence", -mean), ("least_sure_char", -np.array([p.min() for p in peaks])),
           ("sum_of_doubts", np.array([(1 - p).sum() for p in peaks])))}
    fifths = [score(by["confidence"][n * k // 5 : n * (k + 1) // 5]) for k in range(5)]
    kept = {f"kept_by_{name}": score(order[:keep]) for name, order in by.items()}
    vocab = writer_words | words_of(stdlib_prose())
    known = [i for i in by["confidence"][:keep] if words_of([read[i]]) <= vocab]  # no words: known
    kept["kept_by_confidence_and_known_words"] = score(known)
    kept["kept_by_confidence_with_unknown_words"] = score(sorted(set(by["confidence"][:keep]) - set(known)))
    both = {}
    if args.second:
        averaged = [rec.decode(f) for f in _averaged(rec, load(args.second), frames, [c for c, _ in lines])]
        texts = [r.text for r in averaged]
        both = {"second_reader": {"model": args.second, "all": score(range(n), texts),
                                  "kept_by_confidence": score(np.argsort([-r.confidence for r in averaged],
                                                                         kind="stable")[:keep], texts)}}
    print(json.dumps({"model": args.model, "pick": args.pick, "all": score(range(n)), "by_confidence_fifth": fifths,
                      **kept, "beam_agrees_with_best_path": score(np.flatnonzero(agree)), **both}, indent=1))


def _averaged(rec, second, frames: list, crops: list) -> list:
    """`frames` averaged 50/50 with `second`'s frames of the same crops, each character's column matched by
    the character (the CTC blank is column 0 in both); a line whose frame counts differ keeps its own."""
    if not hasattr(second, "all_frame_probs") or second.img_height != rec.img_height:
        raise SystemExit("--second must be a CTC model that reads at the model's input height")
    column = {ch: i + 1 for i, ch in enumerate(rec.alphabet)}
    pairs = [(column[ch], j + 1) for j, ch in enumerate(second.alphabet) if ch in column]
    ours, theirs = np.array([0] + [i for i, _ in pairs]), np.array([0] + [j for _, j in pairs])
    out = []
    for mine, other in zip(frames, second.all_frame_probs(crops), strict=True):
        mixed = mine
        if mine.shape[0] == other.shape[0]:
            mixed = 0.5 * mine
            mixed[:, ours] += 0.5 * other[:, theirs]
        out.append(mixed)
    return out


if __name__ == "__main__":
    main()
