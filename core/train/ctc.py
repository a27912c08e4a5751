"""Fine-tuning a CTC-family network (english_g2, the PP-OCR networks): CTC loss over its frames.

The alphabet grows to the writer's characters (`crnn.extend_alphabet`), optionally after cutting
the CJK rows the writer never uses; after training, the writer's character model is fitted and
beam search tuned on the held-out pages (`fit_decoder`).
"""

from __future__ import annotations

import copy
import random
import time
from pathlib import Path

from core.recognize.networks import CTC, names
from core.train.adapter import Adapter, Progress
from core.train.data import DataSplit, Sample


class CTCAdapter(Adapter):
    """CTC fine-tuning of a network of the "ctc" family, as shipped or from a model dir."""

    family = CTC
    loss_name = "CTC"

    def __init__(self, resolved: str, recipe: dict, train_texts: list[str], device: str = "cpu"):
        import torch

        from core.recognize import crnn

        if resolved in names(CTC):
            model, alphabet = crnn.load_pretrained(resolved)
            base_height = None  # the network's own
        else:
            base = crnn.load_crnn_dir(resolved, device="cpu")
            model, alphabet, base_height = base.model, base.alphabet, base.img_height
        self.network = crnn.ctc_network(crnn.network_of(model))
        chars = "".join(sorted(set("".join(train_texts))))
        if recipe.get("cut_alphabet"):
            alphabet = crnn.cut_alphabet(model, alphabet, chars)
        self.alphabet, self.added = crnn.extend_alphabet(model, alphabet, chars)
        self.device = device
        self.model = model.to(device)  # after the head surgery: the grown head moves with the rest
        self.recipe = recipe
        self.height = int(recipe.get("img_height") or base_height or self.network.input_height)
        self.index = {c: i + 1 for i, c in enumerate(self.alphabet)}
        self.ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
        self.frozen = self._freeze(int(recipe.get("freeze_convs", 0)))
        self.lm = None  # the writer's character model, built by fit_decoder once training is done
        self.decoding: dict = {"beam": 0}
        self._timing_lm = None  # a character model to time beam search with (`finish_seconds`)
        self._lm_seconds = 0.0

    def _freeze(self, n_convs: int) -> int | None:
        """Freeze the first n conv layers (and what lies between): they see strokes, not letters. Returns
        how many layers of english_g2's conv stack `loss` runs without gradients (None: no such shortcut)."""
        import torch

        from core.recognize.crnn import EASYOCR_GRAPH

        if n_convs <= 0:
            return None
        if self.network.graph != EASYOCR_GRAPH:  # PP-OCR: autograd stops at the first trainable layer
            for conv in [m for m in self.model.modules() if isinstance(m, torch.nn.Conv2d)][:n_convs]:
                for p in conv.parameters():
                    p.requires_grad_(False)
            return None
        convnet = self.model.FeatureExtraction.ConvNet
        seen, cut = 0, 0
        for i, layer in enumerate(convnet):
            if isinstance(layer, torch.nn.Conv2d):
                seen += 1
                if seen > n_convs:
                    break
            cut = i + 1
        for layer in list(convnet)[:cut]:
            for p in layer.parameters():
                p.requires_grad_(False)
        return cut

    def unknown_chars(self, texts: list[str]) -> list[str]:
        return sorted({c for t in texts for c in t if c not in self.index})

    def train_mode(self) -> None:
        import torch

        self.model.train()
        for m in self.model.modules():  # keep BatchNorm statistics: batches are small and uneven
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()

    def batches(self, samples: list[Sample], rng: random.Random) -> list[list[int]]:
        """Width-bucketed batches (little padding), in random order, jittered each epoch."""
        bs = int(self.recipe["batch_size"])
        keyed = sorted(range(len(samples)),
                       key=lambda i: samples[i].crop.width / samples[i].crop.height * rng.uniform(0.85, 1.15))
        groups = [keyed[i : i + bs] for i in range(0, len(keyed), bs)]
        rng.shuffle(groups)
        return groups

    def loss(self, samples: list[Sample], rng: random.Random):
        import torch

        from core.recognize.crnn import frames_for_width
        from core.recognize.preprocess import augment, prepare, to_batch

        strength = float(self.recipe.get("augment", 0))
        arrays = [prepare(augment(s.crop, rng, strength) if strength else s.crop, self.height) for s in samples]
        batch, widths = to_batch(arrays)
        x = torch.from_numpy(batch).to(self.device)
        if self.frozen:
            convnet = self.model.FeatureExtraction.ConvNet
            with torch.no_grad():
                h = convnet[: self.frozen](x)
            h = convnet[self.frozen :](h)
            feat = self.model.AdaptiveAvgPool(h.permute(0, 3, 1, 2)).squeeze(3)
            logits = self.model.Prediction(self.model.SequenceModeling(feat).contiguous())
        else:
            logits = self.model(x, None)
        frames = logits.shape[1]
        log_probs = logits.float().log_softmax(2).permute(1, 0, 2)  # CTC in float32, also under fp16 autocast
        targets = [[self.index[c] for c in s.text if c in self.index] for s in samples]
        in_lens = torch.tensor([frames_for_width(w, frames, batch.shape[3]) for w in widths], dtype=torch.long)
        tgt_lens = torch.tensor([len(t) for t in targets], dtype=torch.long)
        flat = torch.tensor([i for t in targets for i in t], dtype=torch.long, device=self.device)
        return self.ctc(log_probs, flat, in_lens, tgt_lens)

    def recognizer(self, name: str = "training"):
        from core.recognize.crnn import CRNNRecognizer

        return CRNNRecognizer(self.model, self.alphabet, self.height, name, device=self.device)

    def save(self, folder: Path, state: dict) -> None:
        from core.recognize.crnn import CRNNRecognizer

        model = copy.deepcopy(self.model).cpu()
        model.load_state_dict(state)
        CRNNRecognizer(model, self.alphabet, self.height, folder.name, lm=self.lm, decoding=self.decoding,
                       device="cpu").save(folder)

    def fit_decoder(self, data: DataSplit, val: list[Sample], state: dict, tune: bool = True,
                    deadline: float | None = None, report: Progress = lambda _d: None) -> None:
        """Build the writer's character model (with the text prior) and choose how much beam search
        trusts each, on the validation pages (`fit_character_model`), trying settings until `deadline`."""
        from core.recognize.charlm import text_prior
        from core.recognize.crnn import CRNNRecognizer, fit_character_model

        report({"message": "choosing the decoder on the validation pages"})
        prior = text_prior() if self.recipe.get("text_prior", True) else None
        rec = None
        if data.val_pages and tune:  # real held-out pages: tune on them (a stop request skips this)
            model = copy.deepcopy(self.model)
            model.load_state_dict(state)
            rec = CRNNRecognizer(model.eval(), self.alphabet, self.height, device=self.device)
        self.lm, self.decoding = fit_character_model(
            rec, [s.text for s in data.train], [s.text for s in data.val], [(s.crop, s.text) for s in val], prior,
            None if deadline is None else deadline - self._lm_seconds)  # the final model is built after the choice
        self.decoding.pop("tried", None)

    def finish_seconds(self, data: DataSplit, val: list[Sample], read_seconds: float) -> float:
        """Seconds the run needs after its last step: validating the last weights, reading `val` once
        more and beam-decoding it once per decoder setting tried. The decoding is timed here on a few
        lines with the network as it is now (the base decodes ~4x slower than a trained network:
        its flat outputs keep more beams alive), so the trainer asks again at every validation."""
        from core.recognize.crnn import DEFAULT_DECODING, WORD_BONUSES, decoding_grid

        if not (data.val_pages and val):
            return read_seconds
        timing_lm = self._timing_model(data)
        grid = decoding_grid(timing_lm.prior is not None)
        shares = len({share for share, _, _ in grid})  # the word-bonus sweep reuses its share's (warm) model
        settings = len(grid) + len(WORD_BONUSES)
        rec = self.recognizer()
        # A fresh copy has a cold probability cache, as the first pass of each share has in `tune_decoding`.
        rec.lm = timing_lm.with_prior(timing_lm.prior, timing_lm.writer_share)
        frames = rec.all_frame_probs([s.crop for s in val[:: max(1, len(val) // 16)][:16]])  # spread over pages
        per_line = []
        for _ in ("cold", "warm"):
            started = time.monotonic()
            for f in frames:
                rec.decode(f, DEFAULT_DECODING)
            per_line.append((time.monotonic() - started) / len(frames))
        self.train_mode()
        decoding = len(val) * (shares * per_line[0] + (settings - shares) * per_line[1])
        return 2 * read_seconds + 2 * self._lm_seconds + decoding

    def _timing_model(self, data: DataSplit):
        """A character model like the one `fit_decoder` builds (built once; its build time is kept too)."""
        from core.recognize.charlm import CharNgramLM, text_prior
        from core.recognize.crnn import DEFAULT_DECODING

        if self._timing_lm is None:
            started = time.monotonic()
            prior = text_prior() if self.recipe.get("text_prior", True) else None
            lm = CharNgramLM.train([s.text for s in data.train], int(DEFAULT_DECODING["lm_order"]))
            self._timing_lm = lm.with_prior(prior, float(DEFAULT_DECODING["writer_share"]))
            self._lm_seconds = time.monotonic() - started  # the decoder's choice builds two such models
        return self._timing_lm

    def describe(self) -> dict:
        return {"alphabet_added": self.added, "alphabet_size": len(self.alphabet), "img_height": self.height,
                "decoding": self.decoding}
