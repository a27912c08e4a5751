"""Rehearsal: the shipped set is whole, a run trains on its lines, and they never reach the writer's model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.train.rehearsal import MANIFEST_KIND, REHEARSAL_DIR, rehearsal_lines
from core.train_recognizer import train_recognizer
from tests.tiny_models import LINES16, render_line, write_labels

REHEARSED = ["Zqj Vwx", "Kyz Qjx", "Wvq Zyx"]  # characters the labelled lines never use


@pytest.fixture
def tiny_set(tmp_path) -> Path:
    """A rehearsal folder of three rendered lines."""
    folder = tmp_path / "rehearsal"
    folder.mkdir()
    rows = []
    for i, text in enumerate(REHEARSED):
        render_line(text).convert("L").save(folder / f"line-{i}.png")
        rows.append(json.dumps({"image": f"line-{i}.png", "text": text}))
    (folder / "lines.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def test_the_shipped_set_is_whole_and_names_its_licence():
    manifest = json.loads((REHEARSAL_DIR / "inkscribe.json").read_text(encoding="utf-8"))
    rows = [json.loads(x) for x in (REHEARSAL_DIR / "lines.jsonl").read_text(encoding="utf-8").splitlines()]
    assert manifest["kind"] == MANIFEST_KIND and manifest["lines"] == len(rows) >= 300
    assert "CC BY 4.0" in manifest["license"]
    assert all((REHEARSAL_DIR / r["image"]).is_file() and r["text"].strip() for r in rows)


def test_a_seeded_sample_of_the_set_and_none_when_off_or_missing(tiny_set, tmp_path):
    first, again = rehearsal_lines(2, seed=3, folder=tiny_set), rehearsal_lines(2, seed=3, folder=tiny_set)
    assert [s.text for s in first] == [s.text for s in again] and len(first) == 2
    assert all(s.crop.mode == "RGB" and s.text in REHEARSED for s in first)
    assert len(rehearsal_lines(10, seed=0, folder=tiny_set)) == 3
    assert rehearsal_lines(0, seed=0, folder=tiny_set) == []
    assert rehearsal_lines(5, seed=0, folder=tmp_path / "nowhere") == []


def test_a_run_trains_on_the_rehearsal_lines_but_its_character_model_and_counts_are_the_writers(
        tmp_path, tiny_set, monkeypatch):
    import core.train.loop
    import core.train_recognizer
    from core.recognize.charlm import CharNgramLM

    monkeypatch.setattr(core.train_recognizer, "rehearsal_lines",
                        lambda count, seed: rehearsal_lines(count, seed, folder=tiny_set))
    trained: list[str] = []
    step = core.train.loop.optimizer_step

    def spy(adapter, optim, accelerator, samples, *args):
        trained.extend(s.text for s in samples)
        return step(adapter, optim, accelerator, samples, *args)

    monkeypatch.setattr(core.train.loop, "optimizer_step", spy)
    labels = write_labels(tmp_path / "data", [LINES16[:8], LINES16[8:]])
    events: list[dict] = []
    recipe = {"augment": 0, "batch_size": 11, "max_steps": 2, "val_every_steps": 1, "rehearse": 3}
    out = train_recognizer(labels, base="english_g2", max_minutes=1.0, out=tmp_path / "model", val_fraction=0.5,
                           recipe=recipe, progress=events.append)
    assert set(REHEARSED) <= set(trained)  # one epoch of 8 + 3 lines
    manifest = json.loads((out / "inkscribe.json").read_text(encoding="utf-8"))
    assert manifest["trained_on"]["rehearsal_lines"] == 3 and manifest["trained_on"]["lines"] == 8
    assert any(e.get("message", "").startswith("rehearsal: 3 lines") for e in events)
    words = CharNgramLM.load(out).words
    assert "hello" in words and not {"zqj", "vwx", "kyz"} & words  # the writer's words only
