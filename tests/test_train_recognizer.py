"""Fine-tuning: both engines overfit a few lines, resume, never overwrite, and explain bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from core.errors import BadInputError, CancelledError, ModelError
from core.labels import iter_line_crops, read_labels
from core.recognize import load_recognizer, registry
from core.train_recognizer import load_samples, train_recognizer
from tests.tiny_models import LINES16, tiny_trocr_dir, write_labels

FAST = {"augment": 0, "patience": 1000}


@pytest.fixture(scope="module")
def labels16(tmp_path_factory) -> Path:
    return write_labels(tmp_path_factory.mktemp("lines16"), [LINES16])


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def test_tiny_trocr_overfits_and_never_touches_its_base(tmp_path, labels16, inkscribe_home):
    base = tiny_trocr_dir(tmp_path / "tiny-base")
    before = _digest(base)
    events: list[dict] = []
    out = train_recognizer(labels16, base=str(base), max_minutes=2, progress=events.append,
                           recipe={**FAST, "lr": 3e-3, "batch_size": 16, "warmup": 0.02, "max_steps": 330,
                                   "val_every_steps": 55})
    assert out == inkscribe_home / "models" / "recognizer-v1"  # default: next version under models_dir
    assert _digest(base) == before
    manifest = json.loads((out / "inkscribe.json").read_text())
    assert manifest["engine"] == "encoder-decoder" and manifest["kind"] == "recognizer"  # its base says "trocr"
    assert manifest["trained_on"]["lines"] == 16 and manifest["trained_on"]["pages"] == 1
    assert manifest["metrics"]["val_cer"] <= 0.1 < manifest["metrics"]["base_val_cer"], manifest["metrics"]
    assert not (out.parent / f"{out.name}.work").exists()
    registry.clear_cache()
    rec = load_recognizer(str(out))
    lines = list(iter_line_crops(read_labels(labels16)))[:4]  # cut from the page as training cut them
    got = rec.recognize([crop for _, _, crop in lines])
    assert sum(r.text == line.text for r, (_, line, _) in zip(got, lines, strict=True)) >= 3


def test_crnn_fine_tune_learns_new_characters(tmp_path, labels16):
    events: list[dict] = []
    out = train_recognizer(labels16, base="english_g2", max_minutes=3, out=tmp_path / "crnn-ft", progress=events.append,
                           recipe={**FAST, "batch_size": 8, "lr": 1e-3, "max_steps": 40, "val_every_steps": 20})
    manifest = json.loads((out / "inkscribe.json").read_text())
    assert set(manifest["alphabet_added"]) == {"≥", "→"}
    assert any("added to the alphabet" in e.get("message", "") for e in events)
    assert manifest["metrics"]["val_cer"] < manifest["metrics"]["base_val_cer"]
    assert manifest["metrics"]["val_cer"] <= 0.1
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "config.json", "inkscribe.json", "charlm.json"}
    # one page: nothing held out to choose the decoder on, so the measured defaults are kept
    assert manifest["decoding"]["beam"] == 8 and "val_cer_greedy" not in manifest["decoding"]


def test_crnn_decoder_is_chosen_on_held_out_pages(tmp_path):
    from core.recognize.charlm import words_of
    from core.recognize.crnn import load_crnn_dir

    labels = write_labels(tmp_path / "two-pages", [LINES16[:8], LINES16[8:]])
    out = train_recognizer(labels, base="default", max_minutes=3, out=tmp_path / "crnn-lm",
                           recipe={**FAST, "batch_size": 8, "max_steps": 6, "val_every_steps": 3})
    manifest = json.loads((out / "inkscribe.json").read_text())
    assert manifest["trained_on"]["val_pages"] == 1
    decoding = manifest["decoding"]
    assert {"val_cer_greedy", "val_cer_beam", "lm_weight", "char_bonus", "writer_share", "word_bonus"} <= set(decoding)
    assert decoding["beam"] == (8 if decoding["val_cer_beam"] <= decoding["val_cer_greedy"] else 0)  # a tie keeps the beam
    assert manifest["recipe"]["text_prior"] is True
    rec = load_crnn_dir(out)
    assert rec.lm is not None and rec.decoding["beam"] == decoding["beam"]
    # the general-text prior travels with the model, mixed in as chosen on the held-out page
    assert rec.lm.writer_share == decoding["writer_share"]
    assert (rec.lm.prior is not None) == (decoding["writer_share"] < 1.0)
    # the saved character model knows every confirmed line, the held-out page's too
    assert set(rec.lm.counts[""]) >= set("".join(LINES16))
    assert rec.lm.words == words_of(LINES16)  # and their words, for the word bonus


def test_resume_after_stop(tmp_path, labels16):
    base = tiny_trocr_dir(tmp_path / "tiny-base")
    out = tmp_path / "resumed"
    recipe = {**FAST, "lr": 3e-3, "batch_size": 16, "max_steps": 30, "val_every_steps": 1000}
    calls = {"n": 0}

    def stop_after_10() -> bool:
        calls["n"] += 1
        return calls["n"] > 10

    with pytest.raises(CancelledError, match="resume"):
        train_recognizer(labels16, base=str(base), max_minutes=2, out=out, should_stop=stop_after_10, recipe=recipe)
    assert not out.exists() and (tmp_path / "resumed.work" / "checkpoint.pt").is_file()
    events: list[dict] = []
    train_recognizer(labels16, base=str(base), max_minutes=2, out=out, progress=events.append, recipe=recipe)
    assert any("resumed from step 10" in e.get("message", "") for e in events)
    assert json.loads((out / "inkscribe.json").read_text())["metrics"]["steps"] == 30
    assert not (tmp_path / "resumed.work").exists()
    with pytest.raises(ModelError, match="never overwritten"):
        train_recognizer(labels16, base=str(base), max_minutes=1, out=out, recipe=recipe)


def test_a_budget_too_short_to_train_says_so(tmp_path, labels16):
    """Loading and the base's validation can use a tiny budget up: the user is told, the base is saved."""
    base = tiny_trocr_dir(tmp_path / "tiny-base")
    events: list[dict] = []
    out = train_recognizer(labels16, base=str(base), max_minutes=0.001, out=tmp_path / "short",
                           progress=events.append, recipe=FAST)
    metrics = json.loads((out / "inkscribe.json").read_text())["metrics"]
    assert metrics["steps"] == 0 and metrics["stopped"] == "time, before the first step"
    assert any("before the first training step" in e.get("message", "") for e in events)


def test_bad_labels_are_explained(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(BadInputError, match="no usable pages"):
        train_recognizer(empty, max_minutes=1, out=tmp_path / "m1")
    with pytest.raises(BadInputError, match="no such labels file"):
        train_recognizer(tmp_path / "missing.jsonl", max_minutes=1, out=tmp_path / "m2")

    blank = write_labels(tmp_path / "blank", [["a", "b"]])
    rows = [json.loads(r) for r in blank.read_text().splitlines()]
    for ln in rows[0]["lines"]:
        ln["text"] = " "
    blank.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(BadInputError, match="2 empty transcriptions"):
        train_recognizer(blank, max_minutes=1, out=tmp_path / "m3")

    broken = write_labels(tmp_path / "broken", [["abc", "def"]])
    (tmp_path / "broken" / "pages" / "p0.png").write_bytes(b"not an image")
    with pytest.raises(BadInputError, match="2 unreadable crops"):
        train_recognizer(broken, max_minutes=1, out=tmp_path / "m4")

    gone = write_labels(tmp_path / "gone", [["abc"]])
    (tmp_path / "gone" / "pages" / "p0.png").unlink()
    with pytest.raises(BadInputError, match="missing"):
        train_recognizer(gone, max_minutes=1, out=tmp_path / "m5")
    with pytest.raises(ModelError, match="unknown recognizer"):
        train_recognizer(broken, base="nope", max_minutes=1, out=tmp_path / "m6")


def test_rows_left_out_of_the_labels_are_named_in_the_training_log(tmp_path):
    labels = write_labels(tmp_path / "labels", [["abc", "def"], ["ghi", "jkl"]])
    labels.write_text(labels.read_text() + "{not json\n" + json.dumps({"page": "pages/gone.png", "lines": []}) + "\n")
    data = load_samples(labels, "train", 0.5, None, 0)
    assert len(data.problems) == 2 and "line 3" in data.problems[0] and "gone.png is missing" in data.problems[1]
    events: list[dict] = []
    train_recognizer(labels, base="english_g2", max_minutes=1, out=tmp_path / "m", progress=events.append,
                     recipe={"augment": 0, "batch_size": 4, "max_steps": 1, "val_every_steps": 1})
    said = [e["message"] for e in events if e.get("message", "").startswith("labels: ")]
    assert said == [f"labels: {p}" for p in data.problems]
