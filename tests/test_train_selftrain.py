"""Which labelled lines a run keeps (`pick`), and self-training on the lines it keeps no label of."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from PIL import Image

from core.review import QueueLine, queue_order
from core.train import select
from core.train.data import PICKS, Sample, load_samples, split_pages
from core.train.selftrain import vet
from core.train_recognizer import train_recognizer
from tests.tiny_models import LINES16, write_labels


@pytest.fixture(scope="module")
def four_pages(tmp_path_factory) -> Path:
    """Four pages of four lines each; file order p0, p1, p2, p3."""
    return write_labels(tmp_path_factory.mktemp("four"), [LINES16[i : i + 4] for i in range(0, 16, 4)])


def test_first_keeps_the_first_lines_in_file_order_and_pools_the_rest(four_pages):
    data = load_samples(four_pages, "train", 0.0, 6, 0, pick="first")
    assert [s.text for s in data.train] == LINES16[:6]  # page p0 whole, then p1 cut at the sixth line
    assert [(p.image_path.name, len(p.lines)) for p in data.pool] == [("p1.png", 2), ("p2.png", 4), ("p3.png", 4)]
    with_val = load_samples(four_pages, "train", 0.5, 8, 0, pick="first")
    assert {s.page for s in with_val.train} | {s.page for s in with_val.val} == {"p0.png", "p1.png"}
    assert len(with_val.val) == 4 and len(with_val.train) == 4  # one of the two kept pages validates


def test_shuffled_keeps_whole_pages_in_seeded_random_order_and_validates_on_one_of_them(four_pages):
    data = load_samples(four_pages, "train", 0.0, 6, 3, pick="shuffled")
    pages = [s.page for s in data.train]
    assert len(data.train) == 6 and len(set(pages)) == 2 and pages.count(pages[0]) == 4  # a whole page, then 2
    assert data.train == load_samples(four_pages, "train", 0.0, 6, 3, pick="shuffled").train  # seeded
    orders = {tuple(dict.fromkeys(s.page for s in load_samples(four_pages, "train", 0.0, 6, seed,
                                                                pick="shuffled").train)) for seed in range(6)}
    assert len(orders) > 1  # another seed, other pages
    with_val = load_samples(four_pages, "train", 0.5, 8, 3, pick="shuffled")
    assert len(with_val.val) == 4 and len(with_val.train) == 4  # validation comes out of the 8 lines
    assert {s.page for s in with_val.train + with_val.val} == set(pages)
    assert sum(len(p.lines) for p in with_val.pool) == 8


def test_random_pools_the_pages_it_keeps_no_line_of(four_pages):
    data = load_samples(four_pages, "train", 0.0, 4, 0, pick="random")
    kept = {s.page for s in data.train}
    assert len(data.train) == 4 and len(kept) == 1
    assert sorted(p.image_path.name for p in data.pool) == sorted({"p0.png", "p1.png", "p2.png", "p3.png"} - kept)


def _confidences(values: dict[tuple[int, int], float], aspect: float = 8.0) -> dict:
    return {key: QueueLine(conf, aspect) for key, conf in values.items()}


def test_fix_next_takes_the_least_confident_lines_anywhere_and_spread_takes_every_page_in_turn():
    conf = _confidences({(p, i): 0.5 + p / 10 + i / 100 for p in range(3) for i in range(4)})
    conf[(2, 3)] = QueueLine(0.1, 8.0)  # the least confident line of all
    conf[(0, 0)] = QueueLine(0.05, 1.0)  # even less sure, but a mark: `spread` skips it
    assert queue_order(conf, 3, "fix-next") == [(0, 0), (2, 3), (0, 1)]
    assert queue_order(conf, 4, "spread") == [(0, 1), (2, 3), (1, 0), (0, 2)]  # pages by mean: 0, 2, 1


def test_every_queue_of_the_review_stage_is_a_pick_training_accepts():
    assert set(select.CONFIDENCE_PICKS) <= set(PICKS)


def test_a_queue_pick_keeps_the_chosen_lines_and_pools_the_others(four_pages, monkeypatch):
    chosen = {(1, 2): 0.1, (3, 0): 0.2, (3, 3): 0.3}
    conf = _confidences({(p, i): chosen.get((p, i), 0.9) for p in range(4) for i in range(4)})
    monkeypatch.setattr(select, "base_confidences", lambda *_a: conf)
    data = load_samples(four_pages, "train", 0.0, 3, 0, pick="fix-next")
    assert sorted(s.text for s in data.train) == sorted([LINES16[6], LINES16[12], LINES16[15]])
    assert sum(len(p.lines) for p in data.pool) == 13 and data.train_pages == 2


def test_a_replay_in_rounds_lets_each_model_pick_its_share_of_the_lines_the_rounds_before_left(four_pages,
                                                                                                monkeypatch):
    first = _confidences({(p, i): 0.1 if (p, i) in {(0, 0), (0, 1)} else 0.9 for p in range(4) for i in range(4)})
    second = _confidences({(p, i): {(0, 0): 0.05, (2, 3): 0.3, (1, 1): 0.4}.get((p, i), 0.9)
                           for p in range(4) for i in range(4)})
    monkeypatch.setattr(select, "base_confidences", lambda _labels, _split, model: {"a": first, "b": second}[model])
    pages = split_pages(four_pages, "train")
    assert select.queued_in_rounds(four_pages, "train", pages, 4, "fix-next", ("a", "b")) == [
        [(0, 0), (0, 1)], [(2, 3), (1, 1)]]  # the second model's least sure line, (0, 0), was confirmed already
    assert select.queued_in_rounds(four_pages, "train", pages, 2, "fix-next", "a") == [[(0, 0), (0, 1)]]


def test_the_lines_confirmed_in_earlier_rounds_count_as_known_pairs(four_pages, monkeypatch):
    first = _confidences({(p, i): 0.1 if (p, i) == (0, 0) else 0.9 for p in range(4) for i in range(4)})
    second = {key: QueueLine(0.5 if key[0] == 3 else 0.9, 8.0) for key in first}
    second[(3, 0)] = QueueLine(0.5, 8.0, LINES16[0])  # reads as the line confirmed in round one: nothing new
    second[(3, 1)] = QueueLine(0.5, 8.0, "zq")
    monkeypatch.setattr(select, "base_confidences", lambda _labels, _split, model: {"a": first, "b": second}[model])
    pages = split_pages(four_pages, "train")
    assert select.queued_in_rounds(four_pages, "train", pages, 2, "pairs", ("a", "b")) == [[(0, 0)], [(3, 1)]]
    assert queue_order({k: v for k, v in second.items() if k != (0, 0)}, 1, "pairs") == [(3, 0)]  # unknown: most pairs


def test_fix_next_reads_with_the_base_model_outside_the_budget(tmp_path, four_pages):
    events: list[dict] = []
    recipe = {"augment": 0, "patience": 1000, "batch_size": 4, "lr": 1e-3, "max_steps": 2, "val_every_steps": 2}
    out = train_recognizer(four_pages, base="english_g2", max_minutes=1.0, out=tmp_path / "m", pick="fix-next",
                           limit_lines=6, val_fraction=0.0, progress=events.append, recipe=recipe)
    manifest = json.loads((out / "inkscribe.json").read_text())
    assert manifest["trained_on"]["pick"] == "fix-next" and manifest["trained_on"]["lines"] == 6
    read = select.base_confidences(four_pages, "train", "english_g2")
    assert len(read) == 16 and all(0.0 <= line.confidence <= 1.0 and line.text for line in read.values())
    assert any("to replay the fix-next queue" in e.get("message", "") for e in events)


def test_a_run_picked_in_rounds_names_the_model_of_each_round(tmp_path, four_pages):
    recipe = {"augment": 0, "patience": 1000, "batch_size": 4, "lr": 1e-3, "max_steps": 2, "val_every_steps": 2}
    out = train_recognizer(four_pages, base="english_g2", max_minutes=1.0, out=tmp_path / "m", pick="fix-next",
                           pick_model=("english_g2", "english_g2"), limit_lines=6, val_fraction=0.0, recipe=recipe)
    trained_on = json.loads((out / "inkscribe.json").read_text())["trained_on"]
    assert trained_on["pick_rounds"] == ["english_g2", "english_g2"] and trained_on["lines"] == 6


def test_self_training_also_reads_the_pages_of_an_extra_pool(tmp_path, four_pages):
    extra = write_labels(tmp_path / "extra", [LINES16[:3]], split="pool")
    recipe = {"augment": 0, "patience": 1000, "batch_size": 8, "lr": 1e-3, "max_steps": 2, "val_every_steps": 2}
    out = train_recognizer(four_pages, base="english_g2", max_minutes=1.0, out=tmp_path / "s", pick="first",
                           limit_lines=16, val_fraction=0.5, self_train=True, pool=extra, pool_split="pool",
                           recipe=recipe)
    stats = json.loads((out / "inkscribe.json").read_text())["self_training"]
    assert stats["pool_pages"] == 1 and stats["pool_lines"] == 3  # every labelled line kept: only the extra pool


def _reading(text: str, confidence: float) -> tuple[Sample, str, float]:
    return Sample(Image.new("RGB", (40, 10), "white"), "", "p.png"), text, confidence


def test_vetting_leaves_out_empty_unsure_and_collapsed_readings():
    readings = ([_reading(f"line {i}", 0.9 + i / 1000) for i in range(40)] + [_reading("", 0.0)] * 5
                + [_reading("the same", 0.99)] * 6 + [_reading(f"unsure {i}", 0.2) for i in range(30)])
    learned, stats = vet(readings, keep_share=0.6)
    texts = [s.text for s in learned]
    assert "the same" not in texts and stats["collapsed"] == ["the same"] and stats["collapsed_lines"] == 6
    assert stats["empty"] == 5 and not any(t.startswith("unsure") for t in texts)
    assert stats["learned"] == len(learned) == 40 and all(s.text for s in learned)


def test_self_training_learns_from_pseudo_labels_within_the_budget(tmp_path, four_pages, monkeypatch):
    import core.train_recognizer

    recipes = []  # each fine-tune's recipe: the teacher's, then the student's (both keep their last weights)

    def spy(*args, recipe=None, **kwargs):
        recipes.append(recipe)
        return train_recognizer(*args, recipe=recipe, **kwargs)

    monkeypatch.setattr(core.train_recognizer, "train_recognizer", spy)
    events: list[dict] = []
    recipe = {"augment": 0, "patience": 1000, "batch_size": 8, "lr": 1e-3, "max_steps": 12, "val_every_steps": 6}
    out = train_recognizer(four_pages, base="english_g2", max_minutes=1.5, out=tmp_path / "student", pick="first",
                           limit_lines=8, val_fraction=0.5, self_train=True, progress=events.append, recipe=recipe)
    manifest = json.loads((out / "inkscribe.json").read_text())
    stats = manifest["self_training"]
    assert stats["pool_pages"] == 2 and stats["pool_lines"] == 8 and stats["read"] == 8
    assert manifest["trained_on"]["lines"] == 4 + stats["learned"]  # labelled lines + the vetted pseudo-labels
    assert manifest["base"] == "english_g2" and manifest["trained_on"]["pick"] == "first"
    assert not list(tmp_path.glob(".student.teacher*"))  # the teacher is gone
    assert any("self-training: read 8 of 8 unlabelled lines" in e.get("message", "") for e in events)
    # the student's bar is the first base's validation CER (the teacher's first validation), not the teacher's
    first_base = next(e["val_cer"] for e in events if e.get("message", "").startswith("base model"))
    assert stats["base_val_cer"] == first_base
    assert [r.get("keep") for r in recipes] == ["last", "last"] and recipes[0]["max_steps"] == 12


def test_a_page_whose_readings_are_mostly_unsure_is_left_out_whole():
    def page_readings(page: str, confidences: list[float]) -> list[tuple[Sample, str, float]]:
        return [(Sample(Image.new("RGB", (40, 10), "white"), "", page), f"{page} {i}", c)
                for i, c in enumerate(confidences)]

    readings = page_readings("upright.png", [0.9] * 10) + page_readings("drawing.png", [0.95] + [0.3] * 9)
    learned, stats = vet(readings, keep_share=0.6)
    assert stats["unsure_pages"] == ["drawing.png"] and stats["unsure_page_lines"] == 2  # its sure line too
    assert {s.page for s in learned} == {"upright.png"} and stats["learned"] == 10


def test_a_page_upside_down_is_left_out_when_the_shipped_model_reads_the_pool(tmp_path, notes_dir):
    from core.labels import read_labels
    from core.recognize.registry import load
    from core.train.selftrain import pool_crops, read_pool

    upright, other = (json.loads(row) for row in (notes_dir / "labels.jsonl").read_text().splitlines()[:2])
    with Image.open(notes_dir / other["page"]) as img:
        img.rotate(180).save(tmp_path / "upside_down.png")
        w, h = img.size
    upright["page"] = str(notes_dir / upright["page"])
    other["page"] = "upside_down.png"
    for line in other["lines"]:
        line["points"] = [[w - x, h - y] for x, y in line["points"]]
    (tmp_path / "pool.jsonl").write_text("\n".join(json.dumps(row) for row in (upright, other)) + "\n")
    crops = pool_crops(read_labels(tmp_path / "pool.jsonl"), random.Random(0))
    learned, stats = vet(read_pool(load("default"), crops, float("inf"), lambda: False))
    rotated = f"{tmp_path.name}/upside_down.png"
    assert stats["unsure_pages"] == [rotated] and stats["learned"] > 0
    assert all(s.page != rotated for s in learned)
