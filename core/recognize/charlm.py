"""A character language model of the writer's own lines, and CTC beam search that uses it.

The CRNN reads each frame on its own; a character n-gram model trained on the lines the user
confirmed knows their words ("edges", "register", variable names) and their notation, so the
decoder can prefer "edges" over "ed2es" when the glyphs are ambiguous. It is small (counts in
a JSON file inside the recognizer's model directory) and is rebuilt at every fine-tune.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

BOS = "\x02"  # padding before the first character of a line
LM_FILE = "charlm.json"
NEG = -1e30  # log of zero, finite so sums stay comparable


class CharNgramLM:
    """Interpolated Witten-Bell character n-gram model over lines of text."""

    def __init__(self, order: int = 6, counts: dict[str, dict[str, int]] | None = None, vocab_size: int = 100):
        self.order = order
        self.counts: dict[str, dict[str, int]] = counts or {}
        self.vocab_size = max(2, vocab_size)
        self._cache: dict[tuple[str, str], float] = {}
        self._totals = {ctx: (sum(nxt.values()), len(nxt)) for ctx, nxt in self.counts.items()}

    @classmethod
    def train(cls, texts: Iterable[str], order: int = 6) -> CharNgramLM:
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        chars: set[str] = set()
        for text in texts:
            text = text.strip()
            if not text:
                continue
            chars.update(text)
            padded = BOS * (order - 1) + text
            for i in range(order - 1, len(padded)):
                for n in range(order):  # contexts of length 0 .. order-1
                    counts[padded[i - n : i]][padded[i]] += 1
        plain = {ctx: dict(nxt) for ctx, nxt in counts.items()}
        return cls(order, plain, vocab_size=len(chars) + 1)

    def logprob(self, context: str, char: str) -> float:
        """log P(char | the last order-1 characters of context)."""
        context = (BOS * (self.order - 1) + context)[-(self.order - 1) :] if self.order > 1 else ""
        key = (context, char)
        hit = self._cache.get(key)
        if hit is None:
            hit = math.log(self._prob(context, char))
            if len(self._cache) < 500_000:
                self._cache[key] = hit
        return hit

    def _prob(self, context: str, char: str) -> float:
        p = 1.0 / self.vocab_size
        for n in range(0, len(context) + 1):  # from the empty context up to the longest
            ctx = context[len(context) - n :]
            nxt = self.counts.get(ctx)
            if not nxt:
                break
            total, distinct = self._totals[ctx]
            lam = total / (total + distinct)
            p = lam * nxt.get(char, 0) / total + (1 - lam) * p
        return p

    def save(self, folder: str | Path) -> None:
        data = {"order": self.order, "vocab_size": self.vocab_size, "counts": self.counts}
        (Path(folder) / LM_FILE).write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")))

    @classmethod
    def load(cls, folder: str | Path) -> CharNgramLM | None:
        path = Path(folder) / LM_FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(int(data["order"]), data["counts"], int(data["vocab_size"]))


def ctc_beam_search(
    probs: np.ndarray,
    alphabet: str,
    lm: CharNgramLM | None = None,
    lm_weight: float = 0.5,
    char_bonus: float = 0.0,
    beam: int = 8,
    min_prob: float = 1e-3,
) -> str:
    """CTC prefix beam search over one [T, C] probability matrix (class 0 = blank).

    Each character appended scores `lm_weight * log P_lm(char | prefix) + char_bonus` on top of
    the network's log-probabilities (shallow fusion). Frames where the blank is all but certain
    are skipped, which keeps a line to a few milliseconds.
    """
    beams: dict[str, tuple[float, float, float]] = {"": (0.0, NEG, 0.0)}  # prefix → (log p_blank, log p_char, lm)
    logp = np.log(np.maximum(probs, 1e-12))
    for t in range(probs.shape[0]):
        if probs[t, 0] > 0.999:
            blank = float(logp[t, 0])
            beams = {pre: (_lse(pb, pnb) + blank, NEG, lm_s) for pre, (pb, pnb, lm_s) in beams.items()}
            continue
        row = logp[t]
        candidates = [int(k) for k in np.nonzero(probs[t] >= min_prob)[0] if k != 0 and k - 1 < len(alphabet)]
        nxt: dict[str, list[float]] = {}
        for prefix, (pb, pnb, lm_s) in beams.items():
            total = _lse(pb, pnb)
            _add(nxt, prefix, total + float(row[0]), NEG, lm_s)  # blank
            last = prefix[-1] if prefix else None
            for k in candidates:
                c = alphabet[k - 1]
                if c == last:
                    _add(nxt, prefix, NEG, pnb + float(row[k]), lm_s)  # the same character held over frames
                    source = pb  # a repeat needs a blank in between
                else:
                    source = total
                if source <= NEG / 2:
                    continue
                extra = (lm_weight * lm.logprob(prefix, c) if lm is not None else 0.0) + char_bonus
                _add(nxt, prefix + c, NEG, source + float(row[k]), lm_s + extra)
        ranked = sorted(nxt.items(), key=lambda kv: -(_lse(kv[1][0], kv[1][1]) + kv[1][2]))
        beams = {pre: (v[0], v[1], v[2]) for pre, v in ranked[:beam]}
    best = max(beams.items(), key=lambda kv: _lse(kv[1][0], kv[1][1]) + kv[1][2])[0]
    return best.strip()



def _lse(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) without overflow."""
    if a < b:
        a, b = b, a
    return a if b <= NEG / 2 else a + math.log1p(math.exp(b - a))


def _add(beams: dict[str, list[float]], prefix: str, pb: float, pnb: float, lm_s: float) -> None:
    cur = beams.get(prefix)
    if cur is None:
        beams[prefix] = [pb, pnb, lm_s]
    else:
        cur[0] = _lse(cur[0], pb)
        cur[1] = _lse(cur[1], pnb)
