"""The encoder-decoder engine (family "encoder-decoder"; model dirs written before the rename say
"trocr"): a VisionEncoderDecoderModel + TrOCRProcessor, from a local dir or a hub id.

Generation is bounded by the crop's width (a line cannot hold more characters than its
aspect ratio allows), so a confused decoder cannot run away; loops that still appear are cut
by `trim_loops`. Confidence is the mean per-token probability of the generated tokens, the
same "mean" convention as the CRNN engine.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

from core.errors import ModelError
from core.modeldir import is_model_dir, read_manifest
from core.recognize import BaseRecognizer, Recognition
from core.recognize.networks import ENCODER_DECODER, NETWORKS, family_of

ENGINE = ENCODER_DECODER
TROCR = NETWORKS["trocr"]  # the family's table entry: read batch, recipe, licence
GEN_FILE = "inkscribe_generation.json"
CHARS_PER_HEIGHT = 3.0  # generous: handwriting rarely fits more than ~2 characters per line height
_LOOP = re.compile(r"(.{2,}?)\1{3,}")


def trim_loops(text: str) -> str:
    """Collapse a chunk of 2+ characters repeated 4+ times in a row (a decoder loop) to one copy."""
    return _LOOP.sub(r"\1", text)


def max_tokens_for(width: int, height: int, limit: int, per_height: float = CHARS_PER_HEIGHT) -> int:
    """Token budget for a crop: its width in line-heights × characters per height, plus slack."""
    return int(max(4, min(limit, math.ceil(per_height * width / max(1, height)) + 4)))


def quantize_int8(model):
    """A copy of `model` whose Linear layers run in int8 (dynamic quantisation, CPU only).

    TrOCR's time on a CPU is its Linear layers (attention projections, feed-forward, the
    vocabulary head); int8 weights cut it without retraining. Opt-in per model directory
    (`inkscribe_generation.json`: `"int8": true`): its effect on accuracy must be checked per model.
    """
    import copy

    import torch

    return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)


class TrOCRRecognizer(BaseRecognizer):
    """Generation on `device` (None: the `device` setting); the int8 copy is a CPU-only path."""

    batch_size = TROCR.read_batch

    def __init__(self, model, processor, name: str = "trocr", no_repeat_ngram_size: int = 0,
                 chars_per_height: float = CHARS_PER_HEIGHT, num_beams: int = 1, int8: bool = False,
                 device: str | None = None):
        self.model = self.place(model, device).eval()
        self.int8 = int8
        self._int8_model = None  # built on first use; self.model stays float (training, saving)
        self.processor = processor
        self.name = name
        self.no_repeat_ngram_size = no_repeat_ngram_size
        self.chars_per_height = chars_per_height
        self.num_beams = num_beams

    @property
    def token_limit(self) -> int:
        dec = self.model.config.decoder
        return int(getattr(dec, "max_position_embeddings", 512) or 512) - 2

    def pixel_values(self, crops: Sequence):
        images = [c.convert("RGB") for c in crops]
        return self.processor(images=images, return_tensors="pt").pixel_values

    def _predict(self, crops: Sequence) -> list[Recognition]:
        import torch

        budget = max(max_tokens_for(c.width, c.height, self.token_limit, self.chars_per_height) for c in crops)
        kwargs = {"max_new_tokens": budget, "num_beams": self.num_beams, "do_sample": False,
                  "output_scores": True, "return_dict_in_generate": True, "use_cache": True}
        if self.no_repeat_ngram_size:
            kwargs["no_repeat_ngram_size"] = self.no_repeat_ngram_size
        runner = self.model
        if self.int8 and self.device == "cpu":  # dynamic int8 kernels exist for the CPU only
            if self._int8_model is None:
                self._int8_model = quantize_int8(self.model)
            runner = self._int8_model
        with torch.inference_mode(), self.autocast():
            out = runner.generate(self.pixel_values(crops).to(self.device), **kwargs)
            scores = runner.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        seqs, scores = out.sequences[:, 1:].cpu(), scores.float().cpu()  # drop the decoder start token
        cfg = self.model.generation_config
        stop = {cfg.eos_token_id, cfg.pad_token_id} - {None}
        results = []
        for i in range(seqs.shape[0]):
            # The batch shares the widest crop's budget; each line is held to its own.
            own = max_tokens_for(crops[i].width, crops[i].height, self.token_limit, self.chars_per_height)
            tokens, probs = [], []
            for tok, s in zip(seqs[i].tolist()[:own], scores[i].tolist()[:own], strict=False):
                if tok in stop:
                    break
                tokens.append(tok)
                probs.append(math.exp(s))
            text = self.processor.tokenizer.decode(tokens, skip_special_tokens=True)
            text = trim_loops(text).strip()
            conf = sum(probs) / len(probs) if probs and text else 0.0
            results.append(Recognition(text, float(min(1.0, max(0.0, conf)))))
        return results

    def save(self, folder: str | Path) -> None:
        """save_pretrained-style files (model, processor, tokenizer) into an existing folder.

        The weights go to safetensors, which stores no device: a model saved from a GPU loads on a CPU."""
        folder = Path(folder)
        self.model.save_pretrained(folder)
        self.processor.save_pretrained(folder)
        (folder / GEN_FILE).write_text(json.dumps({
            "no_repeat_ngram_size": self.no_repeat_ngram_size, "chars_per_height": self.chars_per_height,
            "num_beams": self.num_beams, "int8": self.int8}, indent=2))


def load_trocr(spec: str | Path, name: str | None = None, device: str | None = None) -> TrOCRRecognizer:
    """From an Inkscribe model dir, a plain save_pretrained dir, or a hub id (needs network or cache), on
    `device` (None: the `device` setting)."""
    try:
        from transformers import TrOCRProcessor, VisionEncoderDecoderModel
    except ImportError as exc:
        raise ModelError("the TrOCR engine needs the package transformers") from exc
    path = Path(str(spec))
    local = path.is_dir()
    if local and is_model_dir(path) and family_of(read_manifest(path).get("engine")) != ENGINE:
        raise ModelError(f"{path}: not a TrOCR model")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        processor = TrOCRProcessor.from_pretrained(str(spec))
        model = VisionEncoderDecoderModel.from_pretrained(str(spec))
    except (OSError, ValueError) as exc:
        where = "files are missing or unreadable" if local else "is not cached here and cannot be downloaded"
        raise ModelError(f"{spec}: TrOCR model {where} ({exc.__class__.__name__})") from exc
    gen = {}
    if local and (path / GEN_FILE).is_file():
        gen = json.loads((path / GEN_FILE).read_text())
    elif not local:
        gen = {"no_repeat_ngram_size": 3}  # subword hub models: a repeated 3-token run is a loop
    return TrOCRRecognizer(model, processor, name or (path.name if local else str(spec)),
                           int(gen.get("no_repeat_ngram_size", 0)), float(gen.get("chars_per_height", CHARS_PER_HEIGHT)),
                           int(gen.get("num_beams", 1)), bool(gen.get("int8", False)), device)
