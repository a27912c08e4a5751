"""Fine-tuning an encoder-decoder network (TrOCR): cross-entropy on the text's tokens."""

from __future__ import annotations

import copy
import random
from pathlib import Path

from core.recognize.networks import ENCODER_DECODER
from core.train.adapter import Adapter, Progress
from core.train.data import DataSplit, Sample


class EncoderDecoderAdapter(Adapter):
    """Cross-entropy fine-tuning of a VisionEncoderDecoder (TrOCR) model, from a hub id or a model dir."""

    family = ENCODER_DECODER
    loss_name = "cross-entropy"

    def __init__(self, resolved: str, recipe: dict, train_texts: list[str], device: str = "cpu"):
        from core.recognize.trocr import load_trocr

        base = load_trocr(resolved, device=device)
        self.device = device
        self.model, self.processor = base.model, base.processor
        self.base_settings = (base.no_repeat_ngram_size, base.chars_per_height, base.num_beams)
        self.recipe = recipe
        self.added: list[str] = []  # the tokenizer's vocabulary is fixed
        self.unk = self.processor.tokenizer.unk_token_id
        dec = self.model.config.decoder
        self.max_len = int(getattr(dec, "max_position_embeddings", 512) or 512) - 2

    def unknown_chars(self, texts: list[str]) -> list[str]:
        tok = self.processor.tokenizer
        if self.unk is None:
            return []
        return sorted(c for c in {c for t in texts for c in t}
                      if c.strip() and self.unk in tok(c, add_special_tokens=False).input_ids)

    def train_mode(self) -> None:
        self.model.train()

    def batches(self, samples: list[Sample], rng: random.Random) -> list[list[int]]:
        idx = list(range(len(samples)))
        rng.shuffle(idx)
        bs = int(self.recipe["batch_size"])
        return [idx[i : i + bs] for i in range(0, len(idx), bs)]

    def loss(self, samples: list[Sample], rng: random.Random):
        from core.recognize.preprocess import augment

        strength = float(self.recipe.get("augment", 0))
        images = [(augment(s.crop, rng, strength) if strength else s.crop).convert("RGB") for s in samples]
        pixels = self.processor(images=images, return_tensors="pt").pixel_values
        tok = self.processor.tokenizer
        enc = tok([s.text for s in samples], padding=True, truncation=True, max_length=self.max_len,
                  return_tensors="pt")
        labels = enc.input_ids.masked_fill(enc.attention_mask == 0, -100)
        return self.model(pixel_values=pixels.to(self.device), labels=labels.to(self.device)).loss

    def recognizer(self, name: str = "training"):
        from core.recognize.trocr import TrOCRRecognizer

        nr, cph, beams = self.base_settings
        return TrOCRRecognizer(self.model, self.processor, name, nr, cph, beams, device=self.device)

    def save(self, folder: Path, state: dict) -> None:
        from core.recognize.trocr import TrOCRRecognizer

        model = copy.deepcopy(self.model).cpu()
        model.load_state_dict(state)
        nr, cph, beams = self.base_settings
        TrOCRRecognizer(model, self.processor, folder.name, nr, cph, beams, device="cpu").save(folder)

    def finish_seconds(self, data: DataSplit, val: list[Sample], read_seconds: float) -> float:
        """Seconds the run needs after its last step: validating the last weights."""
        return read_seconds

    def fit_decoder(self, data: DataSplit, val: list[Sample], state: dict, tune: bool = True,
                    deadline: float | None = None, report: Progress = lambda _d: None) -> None:
        """Nothing to fit: the decoder is part of the network and was trained with it."""

    def describe(self) -> dict:
        return {}
