"""core.review: queues, safe saving, box editing, re-reading, learning-curve forecast."""

from __future__ import annotations

import math

import pytest
from PIL import Image, ImageDraw, ImageFont

from core import review
from core.errors import InkscribeError
from core.geometry import bbox, box_points
from core.recognize import Recognition
from core.store import Store
from core.types import Line


class FakeRecognizer:
    """Reads every crop as the same text, instantly."""

    def __init__(self, text: str = "hello", confidence: float = 0.9, name: str = "fake"):
        self.text, self.confidence, self.name = text, confidence, name

    def recognize(self, crops):
        return [Recognition(self.text if c is not None else "", self.confidence) for c in crops]


def install_fakes(monkeypatch, fakes: dict[str, FakeRecognizer]) -> None:
    """Make `load_recognizer(spec)` return a fake for these specs (names or model dirs), offline and instant."""
    from core.recognize import registry

    real_resolve = registry.resolve

    def resolve(spec):
        spec = spec or "default"
        return spec if spec in fakes or str(spec) in fakes else real_resolve(spec)

    def load(spec="default"):
        key = resolve(spec)
        if key in fakes:
            return fakes[key]
        raise AssertionError(f"test tried to load a real recognizer: {spec}")

    monkeypatch.setattr(registry, "resolve", resolve)
    monkeypatch.setattr(registry, "load", load)


def page_image(texts: list[str], width: int = 900) -> tuple[Image.Image, list[Line]]:
    img = Image.new("RGB", (width, 80 + 70 * len(texts)), "white")
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 32)
    except OSError:
        font = ImageFont.load_default()
    lines = []
    for i, t in enumerate(texts):
        y = 40 + i * 70
        draw.text((40, y), t, fill=(20, 30, 120), font=font)
        lines.append(Line(box_points(30, y - 5, 40 + 20 * max(3, len(t)), y + 45), text=t, confidence=0.1 + 0.1 * i))
    return img, lines


def make_doc(store: Store, name: str = "notes.pdf", pages: int = 1, lines: int = 4, confirm: bool = False,
             text: str = "line") -> int:
    doc = store.create_document(name, f"sha-{name}", "pdf", pages, "classical", "default")
    for p in range(1, pages + 1):
        img, lns = page_image([f"{text} {p}.{i}" for i in range(lines)])
        page_id = store.add_page(doc, p, img, lns, "default")
        if confirm:
            for r in store.lines(page_id):
                store.update_line(r["id"], status="confirmed")
    store.set_document_status(doc, "done")
    return doc


def test_queue_orders_by_confidence_and_reading(store):
    doc = make_doc(store, lines=4)
    page = store.pages(doc)[0]
    rows = store.lines(page.id)
    store.update_line(rows[0]["id"], status="confirmed")
    by_conf = review.review_queue(store, page.id, "confidence")
    assert [r["position"] for r in by_conf] == [1, 2, 3, 0]  # confirmed last, then least confident first
    assert [r["position"] for r in review.review_queue(store, page.id, "reading")] == [0, 1, 2, 3]
    assert len(review.review_queue(store, page.id, include_confirmed=False)) == 3
    nxt = review.next_to_fix(store, limit=2)
    assert [r["position"] for r in nxt] == [3, 2]  # unconfirmed only; each adds one new pair: the surest first
    assert review.page_progress(store, page.id) == {"lines": 4, "new": 3, "corrected": 0, "confirmed": 1}


def test_fix_next_takes_every_page_in_turn_and_asks_for_marks_last(store):
    doc = store.create_document("q.pdf", "sha-q", "pdf", 2, "classical", "default")
    img = Image.new("RGB", (900, 400), "white")

    def wide(y: int, confidence: float) -> Line:
        return Line(box_points(30, y, 330, y + 50), text="a line", confidence=confidence)

    mark = Line(box_points(30, 10, 60, 60), text="-", confidence=0.0)  # the least confident, but no letters to learn
    first = store.add_page(doc, 1, img, [mark, wide(100, 0.1), wide(200, 0.2)], "default")
    second = store.add_page(doc, 2, img, [wide(100, 0.5), wide(200, 0.6)], "default")
    got = [(r["page_id"], r["confidence"]) for r in review.next_to_fix(store, limit=5)]
    # the first page's lines teach the same pairs: the surer one (fewer edits); then nothing is new: least sure first
    assert got == [(first, 0.2), (second, 0.5), (first, 0.1), (second, 0.6), (first, 0.0)]
    assert len(review.next_to_fix(store, limit=2)) == 2


def test_pairs_queue_takes_each_page_in_turn_for_the_line_teaching_most_new_character_pairs():
    lines = {(0, 0): review.QueueLine(0.2, 8.0, "the cat"), (0, 1): review.QueueLine(0.9, 8.0, "quiz jumbo waltz"),
             (1, 0): review.QueueLine(0.3, 8.0, "the hat"), (1, 1): review.QueueLine(0.4, 8.0, "the cat"),
             (2, 0): review.QueueLine(0.1, 1.0, "x")}  # a mark: last
    # page 0 (mean 0.55) comes after page 1 (0.35); page 1 ties on new pairs → its least confident line;
    # page 0's confident line adds more new pairs than a second "the cat"
    assert review.queue_order(lines, 5, "pairs") == [(1, 0), (0, 1), (1, 1), (0, 0), (2, 0)]
    assert review.queue_order(lines, 2, "spread") == [(1, 0), (0, 0)]
    # pairs the user already confirmed teach nothing new: beside a known "the hat", "the cat" adds " c" and "ca"
    assert review.queue_order(lines, 1, "pairs", known=["the hat"]) == [(1, 1)]


def test_sure_pairs_queue_weighs_new_pairs_by_confidence_squared():
    lines = {(0, 0): review.QueueLine(0.3, 8.0, "quiz jumbo waltz"),  # 15 new pairs, but read badly
             (0, 1): review.QueueLine(0.9, 8.0, "the hat is")}  # 9 new pairs, read nearly right: few edits
    assert review.queue_order(lines, 1, "pairs") == [(0, 0)]
    assert review.queue_order(lines, 2, "sure-pairs") == [(0, 1), (0, 0)]
    # what the user already confirmed still counts as taught
    assert review.queue_order(lines, 1, "sure-pairs", known=["the hat is"]) == [(0, 0)]


def test_fix_next_counts_the_pairs_of_confirmed_lines_training_learns_from_as_known(store):
    doc = store.create_document("p.pdf", "sha-p", "pdf", 1, "classical", "default")
    img = Image.new("RGB", (900, 400), "white")

    def wide(y: int, text: str, confidence: float) -> Line:
        return Line(box_points(30, y, 330, y + 50), text=text, confidence=confidence)

    page = store.add_page(doc, 1, img, [wide(10, "lemon tart", 0.1), wide(80, "fig jam", 0.5),
                                        wide(150, "lemon tart", 0.9)], "default")
    first = review.next_to_fix(store, limit=1)[0]  # more new pairs than "fig jam", and of the two the surer
    assert (first["text"], first["confidence"]) == ("lemon tart", 0.9)
    store.update_line(store.lines(page)[0]["id"], status="confirmed")
    assert review.next_to_fix(store, limit=1)[0]["text"] == "fig jam"  # "lemon tart" teaches nothing new now
    store.hold_out_pages([page])  # a held-out line is never learned from: its pairs are not taught
    assert review.next_to_fix(store, limit=1)[0]["text"] == "lemon tart"


def test_save_line_confirms_corrects_and_refuses_stale_edit(store):
    doc = make_doc(store)
    line = store.lines(store.pages(doc)[0].id)[0]
    assert review.save_line(store, line["id"], " fixed ", seen_text=line["text"], confirm=False)
    assert store.line(line["id"])["status"] == "corrected"
    assert store.line(line["id"])["text"] == "fixed"
    # another tab saw "fixed" and saves; this one still thinks the text is the original: refused
    assert review.save_line(store, line["id"], "other tab", seen_text="fixed", confirm=True)
    assert not review.save_line(store, line["id"], "stale", seen_text=line["text"], confirm=True)
    row = store.line(line["id"])
    assert (row["text"], row["status"]) == ("other tab", "confirmed")
    assert [e["field"] for e in store.edits(line["id"])] == ["text", "status", "text", "status"]
    store.delete_line(line["id"])
    with pytest.raises(InkscribeError):
        review.save_line(store, line["id"], "x", seen_text=None)


def test_box_editing_add_move_merge_split_delete(store):
    doc = make_doc(store, lines=3)
    page = store.pages(doc)[0]
    a, b, c = store.lines(page.id)
    review.move_box(store, a["id"], 10, 20, 400, 60)
    assert bbox(review.line_points(store.line(a["id"]))) == (10, 20, 400, 60)
    with pytest.raises(InkscribeError):
        review.move_box(store, a["id"], 10, 20, 11, 21)
    merged = review.merge_lines(store, [b["id"], c["id"]])
    row = store.line(merged)
    assert row["text"] == f"{b['text']} {c['text']}"
    assert store.line(c["id"]) is None
    left, right = review.split_line(store, merged, 0.5)
    assert store.line(left)["text"] == b["text"] and store.line(right)["text"] == c["text"]
    new_id = review.add_box(store, page.id, 50, page.height - 40, 300, page.height - 5, text="added")
    positions = [r["position"] for r in store.lines(page.id)]
    assert positions == sorted(positions) == list(range(len(positions)))
    assert store.lines(page.id)[-1]["id"] == new_id  # lowest on the page → last in reading order
    review.delete_box(store, new_id)
    assert store.line(new_id) is None
    assert any(e["field"] == "points" for e in store.edits(a["id"]))
    with pytest.raises(InkscribeError):
        review.merge_lines(store, [a["id"]])


def test_reread_keeps_checked_lines(store, monkeypatch):
    install_fakes(monkeypatch, {"fake": FakeRecognizer("READ")})
    doc = make_doc(store, lines=3)
    page = store.pages(doc)[0]
    rows = store.lines(page.id)
    store.update_line(rows[0]["id"], text="mine", status="corrected")
    res = review.reread_page(store, page.id, "fake")
    assert res == {"changed": 2, "kept": 1}
    texts = [r["text"] for r in store.lines(page.id)]
    assert texts == ["mine", "READ", "READ"]
    assert store.lines(page.id)[1]["recognizer"] == "fake"
    # an explicit re-read of a checked line is allowed, and stays "corrected"
    assert review.reread_lines(store, [rows[0]["id"]], "fake", include_done=True) == 1
    assert store.line(rows[0]["id"])["status"] == "corrected"


def test_reread_page_redetect_keeps_checked_lines(store, monkeypatch):
    install_fakes(monkeypatch, {"fake": FakeRecognizer("found")})
    doc = make_doc(store, lines=3)
    page = store.pages(doc)[0]
    rows = store.lines(page.id)
    store.update_line(rows[1]["id"], text="checked", status="confirmed")
    res = review.reread_page(store, page.id, "fake", redetect=True, detector="classical")
    after = store.lines(page.id)
    assert res["kept"] == 1 and res["changed"] >= 1
    assert [r["text"] for r in after].count("checked") == 1
    assert [r["position"] for r in after] == list(range(len(after)))
    checked = next(r for r in after if r["text"] == "checked")
    # no new box sits on the checked line
    from core.geometry import iou

    assert all(iou(review.line_points(r), review.line_points(checked)) < 0.3 for r in after if r["id"] != checked["id"])


def test_drawn_box_and_crops(store):
    doc = make_doc(store)
    page = store.pages(doc)[0]
    assert review.drawn_box([310.4, 20.6], [80, 40.2], 300, 200) == (21, 40, 300, 80)  # ordered, rounded, clipped
    assert review.drawn_box([10, 11], [0, 50], 300, 200) is None  # too thin to hold a line
    assert review.drawn_box(None, None, 300, 200) is None and review.drawn_box([1], [2, 3], 300, 200) is None
    crop = review.line_crop(store, store.lines(page.id)[0])
    assert crop is not None and crop.width > crop.height


def test_power_law_fit_and_forecast(store):
    a, b = review.fit_power_law([(100, 0.5), (400, 0.25)])
    assert math.isclose(b, 0.5, rel_tol=1e-6) and math.isclose(a * 1600 ** -b, 0.125, rel_tol=1e-6)
    assert review.fit_power_law([(100, 0.5)]) is None
    assert review.fit_power_law([(100, 0.5), (100, 0.4)]) is None
    fc = review.forecast(store, 500)
    assert not fc["ok"] and "too little data" in fc["message"]
    for n, c in ((100, 0.4), (400, 0.2)):
        store.register_model("recognizer", f"m{n}", f"/tmp/none-{n}", trained_on={"lines": n},
                             metrics={"lines_used": n, "holdout_cer": c, "forecast_cer": None})
    curve = review.learning_curve(store)
    assert [p["lines"] for p in curve] == [100, 400]
    fc = review.forecast(store, 1600)
    assert fc["ok"] and math.isclose(fc["cer"], 0.1, abs_tol=1e-3)
    store.register_model("recognizer", "worse", "/tmp/none-w", metrics={"lines_used": 800, "holdout_cer": 0.9})
    store.register_model("recognizer", "worse2", "/tmp/none-w2", metrics={"lines_used": 1600, "holdout_cer": 0.95})
    assert not review.forecast(store, 3200)["ok"]


def test_compare_on_holdout_scores_models(store, monkeypatch):
    install_fakes(monkeypatch, {"good": FakeRecognizer("same"), "bad": FakeRecognizer("xxxx")})
    for n in range(4):
        make_doc(store, name=f"d{n}.pdf", pages=1, lines=4, confirm=True, text="same")
    for r in store.confirmed_lines():
        store.update_line(r["id"], text="same")
    res = review.compare_on_holdout(store, ["good", "bad"], keep_lines=True)
    assert res["lines"] >= 4
    good, bad = res["models"]
    assert good["cer"] == 0.0 and bad["cer"] > 0.5
    assert {"line_id", "document", "page", "reference", "hypothesis"} <= set(good["per_line"][0])


def test_core_modules_have_no_ui():
    from pathlib import Path

    for name in ("review", "dataset", "jobs"):
        assert "streamlit" not in (Path(review.__file__).parent / f"{name}.py").read_text()
