"""The CTC engine (family "ctc"; model dirs written before the rename say "crnn"): every network
of that family in `core.recognize.networks`, one decoder and one file format.

Two ways to build a network, by the table's `graph`:
- "easyocr-vgg": EasyOCR's english_g2 (VGG features + 2 BiLSTMs), EasyOCR's own class
  (`easyocr.model.vgg_model.Model`, "generation2") with the weights its package ships;
- "ppocr-onnx": the PP-OCR SVTR networks, converted from the ONNX files their packages ship
  (`core.recognize.ppocr`).

We load their weights, decode, and save/load fine-tuned copies as self-contained model dirs
(`model.safetensors` + `config.json` + `inkscribe.json`; `config.json` names the network). Index 0
of the output is the CTC blank; index i > 0 is `alphabet[i - 1]`. The module keeps its historical
name (`crnn`): the family is what manifests record, and the name is imported across tests and benches.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ModelError
from core.recognize import BaseRecognizer, Recognition, ppocr
from core.recognize.charlm import LM_FILE, CharNgramLM, ctc_beam_search
from core.recognize.networks import CTC, Network, names, network
from core.recognize.ppocr import PPOCR_GRAPH, is_ppocr
from core.recognize.preprocess import MAX_WIDTH, prepare, to_batch

ENGINE = CTC
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
NETWORK = {"input_channel": 1, "output_channel": 256, "hidden_size": 256}  # english_g2's VGG + BiLSTM shape
ENGLISH_G2 = "english_g2"  # what config.json files written before `pretrained` existed were trained from
EASYOCR_GRAPH = "easyocr-vgg"
# Beam search with the writer's character model (mixed with the general-text prior): defaults for a
# fine-tune with no page to hold out; otherwise it re-chooses all three on its own validation pages.
DEFAULT_DECODING = {"beam": 8, "lm_weight": 0.3, "char_bonus": 1.5, "lm_order": 5, "writer_share": 0.7,
                    "word_bonus": 0.0}
# english_g2's output alphabet, in order (easyocr.config, 'english_g2' → 'characters').
ENGLISH_G2_ALPHABET = (
    "0123456789!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ €ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
# `cut_alphabet` keeps every character below this code point (CJK starts at U+2E80).
CUT_BELOW = 0x2E80
# New characters start as a copy of a look-alike the base already knows (then fine-tuning
# separates them); characters without a look-alike start from the mean character row.
LOOKALIKES = {
    "→": "-", "←": "-", "⇒": "=", "↓": "l", "↑": "l", "—": "-", "–": "-", "…": ".", "•": ".",
    "·": ".", "●": ".", "×": "x", "，": ",", "：": ":", "。": ".", "（": "(", "）": ")", "；": ";",
    "？": "?", "“": '"', "”": '"', "‘": "'", "’": "'", "′": "'", "α": "a", "β": "B", "γ": "y",
    "π": "n", "ρ": "p", "ω": "w", "≥": "2", "≤": "<", "≠": "=", "±": "+", "√": "J", "²": "2",
    "₁": "1", "₃": "3", "①": "1", "②": "2", "③": "3", "④": "4", "⑤": "5", "⑥": "6", "□": "0",
    "°": "o", "¬": "-", "∑": "E", "∈": "e", "∂": "d", "é": "e", "è": "e", "à": "a", "ó": "o",
    "ü": "u", "ö": "o", "ä": "a", "ç": "c", "ñ": "n", "一": "-",
}


def ctc_network(name: str) -> Network:
    """The table's entry of a CTC-family network."""
    entry = network(name)
    if entry.family != CTC:
        raise ModelError(f"unknown CTC network {name!r} (known: {', '.join(names(CTC))})")
    return entry


def build_network(num_class: int, name: str = ENGLISH_G2):
    """A network `name` with `num_class` outputs (blank included), for loading a state dict into:
    english_g2-shaped and untrained, or a PP-OCR network with its shipped weights and a head of
    `num_class` outputs (its own, or zeros when a fine-tune cut or grew the alphabet)."""
    if ctc_network(name).graph != EASYOCR_GRAPH:
        import torch

        model, alphabet = load_pretrained(name)
        if num_class != len(alphabet) + 1:
            weight, _ = model.output_layer()
            model.set_output_layer(torch.zeros(weight.shape[0], num_class), torch.zeros(num_class))
        return model
    try:
        from easyocr.model.vgg_model import Model
    except ImportError as exc:
        raise ModelError("the CRNN engine needs the package easyocr (pip install easyocr)") from exc
    return Model(num_class=num_class, **NETWORK)


def load_english_g2():
    """(network, alphabet) for the off-the-shelf english_g2 weights, in eval mode."""
    import torch

    entry = ctc_network(ENGLISH_G2)
    state = torch.load(entry.package_file(entry.weights), map_location="cpu", weights_only=True)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = build_network(state["Prediction.weight"].shape[0])
    model.load_state_dict(state)
    model.eval()
    return model, ENGLISH_G2_ALPHABET


def load_pretrained(name: str):
    """(network in eval mode, alphabet) for a CTC network of the table, with its shipped weights."""
    graph = ctc_network(name).graph
    if graph == PPOCR_GRAPH:
        return ppocr.build_network(name)
    if graph == EASYOCR_GRAPH:
        return load_english_g2()
    raise ModelError(f"the CTC engine cannot build a {graph!r} network ({name})")


def pretrained_of(resolved: str) -> str:
    """Which table network a resolved CTC spec (a built-in name or a model dir) started from."""
    if resolved in names(CTC):
        return resolved
    try:
        return json.loads((Path(resolved) / CONFIG_FILE).read_text(encoding="utf-8")).get("pretrained", ENGLISH_G2)
    except (OSError, json.JSONDecodeError, AttributeError):
        return ENGLISH_G2


def network_of(model) -> str:
    return model.architecture if is_ppocr(model) else ENGLISH_G2


def _head_rows(model):
    """(rows [classes, features], bias [classes]) of the output layer, as views of its parameters."""
    if is_ppocr(model):
        weight, bias = model.output_layer()
        return weight.t(), bias
    return model.Prediction.weight, model.Prediction.bias


def _set_head_rows(model, rows, bias) -> None:
    """Give the output layer these rows (one per class, blank first): a cut or grown alphabet."""
    import torch

    if is_ppocr(model):
        model.set_output_layer(rows.t(), bias)
        return
    layer = torch.nn.Linear(rows.shape[1], rows.shape[0], device=rows.device, dtype=rows.dtype)
    with torch.no_grad():
        layer.weight.copy_(rows)
        layer.bias.copy_(bias)
    model.Prediction = layer


def cut_alphabet(model, alphabet: str, keep: str) -> str:
    """Drop the output rows of characters that are neither in `keep` nor in a script a note-taker
    writes in Latin letters (everything below U+2E80: Latin, Greek, Cyrillic, arrows, maths,
    symbols); returns the new alphabet.

    Why: PP-OCRv5's head has 18,385 outputs, about 17,000 of them CJK: half the network's weights
    and of its file, and a softmax a Latin-script writer never needs. A writer's CJK characters
    stay because they are in `keep` (the training text).
    """
    import torch

    wanted = set(keep)
    kept = [i for i, c in enumerate(alphabet) if ord(c) < CUT_BELOW or c in wanted]
    if len(kept) == len(alphabet):
        return alphabet
    rows, bias = _head_rows(model)
    index = torch.tensor([0] + [i + 1 for i in kept], device=rows.device)
    with torch.no_grad():
        _set_head_rows(model, rows[index], bias[index])  # indexing copies; the new layer owns its rows
    return "".join(alphabet[i] for i in kept)


def extend_alphabet(model, alphabet: str, chars: str) -> tuple[str, list[str]]:
    """Make `chars` missing from `alphabet` learnable; returns (alphabet, added).

    The output layer grows by one row per new character (a PP-OCR network's too; its saved file
    then has the grown head, which `build_network` makes room for). A new row starts as its
    look-alike's row (bias lowered a little so the look-alike still wins before training) or,
    with no look-alike, as the mean character row with the lowest character bias: fine-tuning
    can learn it, and until then it is not emitted by accident.
    """
    import torch

    added = [c for c in dict.fromkeys(chars) if c not in alphabet and c.isprintable() and c != "\n"]
    if not added:
        return alphabet, []
    rows, bias = _head_rows(model)
    with torch.no_grad():
        mean_w = rows[1:].mean(0)
        low_b = bias[1:].min()
        new_rows, new_bias = [], []
        for ch in added:
            twin = LOOKALIKES.get(ch)
            if twin and twin in alphabet:
                src = alphabet.index(twin) + 1
                new_rows.append(rows[src])
                new_bias.append(bias[src] - 1.0)
            else:
                new_rows.append(mean_w)
                new_bias.append(low_b)
        _set_head_rows(model, torch.cat([rows, torch.stack(new_rows)]), torch.cat([bias, torch.stack(new_bias)]))
    return alphabet + "".join(added), added


def best_path(probs: np.ndarray, alphabet: str) -> tuple[str, list[float]]:
    """The best path's characters of one [T, C] probability matrix, each with its peak probability."""
    best = probs.argmax(1)
    peak = probs.max(1)
    chars: list[str] = []
    scores: list[float] = []
    prev = 0
    for t, k in enumerate(best):
        k = int(k)
        if k != 0 and k != prev:
            chars.append(alphabet[k - 1] if k - 1 < len(alphabet) else "")
            scores.append(float(peak[t]))
        elif k != 0 and k == prev:
            scores[-1] = max(scores[-1], float(peak[t]))
        prev = k
    return "".join(chars), scores


def ctc_greedy(probs: np.ndarray, alphabet: str, length: int | None = None) -> tuple[str, float]:
    """Best-path decode of one [T, C] probability matrix → (text, confidence).

    Confidence is the MEAN over emitted characters of each character's peak probability. Mean,
    not min: 1 - mean tracks the expected share of wrong characters, so it ranks lines for
    review by how much there is to fix; min flags every long line for its single weakest
    character. An empty reading gets 0.0 so a box with nothing read is always reviewed.
    """
    text, scores = best_path(probs[:length] if length is not None else probs, alphabet)
    return text.strip(), (float(np.mean(scores)) if scores and text.strip() else 0.0)


class CRNNRecognizer(BaseRecognizer):
    """CTC recognizer over any network of the family (the table's `read_batch` lines per forward pass);
    crops go through `preprocess.prepare`. The network is moved to `device` (None: the `device`
    setting) when built."""

    def __init__(self, model, alphabet: str, img_height: int | None = None, name: str = "crnn",
                 max_width: int = MAX_WIDTH, lm: CharNgramLM | None = None, decoding: dict | None = None,
                 device: str | None = None):
        self.model = self.place(model, device).eval()
        entry = ctc_network(network_of(model))
        self.batch_size = entry.read_batch
        self.alphabet = alphabet
        self.img_height = img_height or entry.input_height  # a fine-tune may have trained at another
        self.max_width = max_width
        self.name = name
        self.lm = lm  # the writer's character model: beam search with it instead of best path
        self.decoding = {**DEFAULT_DECODING, **(decoding or {})}

    def _predict(self, crops: Sequence) -> list[Recognition]:
        return [self.decode(frames) for frames in self.frame_probs(crops)]

    def frame_probs(self, crops: Sequence) -> list[np.ndarray]:
        """Per-line [frames, classes] probabilities over the unpadded part of each crop (one batch), as
        CPU numpy arrays whatever device the network runs on."""
        import torch

        arrays = [prepare(c, self.img_height, self.max_width) for c in crops]
        batch, widths = to_batch(arrays)
        with torch.inference_mode(), self.autocast():
            logits = self.model(torch.from_numpy(batch).to(self.device), None)
            probs = logits.float().softmax(2).cpu().numpy()
        return [probs[i][: frames_for_width(w, probs.shape[1], batch.shape[3])] for i, w in enumerate(widths)]

    def all_frame_probs(self, crops: Sequence) -> list[np.ndarray]:
        """`frame_probs` over any number of crops, batched by width as `recognize` is, in the given order."""
        return self.batched(crops, self.frame_probs)

    def decode(self, frames: np.ndarray, decoding: dict | None = None) -> Recognition:
        """Best path, or beam search with the writer's character model when there is one."""
        opts = decoding or self.decoding
        text, conf = ctc_greedy(frames, self.alphabet)
        if self.lm is not None and int(opts.get("beam", 0)) > 1 and text:
            # confidence stays the best path's: it says how clearly the glyphs read
            text = ctc_beam_search(frames, self.alphabet, self.lm, float(opts["lm_weight"]),
                                   float(opts["char_bonus"]), int(opts["beam"]),
                                   word_bonus=float(opts.get("word_bonus", 0.0)))
        return Recognition(text, conf)

    def config(self) -> dict:
        entry = ctc_network(network_of(self.model))
        architecture = entry.architecture
        if entry.graph == PPOCR_GRAPH:
            architecture = f"{entry.title} rec ({architecture}), converted by onnx2torch from {entry.requirement}"
        return {"engine": ENGINE, "pretrained": entry.name, "alphabet": self.alphabet, "img_height": self.img_height,
                "max_width": self.max_width, "num_class": len(self.alphabet) + 1, "architecture": architecture,
                **({"network": NETWORK} if entry.graph == EASYOCR_GRAPH else {}),
                "decoding": self.decoding if self.lm is not None else {"beam": 0}}

    def save(self, folder: str | Path) -> None:
        """Write weights + config into an existing folder (used inside `write_model_dir`)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        state = {k: v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE))
        (folder / CONFIG_FILE).write_text(json.dumps(self.config(), indent=2, ensure_ascii=False))
        if self.lm is not None:
            self.lm.save(folder)


LM_WEIGHTS = (0.2, 0.3, 0.4, 0.5, 0.6)
CHAR_BONUSES = (1.0, 1.5, 2.0)
WRITER_SHARES = (1.0, 0.7, 0.4)  # of the writer's model, against the general-text prior (when lm has one)
WORD_BONUSES = (1.0, 2.0, 3.0)  # tried once the grid's best setting is known (0 = no word list)


def decoding_grid(with_prior: bool) -> list[tuple[float, float, float]]:
    """The (writer_share, lm_weight, char_bonus) settings `tune_decoding` beam-decodes with, every share in
    turn: a choice cut short by its deadline has weighed the general-text prior too, not the writer's model
    alone (which, learned from one subject's pages, misreads the others)."""
    shares = WRITER_SHARES if with_prior else (1.0,)
    return [(share, w, b) for w in LM_WEIGHTS for b in CHAR_BONUSES for share in shares]


def tune_decoding(rec: CRNNRecognizer, crops: Sequence, refs: Sequence[str], lm: CharNgramLM,
                  deadline: float | None = None) -> dict:
    """Choose how much beam search trusts `lm` (and its prior), on held-out lines never in `lm`.

    Returns the decoding settings with `val_cer_greedy`, `val_cer_beam` and every setting's CER
    (`tried`); `beam` is 0 when the best path reads these lines better beyond their noise
    (`beam_loses`). The word bonus is swept after the grid, at its best setting (a full cross would
    take four times as long). Past `deadline` (a `time.monotonic()` value) no further setting is
    tried: a time-boxed training run ends on time on a slower machine too (`settings_skipped`
    counts what was left).
    """
    from core.metrics import cer

    saved = rec.lm
    tried: dict[tuple[float, float, float, float], float] = {}
    readings: dict[tuple[float, float, float, float] | None, list[str]] = {}  # None: the best path's
    try:
        frames = rec.all_frame_probs(crops)

        def score(opts: dict, key: tuple[float, float, float, float] | None = None) -> float:
            readings[key] = [rec.decode(f, opts).text for f in frames]
            return round(cer(list(refs), readings[key]), 4)

        greedy = score({"beam": 0})
        grid = decoding_grid(lm.prior is not None)
        planned = len(grid) + (len(WORD_BONUSES) if lm.words else 0)

        def out_of_time() -> bool:
            return bool(tried) and deadline is not None and time.monotonic() >= deadline

        mixed: dict[float, CharNgramLM] = {}  # one mixed model per share: its probability cache serves every w, b
        for share, w, b in grid:
            if out_of_time():
                break
            if share not in mixed:
                mixed[share] = lm.with_prior(lm.prior, share)
            rec.lm = mixed[share]
            tried[(share, w, b, 0.0)] = score({**DEFAULT_DECODING, "lm_weight": w, "char_bonus": b}, (share, w, b, 0.0))
        (share, w, b, _), _ = min(tried.items(), key=lambda kv: kv[1])
        rec.lm = mixed[share]  # warm: the grid already decoded with it
        for bonus in WORD_BONUSES if lm.words else ():
            if out_of_time():
                break
            tried[(share, w, b, bonus)] = score({**DEFAULT_DECODING, "lm_weight": w, "char_bonus": b,
                                                 "word_bonus": bonus}, (share, w, b, bonus))
    finally:
        rec.lm = saved
    (share, w, b, bonus), best = min(tried.items(), key=lambda kv: kv[1])  # ties: the first, no bonus
    loses = beam_loses(refs, readings[None], readings[(share, w, b, bonus)])
    return {**DEFAULT_DECODING, "beam": 0 if loses else DEFAULT_DECODING["beam"], "lm_weight": w,
            "char_bonus": b, "writer_share": share, "word_bonus": bonus, "val_cer_greedy": greedy,
            "val_cer_beam": best, "settings_skipped": planned - len(tried),
            "tried": [{"writer_share": k[0], "lm_weight": k[1], "char_bonus": k[2], "word_bonus": k[3], "cer": v}
                      for k, v in tried.items()]}


def beam_loses(refs: Sequence[str], best_path: Sequence[str], beam: Sequence[str]) -> bool:
    """Whether beam search reads these lines worse than the best path beyond their noise: its extra
    edits per line average more than two standard errors. On every measured run the beam read new
    pages better; twice a loss on one validation page (a tie, then 0.004 on 82 lines) dropped it and
    cost new pages 0.01 of CER, so only a loss the lines bear out drops it."""
    from core.metrics import char_edits

    extra = [char_edits(r, b) - char_edits(r, g) for r, g, b in zip(refs, best_path, beam, strict=True)]
    if sum(extra) <= 0:
        return False
    if len(extra) < 2:
        return True
    return statistics.fmean(extra) > 2 * statistics.stdev(extra) / math.sqrt(len(extra))


def fit_character_model(rec: CRNNRecognizer | None, train_texts: Sequence[str], held_out_texts: Sequence[str],
                        tune_on: Sequence[tuple[Any, str]] = (), prior: CharNgramLM | None = None,
                        deadline: float | None = None) -> tuple[CharNgramLM, dict]:
    """The writer's character model for `rec` and how to decode with it.

    Settings are chosen on `tune_on` (held-out crops and their texts) with a model of the
    training lines only, so the choice is honest; without them (or without `rec`) the defaults
    hold. The returned model then counts every line, training and held-out.
    """
    order = int(DEFAULT_DECODING["lm_order"])
    decoding = dict(DEFAULT_DECODING)
    if rec is not None and tune_on:
        lm = CharNgramLM.train(train_texts, order).with_prior(prior, 1.0)
        decoding = tune_decoding(rec, [c for c, _ in tune_on], [t for _, t in tune_on], lm, deadline)
    if prior is None:
        decoding["writer_share"] = 1.0
    lm = CharNgramLM.train([*train_texts, *held_out_texts], order).with_prior(prior, float(decoding["writer_share"]))
    return lm, decoding


def frames_for_width(width: int, frames: int, padded_width: int) -> int:
    """How many output frames cover the unpadded part of a crop (the rest reads padding)."""
    return max(1, min(frames, int(np.ceil(frames * width / max(1, padded_width))) + 1))


def load_crnn_dir(path: str | Path, name: str | None = None, device: str | None = None) -> CRNNRecognizer:
    """A CRNN model directory written by `CRNNRecognizer.save` (inside write_model_dir), on `device`
    (None: the `device` setting)."""
    from safetensors.torch import load_file

    path = Path(path)
    try:
        cfg = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
        state = load_file(str(path / WEIGHTS_FILE))
    except (OSError, json.JSONDecodeError, ValueError) as exc:
        raise ModelError(f"{path}: CRNN model files are missing or unreadable ({exc.__class__.__name__})") from exc
    alphabet = cfg["alphabet"]
    model = build_network(len(alphabet) + 1, cfg.get("pretrained", ENGLISH_G2))
    try:
        model.load_state_dict(state)
        model.eval()
    except RuntimeError as exc:
        raise ModelError(f"{path}: weights do not match config.json's alphabet") from exc
    try:
        lm = CharNgramLM.load(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}: {LM_FILE} is unreadable ({exc.__class__.__name__})") from exc
    height = int(cfg["img_height"]) if cfg.get("img_height") else None
    return CRNNRecognizer(model, alphabet, height, name or path.name,
                          int(cfg.get("max_width", MAX_WIDTH)), lm, cfg.get("decoding"), device)


def pretrained_recognizer(name: str = ENGLISH_G2, device: str | None = None) -> CRNNRecognizer:
    """A table network as it ships (best-path decoding: no writer's character model yet), on `device`."""
    model, alphabet = load_pretrained(name)
    return CRNNRecognizer(model, alphabet, name=name, device=device)
