"""A character language model of the writer's own lines, and CTC beam search that uses it.

The CRNN reads each frame on its own; a character n-gram model trained on the lines the user
confirmed knows their words ("edges", "register", variable names) and their notation, so the
decoder can prefer "edges" over "ed2es" when the glyphs are ambiguous. It is small (counts in
a JSON file inside the recognizer's model directory) and is rebuilt at every fine-tune.

A few hundred corrected lines are little text, so the writer's model can lean on a *prior*:
a character model of general technical English (`text_prior`: the docstrings of Python's
standard library, which ships with every Python, so it is built offline and cached). The two
are mixed linearly, `writer_share` of the writer's model; fine-tuning chooses the share on
held-out pages.

The model also keeps the writer's *word list* (words of 3+ letters from their lines, case
folded): beam search can add `word_bonus` each time a prefix completes a listed word, which
reaches past the n-gram's few characters of context ("algorith" + "m" is one word).
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import sys
import sysconfig
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

BOS = "\x02"  # padding before the first character of a line
LM_FILE = "charlm.json"
NEG = -1e30  # log of zero, finite so sums stay comparable
WORD = re.compile(r"[^\W\d_]{3,}")  # a word for the word list: 3+ letters


def words_of(texts: Iterable[str]) -> frozenset[str]:
    """The case-folded words (3+ letters) of `texts`."""
    return frozenset(w.casefold() for text in texts for w in WORD.findall(text))


def last_word(prefix: str) -> str:
    """The run of letters that `prefix` ends with (case folded), or ''."""
    i = len(prefix)
    while i > 0 and prefix[i - 1].isalpha():
        i -= 1
    return prefix[i:].casefold()


class CharNgramLM:
    """Interpolated Witten-Bell character n-gram model over lines of text."""

    def __init__(self, order: int = 6, counts: dict[str, dict[str, int]] | None = None, vocab_size: int = 100,
                 prior: CharNgramLM | None = None, writer_share: float = 1.0, words: frozenset[str] = frozenset()):
        self.order = order
        self.words = words  # the writer's word list (`words_of`), for beam search's word bonus
        self.counts: dict[str, dict[str, int]] = counts or {}
        self.vocab_size = max(2, vocab_size)
        self.prior = prior  # general text, mixed in with weight 1 - writer_share
        self.writer_share = writer_share if prior is not None else 1.0
        self._cache: dict[tuple[str, str], float] = {}
        self._totals = {ctx: (sum(nxt.values()), len(nxt)) for ctx, nxt in self.counts.items()}

    def with_prior(self, prior: CharNgramLM | None, writer_share: float) -> CharNgramLM:
        """The same counts mixed with `prior` (a new object: its own probability cache)."""
        return CharNgramLM(self.order, self.counts, self.vocab_size, prior, writer_share, self.words)

    @classmethod
    def train(cls, texts: Iterable[str], order: int = 6) -> CharNgramLM:
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        chars: set[str] = set()
        texts = list(texts)
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
        return cls(order, plain, vocab_size=len(chars) + 1, words=words_of(texts))

    def logprob(self, context: str, char: str) -> float:
        """log P(char | the last order-1 characters of context)."""
        context = (BOS * (self.order - 1) + context)[-(self.order - 1) :] if self.order > 1 else ""
        key = (context, char)
        hit = self._cache.get(key)
        if hit is None:
            p = self._prob(context, char)
            if self.prior is not None and self.writer_share < 1.0:
                p = self.writer_share * p + (1.0 - self.writer_share) * math.exp(self.prior.logprob(context, char))
            hit = math.log(p)
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

    def to_dict(self) -> dict:
        data = {"order": self.order, "vocab_size": self.vocab_size, "counts": self.counts}
        if self.words:
            data["words"] = sorted(self.words)
        if self.prior is not None and self.writer_share < 1.0:  # a model dir carries its prior: self-contained
            data.update(writer_share=self.writer_share, prior=self.prior.to_dict())
        return data

    @classmethod
    def from_dict(cls, data: dict) -> CharNgramLM:
        prior = cls.from_dict(data["prior"]) if data.get("prior") else None
        return cls(int(data["order"]), data["counts"], int(data["vocab_size"]), prior,
                   float(data.get("writer_share", 1.0)), frozenset(data.get("words", ())))

    def save(self, folder: str | Path) -> None:
        (Path(folder) / LM_FILE).write_text(json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")))

    @classmethod
    def load(cls, folder: str | Path) -> CharNgramLM | None:
        path = Path(folder) / LM_FILE
        if not path.is_file():
            return None
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))


PRIOR_SOURCE = "docstrings of the Python standard library"


def stdlib_prose() -> list[str]:
    """Lines of the standard library's docstrings: technical English present on every Python install."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages"}
    lines: list[str] = []
    for path in sorted(root.rglob("*.py")):
        if skip.intersection(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc:
                    lines += [ln.strip() for ln in doc.splitlines() if len(ln.strip()) >= 3]
    return lines


def text_prior(order: int = 5, cache_dir: str | Path | None = None) -> CharNgramLM:
    """The general-English character model, built from `stdlib_prose` once (~15 s) and cached."""
    if cache_dir is None:
        from core.settings import get_settings

        cache_dir = get_settings().cache_dir
    path = Path(cache_dir) / f"text-prior-py{sys.version_info[0]}{sys.version_info[1]}-o{order}.json"
    try:
        return CharNgramLM.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):  # missing or damaged: build it again
        pass
    lm = CharNgramLM.train(stdlib_prose(), order)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:  # a cache only: a read-only or full disk costs the next run ~15 s, nothing more
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({**lm.to_dict(), "source": PRIOR_SOURCE}, ensure_ascii=False, separators=(",", ":")))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
    return lm


def ctc_beam_search(
    probs: np.ndarray,
    alphabet: str,
    lm: CharNgramLM | None = None,
    lm_weight: float = 0.5,
    char_bonus: float = 0.0,
    beam: int = 8,
    min_prob: float = 1e-3,
    word_bonus: float = 0.0,
) -> str:
    """CTC prefix beam search over one [T, C] probability matrix (class 0 = blank).

    Each character appended scores `lm_weight * log P_lm(char | prefix) + char_bonus` on top of
    the network's log-probabilities (shallow fusion); a character that ends a word of the
    writer's word list (and the line's last word, at the end) adds `word_bonus`. Frames where the
    blank is all but certain are skipped, which keeps a line to a few milliseconds.
    """
    words = lm.words if lm is not None and word_bonus else frozenset()
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
                if words and not c.isalpha() and last_word(prefix) in words:
                    extra += word_bonus
                _add(nxt, prefix + c, NEG, source + float(row[k]), lm_s + extra)
        ranked = sorted(nxt.items(), key=lambda kv: -(_lse(kv[1][0], kv[1][1]) + kv[1][2]))
        beams = {pre: (v[0], v[1], v[2]) for pre, v in ranked[:beam]}
    def final(kv) -> float:
        return _lse(kv[1][0], kv[1][1]) + kv[1][2] + (word_bonus if words and last_word(kv[0]) in words else 0.0)

    best = max(beams.items(), key=final)[0]
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
