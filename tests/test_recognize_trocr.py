"""TrOCR engine with a tiny model built from configs (no hub): save → load → generate."""

from __future__ import annotations

import pytest

from core.errors import ModelError
from core.recognize import load_recognizer, registry
from core.recognize.trocr import TrOCRRecognizer, load_trocr, max_tokens_for, trim_loops
from tests.tiny_models import render_line, tiny_trocr, tiny_trocr_dir


def test_save_load_generate(tmp_path):
    dest = tiny_trocr_dir(tmp_path / "tiny")
    assert (dest / "inkscribe.json").is_file() and (dest / "model.safetensors").is_file()
    registry.clear_cache()
    rec = load_recognizer(str(dest))
    assert isinstance(rec, TrOCRRecognizer)
    crops = [render_line("hello"), render_line("a much longer line of text"), render_line("x")]
    out = rec.recognize(crops)
    assert len(out) == 3
    assert all(0.0 <= r.confidence <= 1.0 for r in out)
    # Random weights babble; the width budget still bounds every line.
    for crop, r in zip(crops, out, strict=True):
        assert len(r.text) <= max_tokens_for(crop.width, crop.height, 10_000)
    again = load_trocr(dest).recognize(crops)
    assert [r.text for r in again] == [r.text for r in out]


def test_generation_budget_follows_width():
    assert max_tokens_for(40, 40, 500) == 7
    assert max_tokens_for(4000, 40, 120) == 120
    assert max_tokens_for(400, 40, 500) > max_tokens_for(100, 40, 500)


def test_loop_guard():
    assert trim_loops("abcabcabcabcabc") == "abc"
    assert trim_loops("the the cat") == "the the cat"
    assert trim_loops("-----") == "-----"


def test_confidence_is_high_for_a_confident_model(tmp_path):
    """A model whose decoder always emits </s> reads '' with confidence 0 (nothing read)."""
    import torch

    model, processor = tiny_trocr()
    with torch.no_grad():
        model.decoder.output_projection.weight.zero_()
        model.decoder.output_projection.bias = None
    rec = TrOCRRecognizer(model, processor)
    out = rec.recognize([render_line("abc")])
    assert 0.0 <= out[0].confidence <= 1.0


def test_hub_id_offline_is_a_clear_error():
    with pytest.raises(ModelError, match="not cached here"):
        registry._load_uncached("inkscribe-test/not-a-real-model")


def test_int8_is_opt_in_and_survives_save_load(tmp_path):
    import json

    import torch

    model, processor = tiny_trocr()
    crops = [render_line("hello"), render_line("int8")]
    rec = TrOCRRecognizer(model, processor, name="q", int8=True)
    out = rec.recognize(crops)
    assert len(out) == 2 and all(0.0 <= r.confidence <= 1.0 for r in out)
    assert rec._int8_model is not None and rec._int8_model is not rec.model
    assert isinstance(rec.model.decoder.output_projection, torch.nn.Linear)  # the float model is kept for saving
    (tmp_path / "q").mkdir()
    rec.save(tmp_path / "q")
    assert json.loads((tmp_path / "q" / "inkscribe_generation.json").read_text())["int8"] is True
    assert load_trocr(tmp_path / "q").int8 is True
