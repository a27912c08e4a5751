"""The `device` setting (INKSCRIBE_DEVICE) is honoured by every recognizer engine and both trainers.

This machine has no GPU: 'auto' must choose the CPU, an explicit 'cpu' is kept, and asking for CUDA,
MPS or a word that is no device fails with one sentence (an InkscribeError the CLI prints, never a
torch traceback) before any work. What runs on a GPU cannot be run here; these tests pin the choice.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.device import (
    DeviceError,
    autocast,
    mixed_precision,
    present_devices,
    resolve_device,
    to_cpu,
    ultralytics_device,
)
from core.errors import InkscribeError
from core.settings import reset_settings, torch_device
from tests.tiny_models import LINES16, render_line, tiny_trocr, tiny_trocr_dir, write_labels

pytestmark = pytest.mark.skipif(present_devices() != ["cpu"], reason="these checks describe a CPU-only machine")
ABSENT = ["cuda", "cuda:1", "mps", "bogus"]
HERE = ["auto", "cpu"]


def use_device(monkeypatch, value: str) -> None:
    monkeypatch.setenv("INKSCRIBE_DEVICE", value)
    reset_settings()


def assert_one_sentence(exc: BaseException, word: str) -> None:
    text = str(exc)
    assert isinstance(exc, InkscribeError) and word in text and "this machine has cpu" in text
    assert "\n" not in text and ". " not in text.rstrip("."), text


@pytest.fixture(scope="module")
def labels16(tmp_path_factory) -> Path:
    return write_labels(tmp_path_factory.mktemp("lines16"), [LINES16])


@pytest.fixture(scope="module")
def networks():
    """(name, network, alphabet): an english_g2-shaped CRNN (untrained) and PP-OCRv6 tiny (1.1 M params)."""
    from core.recognize import crnn, ppocr

    alphabet = "abcdefghijklmnopqrstuvwxyz "
    tiny, tiny_alphabet = ppocr.build_network("ppocrv6_tiny")
    return [("english_g2", crnn.build_network(len(alphabet) + 1), alphabet), ("ppocrv6_tiny", tiny, tiny_alphabet)]


# ---------------------------------------------------------------- resolving


@pytest.mark.parametrize("setting", HERE)
def test_auto_and_cpu_resolve_to_the_cpu_here(monkeypatch, setting):
    use_device(monkeypatch, setting)
    assert resolve_device() == torch_device() == "cpu"
    assert resolve_device(f" {setting.upper()} ") == "cpu"  # the setting is read loosely


def test_the_default_setting_is_auto(monkeypatch):
    monkeypatch.delenv("INKSCRIBE_DEVICE", raising=False)
    reset_settings()
    assert resolve_device() == "cpu"


@pytest.mark.parametrize("setting", ABSENT)
def test_absent_or_unknown_devices_are_one_sentence_errors(monkeypatch, setting):
    use_device(monkeypatch, setting)
    for resolve in (resolve_device, torch_device):
        with pytest.raises(DeviceError) as info:
            resolve()
        assert_one_sentence(info.value, repr(setting))


def test_autocast_is_a_no_op_on_the_cpu():
    import torch

    a = torch.randn(4, 4)
    with autocast("cpu"):
        assert not torch.is_autocast_enabled("cpu") and not torch.is_autocast_enabled("cuda")
        assert (a @ a).dtype == torch.float32
    assert [mixed_precision(d) for d in ("cpu", "mps", "cuda", "cuda:1")] == ["no", "no", "fp16", "fp16"]
    assert [ultralytics_device(d) for d in ("cpu", "mps", "cuda", "cuda:1")] == ["cpu", "mps", "0", "1"]


def test_cpu_copies_keep_a_state_dict_loadable():
    import torch

    layer = torch.nn.BatchNorm1d(3)
    state = to_cpu(layer.state_dict())
    assert type(state) is type(layer.state_dict()) and state._metadata == layer.state_dict()._metadata
    assert to_cpu({"a": [torch.ones(2)], "n": 3})["n"] == 3
    torch.nn.BatchNorm1d(3).load_state_dict(state)


# ---------------------------------------------------------------- recognizers


def _on(model) -> set[str]:
    return {str(p.device) for p in model.parameters()} | {str(b.device) for b in model.buffers()}


@pytest.mark.parametrize("setting", HERE)
def test_crnn_engines_read_on_the_setting_device(monkeypatch, networks, setting):
    from core.recognize.crnn import CRNNRecognizer

    use_device(monkeypatch, setting)
    for name, model, alphabet in networks:
        rec = CRNNRecognizer(model, alphabet, name=name)
        assert rec.device == "cpu" and _on(rec.model) == {"cpu"}, name
        frames = rec.frame_probs([render_line("merge sort"), render_line("heap")])
        assert all(isinstance(f, np.ndarray) and f.dtype == np.float32 for f in frames)
        assert len(rec.recognize([render_line("stack frame")])) == 1


@pytest.mark.parametrize("setting", ABSENT)
def test_crnn_engine_refuses_an_absent_device(monkeypatch, networks, setting):
    from core.recognize.crnn import CRNNRecognizer

    use_device(monkeypatch, setting)
    name, model, alphabet = networks[0]
    with pytest.raises(DeviceError) as info:
        CRNNRecognizer(model, alphabet, name=name)
    assert_one_sentence(info.value, repr(setting))
    assert CRNNRecognizer(model, alphabet, device="cpu").device == "cpu"  # an explicit device wins (trainers)


@pytest.mark.parametrize("setting", HERE)
def test_trocr_reads_on_the_setting_device(monkeypatch, setting):
    from core.recognize.trocr import TrOCRRecognizer

    use_device(monkeypatch, setting)
    model, processor = tiny_trocr()
    rec = TrOCRRecognizer(model, processor)
    assert rec.device == "cpu" and _on(rec.model) == {"cpu"}
    out = rec.recognize([render_line("hash map")])
    assert len(out) == 1 and 0.0 <= out[0].confidence <= 1.0


@pytest.mark.parametrize("setting", ABSENT)
def test_loading_a_recognizer_refuses_an_absent_device(monkeypatch, tmp_path, setting):
    from core.recognize import load_recognizer, registry

    base = tiny_trocr_dir(tmp_path / "tiny")
    use_device(monkeypatch, setting)
    registry.clear_cache()
    try:
        with pytest.raises(DeviceError) as info:
            load_recognizer(str(base))
    finally:
        registry.clear_cache()
    assert_one_sentence(info.value, repr(setting))


# ---------------------------------------------------------------- trainers


@pytest.mark.parametrize(("base", "setting"), [("trocr", "auto"), ("english_g2", "cpu")])
def test_recognizer_trainer_trains_on_the_resolved_device(monkeypatch, tmp_path, labels16, base, setting):
    import core.train.loop as loop
    import core.train_recognizer as tr

    use_device(monkeypatch, setting)
    base = str(tiny_trocr_dir(tmp_path / "tiny")) if base == "trocr" else base
    seen: set[str] = set()
    step = loop.optimizer_step

    def spy(adapter, *args):
        seen.update(_on(adapter.model))
        return step(adapter, *args)

    monkeypatch.setattr(loop, "optimizer_step", spy)
    events: list[dict] = []
    out = tr.train_recognizer(labels16, base=base, max_minutes=2, out=tmp_path / "ft", progress=events.append,
                              recipe={"augment": 0, "max_steps": 2, "val_every_steps": 1, "batch_size": 8})
    assert seen == {"cpu"}
    assert json.loads((out / "inkscribe.json").read_text())["device"] == {"trainer": "cpu", "mixed_precision": "no"}
    assert any(e.get("message") == "training on cpu, full precision" for e in events)


@pytest.mark.parametrize("setting", ABSENT)
def test_both_trainers_refuse_an_absent_device_before_any_work(monkeypatch, tmp_path, labels16, setting):
    from core.train_detector import train_detector
    from core.train_recognizer import train_recognizer

    use_device(monkeypatch, setting)
    for train in (train_recognizer, train_detector):
        out = tmp_path / f"{train.__name__}-out"
        with pytest.raises(DeviceError) as info:
            train(labels16, base="english_g2" if train is train_recognizer else "scratch", max_minutes=1, out=out)
        assert_one_sentence(info.value, repr(setting))
        assert not out.exists() and not (tmp_path / f"{out.name}.work").exists()


def test_ctc_training_on_mps_falls_back_to_the_cpu(monkeypatch):
    """torch has no MPS kernel for CTC loss: CRNN fine-tunes train on the CPU and say so; TrOCR keeps MPS."""
    import core.train_recognizer as tr

    monkeypatch.setattr(tr, "resolve_device", lambda preference=None: "mps")
    said: list[dict] = []
    assert tr.training_device("crnn", None, said.append) == "cpu"
    assert "no MPS kernel for CTC loss" in said[0]["message"]
    assert tr.training_device("trocr", None, said.append) == "mps" and len(said) == 1


def test_snapshots_are_cpu_copies():
    import torch

    from core.train.checkpoint import snapshot

    layer = torch.nn.Linear(2, 2)
    snap = snapshot(layer)
    with torch.no_grad():
        layer.weight.add_(1.0)
    assert all(v.device.type == "cpu" for v in snap.values())
    assert not torch.equal(snap["weight"], layer.weight)  # a copy, not a view of the training weights


# ---------------------------------------------------------------- detector


def test_yolo_reads_on_the_setting_device_and_keeps_mps_pages_on_the_cpu(monkeypatch, tmp_path):
    import core.detect.yolo as yolo

    (tmp_path / "weights.pt").write_bytes(b"not loaded by this test")
    manifest = {"kind": "detector", "engine": "yolo", "name": "d"}
    use_device(monkeypatch, "auto")
    assert yolo.YoloDetector(tmp_path, manifest).device == "cpu"
    use_device(monkeypatch, "cuda")
    with pytest.raises(DeviceError):
        yolo.YoloDetector(tmp_path, manifest)
    monkeypatch.setattr(yolo, "resolve_device", lambda preference=None: "mps")
    assert yolo.reading_device() == "cpu"  # ultralytics' MPS detection is unreliable (see reading_device)
