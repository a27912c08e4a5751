"""How right a teacher's readings of the self-training pool are, by how sure it was.

Self-training (core/train/selftrain.py) learns from a teacher's most confident readings of lines
whose texts it never sees. The notes label those lines, so this reads a run's pool with a model
and scores its readings against the labels it ignored: CER by fifth of confidence, of the share
self-training keeps, and of other ways to choose (the least sure character, the sum of doubts,
best path and beam search agreeing). docs/decisions/0010-self-training.md.

    OMP_NUM_THREADS=2 .venv/bin/python bench/pseudo_labels.py --model MODEL_DIR --pick first --limit-lines 250
"""

from __future__ import annotations

import argparse
import json
import random

import numpy as np
from devdata import NOTES_LABELS

from core.labels import iter_line_crops
from core.metrics import cer
from core.recognize.crnn import DEFAULT_DECODING, best_path, ctc_greedy
from core.recognize.registry import load
from core.train.data import PICKS, load_samples
from core.train.selftrain import KEEP_SHARE


def pool_lines(labels: str, pick: str, limit_lines: int, seed: int, count: int) -> list[tuple]:
    """(crop, labelled text) of `count` lines of the pool a self-training run would read, in seeded order."""
    data = load_samples(labels, "train", 0.1, limit_lines, seed, pick)
    out = [(crop, line.text) for _, line, crop in iter_line_crops(data.pool) if min(crop.size) >= 2]
    random.Random(seed).shuffle(out)
    return out[:count]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", default=str(NOTES_LABELS))
    ap.add_argument("--model", required=True, help="the teacher: a fine-tuned CTC model directory")
    ap.add_argument("--pick", choices=PICKS, default="first")
    ap.add_argument("--limit-lines", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lines", type=int, default=1500, help="how many pool lines to read")
    args = ap.parse_args()
    lines = pool_lines(args.labels, args.pick, args.limit_lines, args.seed, args.lines)
    rec = load(args.model)
    frames = rec.all_frame_probs([c for c, _ in lines])
    refs = [t for _, t in lines]
    read = [rec.decode(f).text for f in frames]  # as self-training reads: the model's own decoder
    peaks = [np.array(best_path(f, rec.alphabet)[1] or [0.0]) for f in frames]  # each character's peak
    mean = np.array([p.mean() for p in peaks])
    beam = {**rec.decoding, "beam": DEFAULT_DECODING["beam"]}
    agree = np.array([rec.decode(f, beam).text == ctc_greedy(f, rec.alphabet)[0] for f in frames])

    def score(idx) -> dict:
        idx = list(idx)
        return {"lines": len(idx), "cer": round(cer([refs[i] for i in idx], [read[i] for i in idx]), 4),
                "mean_chars": round(float(np.mean([len(refs[i]) for i in idx])), 1) if idx else 0}

    n, keep = len(lines), round(KEEP_SHARE * len(lines))
    by = {name: np.argsort(key, kind="stable") for name, key in
          (("confidence", -mean), ("least_sure_char", -np.array([p.min() for p in peaks])),
           ("sum_of_doubts", np.array([(1 - p).sum() for p in peaks])))}
    fifths = [score(by["confidence"][n * k // 5 : n * (k + 1) // 5]) for k in range(5)]
    kept = {f"kept_by_{name}": score(order[:keep]) for name, order in by.items()}
    print(json.dumps({"model": args.model, "pick": args.pick, "all": score(range(n)), "by_confidence_fifth": fifths,
                      **kept, "beam_agrees_with_best_path": score(np.flatnonzero(agree))}, indent=1))


if __name__ == "__main__":
    main()
