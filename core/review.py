"""Review: which line to check next, saving fixes safely, editing boxes, and what more labels would buy.

The Review page, the jobs and the tests all go through these functions; the page only draws.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import fmean
from typing import NamedTuple

from PIL import Image

from core.errors import InkscribeError
from core.geometry import bbox, box_points, crop_line
from core.ingest import load_image
from core.store import Store
from core.types import Line


# -- queues ---------------------------------------------------------------------------------
def review_queue(store: Store, page_id: int, order: str = "confidence", include_confirmed: bool = True) -> list:
    """The lines of a page to review: least confident first (unconfirmed before confirmed) or reading order."""
    rows = store.lines(page_id)
    if not include_confirmed:
        rows = [r for r in rows if r["status"] != "confirmed"]
    if order == "confidence":
        return sorted(rows, key=lambda r: (r["status"] == "confirmed", r["confidence"], r["position"]))
    return list(rows)


QUEUE_PICK = "sure-pairs"  # measured against pairs, spread and whole pages: docs/decisions/0012 and 0013
MIN_ASPECT = 3.0  # the page-rotating queues leave crops narrower than 3× their height to the end: marks, digits

LineKey = tuple[int, int]  # (page, line): ids in the store, indices in a labels file
PAIR_PICKS = {"pairs": 0, "sure-pairs": 2}  # the queues that count new character pairs: the confidence's power


class QueueLine(NamedTuple):
    """What a queue knows of an unchecked line: the reading's confidence, the crop's width/height, the reading."""

    confidence: float
    aspect: float
    text: str = ""


def next_to_fix(store: Store, limit: int = 20, doc_id: int | None = None) -> list:
    """Unconfirmed lines in the order that teaches the model most per correction (`QUEUE_PICK`).

    The character pairs of the confirmed lines training learns from (not the held-out ones) count as taught.
    """
    rows = {(r["page_id"], r["id"]): r for r in store.least_confident_lines(None, doc_id)}
    lines = {key: QueueLine(float(r["confidence"]), _aspect(json.loads(r["points"])), r["text"] or "")
             for key, r in rows.items()}
    known = [r["text"] or "" for r in store.confirmed_lines() if not r["holdout"]]
    return [rows[key] for key in queue_order(lines, limit, QUEUE_PICK, known)]


def queue_order(lines: dict[LineKey, QueueLine], limit: int, pick: str, known: Sequence[str] = ()) -> list[LineKey]:
    """The first `limit` lines a queue asks the user to correct.

    `fix-next`: least confident first, anywhere. `spread`: every page in turn (least confident page
    first), each page's least confident line first. `pairs`: the same rotation, but each page gives
    the line whose reading adds the most lower-cased character pairs not yet in the lines chosen
    before it or in `known` (ties: least confident); `sure-pairs` weighs those new pairs by the
    reading's confidence², for lines that teach much and cost few edits. In all rotations the
    narrow crops (`MIN_ASPECT`) come last, so the queue never runs dry while lines are left.
    (`core.train.select` replays them on labels.)
    """
    if pick == "fix-next":
        return sorted(lines, key=lambda k: (lines[k].confidence, k))[:limit]
    by_page: dict[int, list[LineKey]] = {}
    narrow: list[LineKey] = []
    for key in sorted(lines, key=lambda k: (lines[k].confidence, k)):
        (by_page.setdefault(key[0], []) if lines[key].aspect >= MIN_ASPECT else narrow).append(key)
    pages = sorted(by_page, key=lambda p: (fmean(lines[k].confidence for k in by_page[p]), p))
    take = _pair_taker(lines, known, PAIR_PICKS[pick]) if pick in PAIR_PICKS else lambda left: left.pop(0)
    chosen: list[LineKey] = []
    while len(chosen) < limit and any(by_page.values()):
        chosen += [take(by_page[page]) for page in pages if by_page[page]]
    return (chosen + narrow)[:limit]


def _pair_taker(lines: dict[LineKey, QueueLine], known: Sequence[str],
                power: int) -> Callable[[list[LineKey]], LineKey]:
    """A picker that removes and returns the line of a page (least confident first) adding most unseen pairs.

    The new pairs are weighed by confidence ** `power`: a line read nearly right costs the user few edits.
    """
    seen = set().union(*(character_pairs(text) for text in known))
    pairs = {key: character_pairs(line.text) for key, line in lines.items()}  # once per line, not per round
    weight = {key: line.confidence ** power for key, line in lines.items()}

    def take(left: list[LineKey]) -> LineKey:
        best = max(left, key=lambda k: len(pairs[k] - seen) * weight[k])  # max keeps the first of a tie
        left.remove(best)
        seen.update(pairs[best])
        return best

    return take


def character_pairs(text: str) -> set[str]:
    """The lower-cased character bigrams of a text: what a line can teach a CTC model of this hand."""
    text = text.lower()
    return {text[i : i + 2] for i in range(len(text) - 1)}


def _aspect(points: Sequence) -> float:
    x0, y0, x1, y1 = bbox(points)
    return (x1 - x0) / max(y1 - y0, 1.0)


def page_progress(store: Store, page_id: int) -> dict:
    rows = store.lines(page_id)
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("new", "corrected", "confirmed")}
    return {"lines": len(rows), **counts}


# -- saving ---------------------------------------------------------------------------------
def save_line(store: Store, line_id: int, text: str, seen_text: str | None, confirm: bool = True) -> bool:
    """Store the user's text; False when someone else changed the line since `seen_text` (nothing written).

    Confirming marks the line confirmed (it joins the dataset); saving without confirming marks
    a changed line corrected.
    """
    row = store.line(line_id)
    if row is None:
        raise InkscribeError("this line no longer exists (deleted in another tab?)")
    text = text.strip()
    if confirm:
        status = "confirmed"
    else:
        status = "corrected" if text != row["text"] or row["status"] == "corrected" else row["status"]
    return store.update_line(line_id, text=text, status=status, expected_text=seen_text)


# -- images ---------------------------------------------------------------------------------
def page_image(store: Store, page_id: int) -> Image.Image:
    page = store.page(page_id)
    if page is None:
        raise InkscribeError("this page no longer exists")
    return load_image(page.image_path)  # the one loader: the same pixels training and evaluation crop from


def line_points(row) -> list[tuple[float, float]]:
    return [tuple(p) for p in json.loads(row["points"])]


def line_crop(store: Store, row, image: Image.Image | None = None) -> Image.Image | None:
    image = image or page_image(store, row["page_id"])
    try:
        return crop_line(image, line_points(row))
    except ValueError:
        return None


# -- re-reading -----------------------------------------------------------------------------
def reread_lines(store: Store, line_ids: Sequence[int], recognizer: str = "default", include_done: bool = False) -> int:
    """Read lines again with another recognizer; lines the user corrected or confirmed are left alone."""
    from core.recognize import load_recognizer, resolve_recognizer_spec

    rows = [r for r in (store.line(i) for i in line_ids) if r is not None]
    if not include_done:
        rows = [r for r in rows if r["status"] == "new"]
    if not rows:
        return 0
    rec = load_recognizer(recognizer)
    spec = resolve_recognizer_spec(recognizer)
    images: dict[int, Image.Image] = {}
    crops = []
    for r in rows:
        if r["page_id"] not in images:
            images[r["page_id"]] = page_image(store, r["page_id"])
        crops.append(line_crop(store, r, images[r["page_id"]]))
    n = 0
    for r, result in zip(rows, rec.recognize(crops), strict=True):
        status = "new" if r["status"] == "new" else "corrected"
        if store.update_line(r["id"], text=result.text, confidence=result.confidence, recognizer=spec, status=status,
                             source=f"reread:{spec}", expected_text=r["text"]):
            n += 1
    return n


def reread_page(store: Store, page_id: int, recognizer: str = "default", redetect: bool = False,
                detector: str = "default", engines=None) -> dict:
    """Re-read a page's unchecked lines (boxes kept), or with `redetect` find the lines again too.

    Either way lines the user corrected or confirmed stay exactly as they are
    (Store.replace_page_lines keeps them; new boxes overlapping them are dropped).
    """
    kept = [r for r in store.lines(page_id) if r["status"] != "new"]
    if not redetect:
        ids = [r["id"] for r in store.lines(page_id) if r["status"] == "new"]
        return {"changed": reread_lines(store, ids, recognizer), "kept": len(kept)}
    from core.geometry import iou
    from core.layout import order_lines
    from core.pipeline import Engines, read_page

    engines = engines or Engines.load(detector, recognizer)
    result = read_page(page_image(store, page_id), engines)
    kept_pts = [line_points(r) for r in kept]
    fresh = [ln for ln in result.lines if all(iou(ln.points, k) < 0.3 for k in kept_pts)]
    store.replace_page_lines(page_id, fresh, engines.recognizer_spec, keep_confirmed=True)
    _renumber(store, page_id, order_lines)
    return {"changed": len(fresh), "kept": len(kept)}


def _renumber(store: Store, page_id: int, order_lines) -> None:
    """Put a page's lines back in reading order after boxes changed."""
    rows = store.lines(page_id)
    lines = [Line(points=line_points(r), text=str(r["id"])) for r in rows]
    ordered = order_lines(lines)
    store.set_line_layout([(int(ln.text), pos, ln.column, ln.indent) for pos, ln in enumerate(ordered)])


# -- box editing (numeric coordinates; see docs/APP.md for why) -----------------------------
def _clip(page, x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
    x0, x1 = sorted((max(0.0, min(float(x0), page.width)), max(0.0, min(float(x1), page.width))))
    y0, y1 = sorted((max(0.0, min(float(y0), page.height)), max(0.0, min(float(y1), page.height))))
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise InkscribeError("a box must be at least 2 pixels wide and high inside the page")
    return x0, y0, x1, y1


def drawn_box(xs: Sequence | None, ys: Sequence | None, width: int, height: int,
              min_size: int = 2) -> tuple[int, int, int, int] | None:
    """The box a user dragged on the page view (its x and y extents, page pixels), rounded and kept
    inside the page; None when nothing (or a box too small to hold a line) was drawn."""
    try:
        (xa, xb), (ya, yb) = (float(v) for v in xs[:2]), (float(v) for v in ys[:2])  # type: ignore[index]
        x0, x1 = sorted((round(max(0.0, min(xa, width))), round(max(0.0, min(xb, width)))))
        y0, y1 = sorted((round(max(0.0, min(ya, height))), round(max(0.0, min(yb, height)))))
    except (TypeError, ValueError):  # nothing drawn, or not numbers
        return None
    return (x0, y0, x1, y1) if x1 - x0 >= min_size and y1 - y0 >= min_size else None


def add_box(store: Store, page_id: int, x0: float, y0: float, x1: float, y1: float, text: str = "",
            recognizer: str | None = None) -> int:
    """A new line box (e.g. a line the detector missed); read with `recognizer` when given."""
    from core.layout import order_lines

    page = store.page(page_id)
    if page is None:
        raise InkscribeError("this page no longer exists")
    line_id = store.add_line(page_id, box_points(*_clip(page, x0, y0, x1, y1)), text=text)
    _renumber(store, page_id, order_lines)
    if recognizer and not text:
        reread_lines(store, [line_id], recognizer)
    return line_id


def move_box(store: Store, line_id: int, x0: float, y0: float, x1: float, y1: float) -> None:
    """Move/resize a line's box; its text is kept (re-read it if the words changed)."""
    row = store.line(line_id)
    if row is None:
        raise InkscribeError("this line no longer exists")
    page = store.page(row["page_id"])
    store.update_line(line_id, points=box_points(*_clip(page, x0, y0, x1, y1)))


def delete_box(store: Store, line_id: int) -> None:
    store.delete_line(line_id)


def merge_lines(store: Store, line_ids: Sequence[int]) -> int:
    """Merge boxes of one page into one (their union), texts joined in reading order; returns the kept id."""
    rows = [r for r in (store.line(i) for i in line_ids) if r is not None]
    if len(rows) < 2:
        raise InkscribeError("choose at least two lines to merge")
    if len({r["page_id"] for r in rows}) != 1:
        raise InkscribeError("only lines of the same page can be merged")
    rows.sort(key=lambda r: r["position"])
    pts = [p for r in rows for p in line_points(r)]
    text = " ".join(r["text"].strip() for r in rows if r["text"].strip())
    keep = rows[0]
    status = "corrected" if any(r["status"] != "new" for r in rows) else "new"
    store.update_line(keep["id"], points=box_points(*bbox(pts)), text=text, status=status,
                      confidence=min(r["confidence"] for r in rows))
    for r in rows[1:]:
        store.delete_line(r["id"])
    return keep["id"]


def split_line(store: Store, line_id: int, at: float = 0.5) -> tuple[int, int]:
    """Split a box vertically at a share `at` of its width; the text splits at the space nearest that share."""
    from core.layout import order_lines

    row = store.line(line_id)
    if row is None:
        raise InkscribeError("this line no longer exists")
    if not 0.05 <= at <= 0.95:
        raise InkscribeError("split at a share of the width between 0.05 and 0.95")
    x0, y0, x1, y1 = bbox(line_points(row))
    xs = x0 + (x1 - x0) * at
    text = row["text"]
    cut = round(len(text) * at)
    spaces = [i for i, ch in enumerate(text) if ch == " "]
    if spaces:
        cut = min(spaces, key=lambda i: abs(i - cut))
    left, right = text[:cut].strip(), text[cut:].strip()
    status = "corrected" if row["status"] != "new" else "new"
    store.update_line(line_id, points=box_points(x0, y0, xs, y1), text=left, status=status)
    new_id = store.add_line(row["page_id"], box_points(xs, y0, x1, y1), text=right, position=row["position"] + 1,
                            status=status)
    _renumber(store, row["page_id"], order_lines)
    return line_id, new_id


# -- evaluation on held-out lines -----------------------------------------------------------
def compare_on_holdout(store: Store, specs: Sequence[str], keep_lines: bool = False,
                       progress: Callable[[dict], None] | None = None,
                       should_stop: Callable[[], bool] | None = None) -> dict:
    """CER/WER/exact of recognizers on the held-out confirmed lines (the same scoring as core.evaluate).

    `progress` gets lines read over all models (step / total_steps); `should_stop` is checked
    between chunks of lines (CancelledError): the Evaluate page runs this as a background job.
    """
    from core.dataset import assign_holdout, holdout_lines, line_crops
    from core.evaluate import evaluate_recognizer

    assign_holdout(store)
    rows = holdout_lines(store)
    if progress:
        progress({"message": f"cutting {len(rows)} held-out lines from their pages"})
    pairs = [(r, c) for r, c in zip(rows, line_crops(store, rows), strict=True) if c is not None]
    if not pairs:
        return {"lines": 0, "models": []}
    crops = [c for _, c in pairs]
    texts = [r["text"] for r, _ in pairs]
    models = []
    for k, spec in enumerate(specs):
        report = _lines_read(progress, k, len(specs), len(pairs), spec) if progress else None
        if report:
            report(0)
        res = evaluate_recognizer(spec, crops, texts, keep_lines=keep_lines, progress=report, should_stop=should_stop)
        if keep_lines:
            for item, (r, _) in zip(res["per_line"], pairs, strict=True):
                item.update({"line_id": r["id"], "document": r["document_name"], "page": r["page_no"]})
        models.append(res)
    return {"lines": len(pairs), "models": models}


def _lines_read(progress: Callable[[dict], None], k: int, models: int, lines: int, spec: str) -> Callable[[int], None]:
    """Turn one model's "n lines read" into progress over every model's lines."""
    name = Path(spec).name or spec

    def report(done: int) -> None:
        progress({"step": k * lines + done, "total_steps": models * lines,
                  "message": f"model {k + 1} of {models} ({name}): {done} of {lines} lines read"})

    return report


def last_evaluation(store: Store) -> dict | None:
    """The latest finished evaluate job (its result is what the Evaluate page shows), or None."""
    from core.jobs import latest_job

    return latest_job(store, ("evaluate",), status="done")


# -- learning curve and forecast ------------------------------------------------------------
def learning_curve(store: Store) -> list[dict]:
    """One point per fine-tuned recognizer: lines it learned from, its held-out CER and what was forecast."""
    out = []
    for m in store.models("recognizer"):
        metrics = json.loads(m["metrics"])
        trained = json.loads(m["trained_on"])
        n = metrics.get("lines_used") or trained.get("lines")
        if n and metrics.get("holdout_cer") is not None:
            out.append({"model_id": m["id"], "model": m["name"], "lines": int(n), "cer": float(metrics["holdout_cer"]),
                        "forecast_cer": metrics.get("forecast_cer"), "base_cer": metrics.get("base_holdout_cer")})
    return sorted(out, key=lambda p: (p["lines"], p["model_id"]))


def fit_power_law(points: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """Least-squares fit of cer = a·n^-b in log space; None with fewer than 2 distinct n."""
    pts = [(float(n), max(float(c), 1e-4)) for n, c in points if n > 0]
    if len({n for n, _ in pts}) < 2:
        return None
    xs = [math.log(n) for n, _ in pts]
    ys = [math.log(c) for _, c in pts]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return math.exp(my - slope * mx), -slope


def forecast(store: Store, lines: int) -> dict:
    """Forecast held-out CER after training on `lines` confirmed lines, from past fine-tunes."""
    curve = learning_curve(store)
    fit = fit_power_law([(p["lines"], p["cer"]) for p in curve])
    if fit is None:
        return {"ok": False, "cer": None, "points": len(curve), "lines": lines,
                "message": "too little data for a forecast: it needs two fine-tunes on different numbers of lines"}
    a, b = fit
    if b <= 0:
        return {"ok": False, "cer": None, "points": len(curve), "lines": lines, "a": a, "b": b,
                "message": "no trend yet: more lines have not lowered the error so far"}
    value = max(0.0, min(1.0, a * max(1, lines) ** -b))
    return {"ok": True, "cer": round(value, 4), "points": len(curve), "lines": lines, "a": a, "b": b,
            "message": f"with {lines} confirmed lines the error rate should be about {value:.1%}"}
