"""PP-OCRv4 recognizer converted from rapidocr-onnxruntime's ONNX: real weights, no network."""

from __future__ import annotations

import json

import pytest

from core.metrics import cer
from core.modeldir import write_model_dir
from core.recognize import crnn, load_recognizer, ppocr, registry, resolve_recognizer_spec
from core.train_recognizer import train_recognizer
from tests.tiny_models import LINES16, render_line, write_labels


@pytest.fixture(scope="module")
def pp():
    return load_recognizer("ppocrv4")


def test_default_is_ppocrv4_and_english_g2_stays_available(pp):
    assert resolve_recognizer_spec("default") == "ppocrv4"
    assert load_recognizer("default") is pp
    assert resolve_recognizer_spec("english_g2") == "english_g2"
    assert {"ppocrv4", "english_g2"} <= set(registry.available())


def test_reads_printed_lines_with_its_shipped_weights(pp):
    texts = ["hello world", "Stack frame 42", "merge sort", "a → b"]
    results = pp.recognize([render_line(t) for t in texts])
    assert cer(texts, [r.text for r in results]) < 0.15
    assert all(0.0 <= r.confidence <= 1.0 for r in results) and results[0].confidence > 0.5
    assert len(pp.alphabet) == 6624 and pp.alphabet[-1] == " " and "→" in pp.alphabet


def test_the_rewrite_keeps_what_the_converted_graph_computes():
    import torch
    from onnx2torch import convert

    raw = convert(ppocr._read_onnx(ppocr.onnx_path())[0]).eval()
    net, _ = ppocr.build_network()
    x = torch.rand(2, 3, 48, 200) * 2 - 1
    with torch.inference_mode():
        expected = raw(x)  # probabilities: the ONNX graph ends in a softmax
        got = net(x[:, :1].clone().expand(-1, 3, -1, -1)).softmax(2)
        assert torch.allclose(net(x).softmax(2), expected, atol=1e-4)
    assert got.shape == expected.shape
    counts = ppocr._simplify(convert(ppocr._read_onnx(ppocr.onnx_path())[0]))
    assert counts["affine_folded"] > 20 and counts["hardswish"] > 20 and counts["made_trainable"] > 20
    weight, bias = net.output_layer()
    assert weight.requires_grad and weight.shape[1] == bias.shape[0] == 6625


def test_a_new_character_takes_over_an_unused_row():
    model, alphabet = crnn.load_pretrained("ppocrv4")
    weight, _ = model.output_layer()
    shape = tuple(weight.shape)
    assert "⑥" not in alphabet
    new_alphabet, added = crnn.extend_alphabet(model, alphabet, "⑥abc")
    assert added == ["⑥"] and len(new_alphabet) == len(alphabet) and tuple(model.output_layer()[0].shape) == shape
    slot = new_alphabet.index("⑥")
    assert not alphabet[slot].isascii()  # a Chinese character gave its row up
    assert new_alphabet[:slot] + new_alphabet[slot + 1:] == alphabet[:slot] + alphabet[slot + 1:]
    six = alphabet.index("6") + 1
    assert (weight[:, slot + 1] == weight[:, six]).all()  # starts as its look-alike's row


def test_save_load_round_trip(tmp_path, pp):
    dest = write_model_dir(tmp_path / "ppcopy", {"kind": "recognizer", "engine": "crnn", "name": "ppcopy"}, pp.save)
    assert json.loads((dest / "config.json").read_text())["pretrained"] == "ppocrv4"
    loaded = load_recognizer(str(dest))
    crops = [render_line("round trip"), render_line("x = 3")]
    assert [r.text for r in loaded.recognize(crops)] == [r.text for r in pp.recognize(crops)]


def test_fine_tune_from_ppocrv4_learns_a_character_it_lacked(tmp_path):
    lines = [t.replace("≥", "⑥") for t in LINES16]
    labels = write_labels(tmp_path / "lines", [lines])
    out = train_recognizer(labels, base="ppocrv4", max_minutes=3, out=tmp_path / "pp-ft",
                           recipe={"augment": 0, "patience": 1000, "batch_size": 8, "max_steps": 24,
                                   "val_every_steps": 12})
    manifest = json.loads((out / "inkscribe.json").read_text())
    assert manifest["alphabet_added"] == ["⑥"] and manifest["recipe"]["freeze_convs"] == 0
    assert manifest["metrics"]["val_cer"] < manifest["metrics"]["base_val_cer"]
    assert json.loads((out / "config.json").read_text())["pretrained"] == "ppocrv4"
    registry.clear_cache()
    rec = load_recognizer(str(out))
    assert "⑥" in rec.alphabet and len(rec.alphabet) == 6624


def test_missing_package_is_explained(monkeypatch):
    from core.errors import ModelError

    monkeypatch.setattr(ppocr.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="rapidocr-onnxruntime"):
        ppocr.onnx_path()
