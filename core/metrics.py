"""Scores: CER/WER with jiwer, detection precision/recall/F1 with one-to-one IoU matching."""

from __future__ import annotations

from collections.abc import Sequence

from core.geometry import bbox, iou, overlap_share
from core.types import Point


def cer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus-level character error rate (edits over reference characters)."""
    import jiwer

    refs, hyps = _nonempty_refs(references, hypotheses)
    if not refs:
        return 0.0
    return float(jiwer.cer(refs, hyps))


def char_edits(reference: str, hypothesis: str) -> int:
    """Character edits (substitutions + deletions + insertions) between two lines: what `cer` counts."""
    import jiwer

    if not reference:
        return len(hypothesis)
    o = jiwer.process_characters(reference, hypothesis)
    return o.substitutions + o.deletions + o.insertions


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    import jiwer

    pairs = [(r, h) for r, h in zip(references, hypotheses, strict=True) if r.split()]
    if not pairs:
        return 0.0
    return float(jiwer.wer([r for r, _ in pairs], [h if h.strip() else "<empty>" for _, h in pairs]))


def _nonempty_refs(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[list[str], list[str]]:
    # jiwer refuses empty references; an empty reference has no characters to get wrong.
    pairs = [(r, h) for r, h in zip(references, hypotheses, strict=True) if r]
    return [r for r, _ in pairs], [h for _, h in pairs]


def char_diff(reference: str, hypothesis: str) -> list[tuple[str, str, str]]:
    """Aligned (op, ref_chunk, hyp_chunk) with op in equal/replace/delete/insert, for display."""
    import difflib

    sm = difflib.SequenceMatcher(a=reference, b=hypothesis, autojunk=False)
    return [(op, reference[i1:i2], hypothesis[j1:j2]) for op, i1, i2, j1, j2 in sm.get_opcodes()]


def match_boxes(truth: Sequence[Sequence[Point]], pred: Sequence[Sequence[Point]], threshold: float = 0.5):
    """Greedy one-to-one matching by IoU (highest first); returns matched (t, p) index pairs."""
    pairs = []
    for ti, t in enumerate(truth):
        for pi, p in enumerate(pred):
            v = iou(t, p)
            if v >= threshold:
                pairs.append((v, ti, pi))
    pairs.sort(reverse=True)
    used_t, used_p, matched = set(), set(), []
    for _, ti, pi in pairs:
        if ti not in used_t and pi not in used_p:
            used_t.add(ti)
            used_p.add(pi)
            matched.append((ti, pi))
    return matched


def detection_counts(truth: Sequence[Sequence[Point]], pred: Sequence[Sequence[Point]]) -> dict:
    """Per-page counts: matches at IoU 0.5, and ground-truth lines merged or split by the prediction.

    merged: a predicted box covers most (≥ 60 %) of this line and most of another line too.
    split: no single box matches this line, but two or more boxes each cover part (≥ 20 %) of it.
    cut_short: the line is matched, but its box spans less than 90 % of the line's width. IoU 0.5
    counts such a line as found; its reading loses the words outside the box.
    """
    matched = match_boxes(truth, pred)
    cut_short = sum(1 for ti, pi in matched if width_covered(truth[ti], pred[pi]) < CUT_SHORT_BELOW)
    matched_t = {t for t, _ in matched}
    merged = split = 0
    for ti, t in enumerate(truth):
        covering = [pi for pi, p in enumerate(pred) if overlap_share(t, p) >= 0.6]
        if any(
            sum(1 for tj, u in enumerate(truth) if tj != ti and overlap_share(u, pred[pi]) >= 0.6) for pi in covering
        ):
            merged += 1
        elif ti not in matched_t and sum(1 for p in pred if overlap_share(t, p) >= 0.2) >= 2:
            split += 1
    return {"truth": len(truth), "pred": len(pred), "tp": len(matched), "merged": merged, "split": split,
            "cut_short": cut_short}


CUT_SHORT_BELOW = 0.9


def width_covered(truth: Sequence[Point], pred: Sequence[Point]) -> float:
    """Share of the true line's horizontal extent that the predicted box spans."""
    tx0, _, tx1, _ = bbox(truth)
    px0, _, px1, _ = bbox(pred)
    return max(0.0, min(tx1, px1) - max(tx0, px0)) / (tx1 - tx0) if tx1 > tx0 else 1.0


def detection_scores(counts: Sequence[dict]) -> dict:
    tp = sum(c["tp"] for c in counts)
    n_pred = sum(c["pred"] for c in counts)
    n_truth = sum(c["truth"] for c in counts)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_truth if n_truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "pages": len(counts),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "merged": round(sum(c["merged"] for c in counts) / n_truth, 4) if n_truth else 0.0,
        "split": round(sum(c["split"] for c in counts) / n_truth, 4) if n_truth else 0.0,
        "cut_short": round(sum(c["cut_short"] for c in counts) / n_truth, 4) if n_truth else 0.0,
    }
