"""Fine-tune a recognizer on corrected lines (labels.jsonl) so it learns one person's hand.

One loop for both engines (CRNN + CTC, TrOCR + cross-entropy), each behind a small adapter.
Crops are cut with `core.geometry.crop_line`, exactly as at inference. Validation uses whole
held-out PAGES (lines of one page look alike, so a line split would flatter the score). The
schedule is time-based (warm-up, then cosine decay to the end of `max_minutes`) because the
user gives a time budget, not an epoch count. The best-validating weights become a new,
self-contained model directory (written atomically, never over an existing one); a checkpoint
in `<out>.work/` lets an interrupted run resume where it stopped.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import BadInputError, CancelledError, ModelError

# Defaults measured on the notes (docs/RECOGNITION.md); `recipe=` overrides any of them.
CRNN_RECIPE = {
    "lr": 1e-3,  # with 3 frozen convs: eval CER 0.141 vs 0.171 (5e-4, nothing frozen) at 250 lines / 5 min
    "weight_decay": 0.01,
    "warmup": 0.05,  # share of the time budget
    "batch_size": 16,
    "img_height": None,  # None: the base model's own height (48 for english_g2)
    "augment": 1.0,  # strength of preprocess.augment, 0 = off
    "freeze_convs": 3,  # leading conv layers kept frozen: stroke detectors; ~1.6x more steps per minute
    "grad_clip": 5.0,
    "patience": 6,  # validations without improvement before stopping early
    "val_lines": 200,  # validation is capped so it stays a small share of the budget
    "min_steps_per_val": 40,
    "max_steps": None,  # optional step cap (tests, reproducible runs); the time budget still applies
    "val_every_steps": None,  # validate every N steps instead of every budget/6 seconds
    "text_prior": True,  # mix a general-English character model into the writer's (share chosen on validation)
    "cut_alphabet": False,  # drop output rows of CJK characters the training text does not use (crnn.cut_alphabet)
}
# PP-OCR networks train every layer: measured with nothing frozen (docs/RECOGNITION.md).
PPOCR_RECIPE = {**CRNN_RECIPE, "freeze_convs": 0}
TROCR_RECIPE = {**CRNN_RECIPE, "lr": 5e-5, "batch_size": 8, "freeze_convs": 0}

# The time after the last step is estimated from a few lines; the estimate fell short by 20-30 %
# (a 5-minute run took 308 s, an all-lines 15-minute run 914 s), so it is set aside with this margin.
FINISH_MARGIN = 1.3
# What the run keeps for writing the model directory after the decoder's choice, which stops
# trying settings when the budget is this close to its end (on a slower machine than estimated:
# stop 18's 500- and 1,000-line runs took 927 and 936 s of their 900).
SAVE_SECONDS = 5.0

Progress = Callable[[dict], None]


@dataclass
class Sample:
    crop: object  # PIL image, RGB as cut from the page
    text: str
    page: str


@dataclass
class DataSplit:
    train: list[Sample]
    val: list[Sample]
    train_pages: int
    val_pages: int
    skipped_empty: int = 0
    skipped_unreadable: int = 0
    problems: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- data


def load_samples(labels: str | Path, split: str, val_fraction: float, limit_lines: int | None, seed: int) -> DataSplit:
    """Train/val samples from a labels file; validation pages are held out whole."""
    from core.geometry import crop_line
    from core.ingest import load_image
    from core.labels import read_labels

    pages = sorted(read_labels(labels, split=split), key=lambda p: str(p.image_path))
    problems = list(getattr(pages, "problems", []))
    rng = random.Random(seed)
    order = list(pages)
    rng.shuffle(order)
    n_val = 0
    if len(order) >= 2 and val_fraction > 0:
        n_val = min(len(order) - 1, max(1, round(val_fraction * len(order))))
    val_pages, train_pages = order[:n_val], order[n_val:]
    empty = unreadable = 0

    def cut(page_list) -> list[Sample]:
        nonlocal empty, unreadable
        out: list[Sample] = []
        for page in page_list:
            try:
                rgb = load_image(page.image_path)  # the same size limits and colour handling as any input
            except BadInputError as exc:
                unreadable += len(page.lines)
                problems.append(str(exc))
                continue
            for line in page.lines:
                text = line.text.strip()
                if not text:
                    empty += 1
                    continue
                try:
                    crop = crop_line(rgb, line.points)
                except ValueError:
                    unreadable += 1
                    continue
                if crop.width < 2 or crop.height < 2:
                    unreadable += 1
                    continue
                out.append(Sample(crop, text, page.image_path.name))
        return out

    train = cut(train_pages)
    if limit_lines:
        train = train[:limit_lines]  # pages are already in seeded random order
    val = cut(val_pages)
    if not train:
        raise BadInputError(
            f"{labels}: no trainable lines in split {split!r} "
            f"({empty} empty transcriptions, {unreadable} unreadable crops)"
        )
    used_pages = len({s.page for s in train})
    if not val:  # a single page: validate on what we train on, and say so
        val = list(train)
        problems.append("only one usable page: validation reuses the training lines")
    return DataSplit(train, val, used_pages, len({s.page for s in val}) if n_val else 0, empty, unreadable, problems)


# ---------------------------------------------------------------- engines


class CRNNAdapter:
    """CTC fine-tuning of a CRNN-engine network (english_g2, PP-OCRv5 or PP-OCRv4)."""

    engine = "crnn"

    def __init__(self, resolved: str, recipe: dict, train_texts: list[str]):
        import torch

        from core.recognize import crnn
        from core.recognize.preprocess import DEFAULT_HEIGHT

        if resolved in crnn.PRETRAINED:
            model, alphabet = crnn.load_pretrained(resolved)
            base_height = DEFAULT_HEIGHT
        else:
            base = crnn.load_crnn_dir(resolved)
            model, alphabet, base_height = base.model, base.alphabet, base.img_height
        chars = "".join(sorted(set("".join(train_texts))))
        if recipe.get("cut_alphabet"):
            alphabet = crnn.cut_alphabet(model, alphabet, chars)
        self.alphabet, self.added = crnn.extend_alphabet(model, alphabet, chars)
        self.model = model
        self.recipe = recipe
        self.height = int(recipe.get("img_height") or base_height)
        self.index = {c: i + 1 for i, c in enumerate(self.alphabet)}
        self.ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
        self.frozen = self._freeze(int(recipe.get("freeze_convs", 0)))
        self.lm = None  # the writer's character model, built by fit_decoder once training is done
        self.decoding: dict = {"beam": 0}
        self._timing_lm = None  # a character model to time beam search with (`finish_seconds`)
        self._lm_seconds = 0.0

    def _freeze(self, n_convs: int):
        """Freeze the first n conv layers (and what lies between): they see strokes, not letters."""
        import torch

        if n_convs <= 0:
            return None
        if not hasattr(self.model, "FeatureExtraction"):  # PP-OCR: autograd stops at the first trainable layer
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

    def params(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def train_mode(self):
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
        x = torch.from_numpy(batch)
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
        log_probs = logits.log_softmax(2).permute(1, 0, 2)
        targets = [[self.index[c] for c in s.text if c in self.index] for s in samples]
        in_lens = torch.tensor([frames_for_width(w, frames, batch.shape[3]) for w in widths], dtype=torch.long)
        tgt_lens = torch.tensor([len(t) for t in targets], dtype=torch.long)
        flat = torch.tensor([i for t in targets for i in t], dtype=torch.long)
        return self.ctc(log_probs, flat, in_lens, tgt_lens)

    def recognizer(self, name: str = "training"):
        from core.recognize.crnn import CRNNRecognizer

        rec = CRNNRecognizer(self.model, self.alphabet, self.height, name)
        return rec

    def save(self, folder: Path, state: dict) -> None:
        model = copy.deepcopy(self.model)
        model.load_state_dict(state)
        from core.recognize.crnn import CRNNRecognizer

        CRNNRecognizer(model, self.alphabet, self.height, folder.name, lm=self.lm, decoding=self.decoding).save(folder)

    def fit_decoder(self, data: DataSplit, val: list[Sample], state: dict, tune: bool = True,
                    deadline: float | None = None) -> None:
        """Build the writer's character model (with the text prior) and choose how much beam search
        trusts each, on the validation pages (`fit_character_model`), trying settings until `deadline`."""
        from core.recognize.charlm import text_prior
        from core.recognize.crnn import CRNNRecognizer, fit_character_model

        prior = text_prior() if self.recipe.get("text_prior", True) else None
        rec = None
        if data.val_pages and tune:  # real held-out pages: tune on them (a stop request skips this)
            model = copy.deepcopy(self.model)
            model.load_state_dict(state)
            rec = CRNNRecognizer(model.eval(), self.alphabet, self.height)
        self.lm, self.decoding = fit_character_model(
            rec, [s.text for s in data.train], [s.text for s in data.val], [(s.crop, s.text) for s in val], prior,
            None if deadline is None else deadline - self._lm_seconds)  # the final model is built after the choice
        self.decoding.pop("tried", None)

    def finish_seconds(self, data: DataSplit, val: list[Sample], read_seconds: float) -> float:
        """Seconds the run needs after its last step: validating the last weights, reading `val` once
        more and beam-decoding it once per decoder setting tried. The decoding is timed here on a few
        lines with the network as it is now (the base decodes ~4x slower than a trained network:
        its flat outputs keep more beams alive), so the trainer asks again at every validation."""
        from core.recognize.charlm import CharNgramLM, text_prior
        from core.recognize.crnn import DEFAULT_DECODING, WORD_BONUSES, decoding_grid

        if not (data.val_pages and val):
            return read_seconds
        if self._timing_lm is None:
            started = time.monotonic()
            prior = text_prior() if self.recipe.get("text_prior", True) else None
            self._timing_lm = CharNgramLM.train([s.text for s in data.train], int(DEFAULT_DECODING["lm_order"]))
            self._timing_lm = self._timing_lm.with_prior(prior, float(DEFAULT_DECODING["writer_share"]))
            self._lm_seconds = time.monotonic() - started  # the decoder's choice builds two such models
        grid = decoding_grid(self._timing_lm.prior is not None)
        shares = len({share for share, _, _ in grid})  # the word-bonus sweep reuses its share's (warm) model
        settings = len(grid) + len(WORD_BONUSES)
        rec = self.recognizer()
        # A fresh copy has a cold probability cache, as the first pass of each share has in `tune_decoding`.
        rec.lm = self._timing_lm.with_prior(self._timing_lm.prior, self._timing_lm.writer_share)
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

    def describe(self) -> dict:
        return {"alphabet_added": self.added, "alphabet_size": len(self.alphabet), "img_height": self.height,
                "decoding": self.decoding}


class TrOCRAdapter:
    """Cross-entropy fine-tuning of a VisionEncoderDecoder (TrOCR) model."""

    engine = "trocr"

    def __init__(self, resolved: str, recipe: dict, train_texts: list[str]):
        from core.recognize.trocr import load_trocr

        base = load_trocr(resolved)
        self.model, self.processor = base.model, base.processor
        self.base_settings = (base.no_repeat_ngram_size, base.chars_per_height, base.num_beams)
        self.recipe = recipe
        self.added: list[str] = []
        tok = self.processor.tokenizer
        self.unk = tok.unk_token_id
        dec = self.model.config.decoder
        self.max_len = int(getattr(dec, "max_position_embeddings", 512) or 512) - 2

    def unknown_chars(self, texts: list[str]) -> list[str]:
        tok = self.processor.tokenizer
        if self.unk is None:
            return []
        return sorted(c for c in {c for t in texts for c in t} if c.strip() and self.unk in tok(c, add_special_tokens=False).input_ids)

    def params(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def train_mode(self):
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
        return self.model(pixel_values=pixels, labels=labels).loss

    def recognizer(self, name: str = "training"):
        from core.recognize.trocr import TrOCRRecognizer

        nr, cph, beams = self.base_settings
        return TrOCRRecognizer(self.model, self.processor, name, nr, cph, beams)

    def save(self, folder: Path, state: dict) -> None:
        from core.recognize.trocr import TrOCRRecognizer

        model = copy.deepcopy(self.model)
        model.load_state_dict(state)
        nr, cph, beams = self.base_settings
        TrOCRRecognizer(model, self.processor, folder.name, nr, cph, beams).save(folder)

    def finish_seconds(self, data: DataSplit, val: list[Sample], read_seconds: float) -> float:
        """Seconds the run needs after its last step: validating the last weights."""
        return read_seconds

    def describe(self) -> dict:
        return {}


# ---------------------------------------------------------------- loop


def _val_cer(adapter, val: list[Sample]) -> float:
    from core.metrics import cer

    rec = adapter.recognizer()
    hyps = [r.text for r in rec.recognize([s.crop for s in val])]
    adapter.train_mode()
    return round(cer([s.text for s in val], hyps), 4)


def _snapshot(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _save_checkpoint(path: Path, payload: dict) -> None:
    """Atomic: a crash mid-write leaves the previous checkpoint intact."""
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _lr_at(frac: float, recipe: dict) -> float:
    warm = float(recipe["warmup"])
    if frac < warm:
        return recipe["lr"] * max(0.05, frac / warm)
    t = min(1.0, (frac - warm) / max(1e-6, 1 - warm))
    return recipe["lr"] * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


def default_recipe(resolved: str, engine: str) -> dict:
    """The measured defaults for fine-tuning this base (TrOCR, english_g2 or a PP-OCR network)."""
    if engine == "trocr":
        return TROCR_RECIPE
    from core.recognize.crnn import PPOCR_NETWORKS, pretrained_of

    return PPOCR_RECIPE if pretrained_of(resolved) in PPOCR_NETWORKS else CRNN_RECIPE


def validation_lines(data: DataSplit, cap: int, seed: int) -> list[Sample]:
    """The validation lines a run scores: all held-out lines, or a seeded sample of `cap`."""
    return data.val if len(data.val) <= cap else random.Random(seed).sample(data.val, cap)


def train_recognizer(
    labels: str | Path,
    split: str = "train",
    base: str = "default",
    max_minutes: float = 15,
    out: str | Path | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = True,
    val_fraction: float = 0.1,
    limit_lines: int | None = None,
    seed: int = 0,
    recipe: dict | None = None,
    threads: int | None = None,
) -> Path:
    """Fine-tune `base` on `labels` (split `split`) for at most `max_minutes`; returns the new model dir.

    `should_stop()` ends training early: the best weights so far are saved as usual (if no
    validation has happened yet, CancelledError is raised and the checkpoint kept for resume).
    """
    t0 = time.monotonic()  # the budget covers the whole call, loading torch included
    import torch

    from core.modeldir import next_version_dir, write_model_dir
    from core.recognize.registry import engine_of, resolve
    from core.settings import configure_process, get_settings

    configure_process(threads=threads)
    report = progress or (lambda _d: None)
    stop = should_stop or (lambda: False)
    if max_minutes <= 0:
        raise BadInputError("max_minutes must be positive")
    resolved = resolve(base)
    engine = engine_of(resolved)
    out = Path(out) if out else next_version_dir(get_settings().models_dir, "recognizer")
    out = out.expanduser().resolve()
    if out.exists():
        raise ModelError(f"{out}: a model already exists there; models are never overwritten")
    if Path(resolved).is_absolute() and Path(resolved) == out:
        raise ModelError("the output directory must differ from the base model")
    work = out.parent / f"{out.name}.work"
    ckpt_path = work / "checkpoint.pt"

    report({"message": "cutting line crops"})
    data = load_samples(labels, split, val_fraction, limit_lines, seed)
    rec = {**default_recipe(resolved, engine), **(recipe or {})}
    val = validation_lines(data, int(rec["val_lines"]), seed)
    torch.manual_seed(seed)
    adapter = (TrOCRAdapter if engine == "trocr" else CRNNAdapter)(resolved, rec, [s.text for s in data.train])
    not_learnable = adapter.unknown_chars([s.text for s in data.train + data.val])
    report({"message": f"{len(data.train)} training lines on {data.train_pages} pages, {len(val)} validation lines"
            f" on {data.val_pages} pages; skipped {data.skipped_empty} empty and {data.skipped_unreadable} unreadable"})
    if adapter.added:
        report({"message": f"characters added to the alphabet: {''.join(adapter.added)}"})
    if not_learnable:
        report({"message": f"characters the model cannot produce (outside its alphabet; dropped from targets): "
                        f"{''.join(not_learnable)}"})

    optim = torch.optim.AdamW(adapter.params(), lr=rec["lr"], weight_decay=rec["weight_decay"])
    signature = {"labels": str(Path(labels).resolve()), "split": split, "base": resolved, "limit_lines": limit_lines,
                 "seed": seed, "val_fraction": val_fraction, "recipe": rec, "alphabet_added": adapter.added}
    state = {"step": 0, "epoch": 0, "elapsed": 0.0, "elapsed_steps": 0.0, "best_cer": None, "base_cer": None,
             "bad_vals": 0, "history": []}
    best_state = None
    if resume and ckpt_path.is_file():
        try:
            ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a corrupt checkpoint is only a lost head start
            ck = None
        if ck and ck.get("signature") == json.loads(json.dumps(signature)):
            adapter.model.load_state_dict(ck["model"])
            optim.load_state_dict(ck["optim"])
            state.update(ck["state"])
            best_state = ck.get("best")
            report({"message": f"resumed from step {state['step']} ({state['elapsed']:.0f} s trained)"})
        else:
            report({"message": "checkpoint is from different settings; starting over"})
    elif not resume and work.exists():
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)

    budget = max_minutes * 60.0
    adapter.train_mode()
    if state["base_cer"] is None:
        started = time.monotonic()
        state["base_cer"] = _val_cer(adapter, val)
        state["val_seconds"] = round(time.monotonic() - started, 2)
        report({"message": f"base model: validation CER {state['base_cer']:.3f}", "val_cer": state["base_cer"],
                "step": 0})
        if best_state is None:
            best_state, state["best_cer"] = _snapshot(adapter.model), state["base_cer"]

    def checkpoint() -> None:
        _save_checkpoint(ckpt_path, {"signature": signature, "model": adapter.model.state_dict(),
                                     "optim": optim.state_dict(), "state": state, "best": best_state})

    # The budget covers the whole run: what comes after the last step (final validation, the
    # decoder's choice) is set aside, at most half of what is left. A resumed run gets what was
    # left of its budget.
    budget_end = t0 + budget - state["elapsed"]
    loop_start = time.monotonic()
    elapsed_before = state["elapsed"]

    def set_aside() -> tuple[float, float, float]:
        """(seconds set aside, the loop's deadline, the loop's whole length): the schedule ends with the loop.

        The estimate gets a margin (FINISH_MARGIN) plus the longest step so far, because a step that
        starts just before the deadline runs past it, and a batch of wide lines takes longer than most.
        """
        left = budget_end - time.monotonic()
        step_s = state.get("longest_step_s", (state["elapsed_steps"] / state["step"]) if state["step"] else 0.0)
        estimate = adapter.finish_seconds(data, val, float(state.get("val_seconds", 0.0)))
        kept = min(FINISH_MARGIN * estimate + step_s, max(0.0, left) / 2)
        end = budget_end - kept if left > 0 else time.monotonic()
        return kept, end, max(1e-6, elapsed_before + end - loop_start)

    reserved, deadline, loop_budget = set_aside()
    val_every = max(20.0, min(180.0, budget / 6))
    last_val = time.monotonic()
    steps_since_val = 0
    stopped_early = cancelled = False
    losses: list[float] = []
    train_rng = random.Random(seed * 1000 + state["step"])
    while True:
        batches = adapter.batches(data.train, train_rng)
        for batch in batches:
            now = time.monotonic()
            elapsed = elapsed_before + (now - loop_start)
            frac = min(1.0, elapsed / loop_budget)
            if rec["max_steps"]:
                frac = max(frac, state["step"] / rec["max_steps"])
            stopping = stop()
            if now >= deadline or stopping or (rec["max_steps"] and state["step"] >= rec["max_steps"]):
                cancelled = stopping and now < deadline
                break
            for g in optim.param_groups:
                g["lr"] = _lr_at(frac, rec)
            loss = adapter.loss([data.train[i] for i in batch], train_rng)
            optim.zero_grad(set_to_none=True)
            if torch.isfinite(loss):
                loss.backward()
                torch.nn.utils.clip_grad_norm_(adapter.params(), rec["grad_clip"])
                optim.step()
                losses.append(float(loss.detach()))
            state["step"] += 1
            step_s = time.monotonic() - now
            state["elapsed_steps"] += step_s
            state["longest_step_s"] = max(state.get("longest_step_s", 0.0), step_s)
            steps_since_val += 1
            # Steps the budget allows at the pace so far: a guess from the first step on, since a short
            # budget on a slow machine may see only a few steps (stop 18: two in a 1-minute job).
            rate = state["step"] / max(1e-6, elapsed)
            total_guess = max(state["step"], int(rate * loop_budget)) if elapsed >= 5 else None
            report({"step": state["step"], "total_steps": total_guess, "epoch": state["epoch"],
                    "loss": round(float(loss.detach()), 4), "eta_s": round(max(0.0, deadline - now) + reserved, 1),
                    "best_val_cer": state["best_cer"]})
            if (steps_since_val >= rec["val_every_steps"] if rec["val_every_steps"] else
                    time.monotonic() - last_val >= val_every and steps_since_val >= rec["min_steps_per_val"]):
                v = _val_cer(adapter, val)
                state["elapsed"] = elapsed_before + (time.monotonic() - loop_start)
                state["history"].append({"step": state["step"], "s": round(state["elapsed"], 1), "val_cer": v,
                                         "loss": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 4)})
                if state["best_cer"] is None or v < state["best_cer"]:
                    state["best_cer"], state["bad_vals"] = v, 0
                    best_state = _snapshot(adapter.model)
                else:
                    state["bad_vals"] += 1
                report({"step": state["step"], "val_cer": v, "best_val_cer": state["best_cer"],
                        "message": f"step {state['step']}: validation CER {v:.3f} (best {state['best_cer']:.3f})"})
                checkpoint()
                reserved, deadline, loop_budget = set_aside()  # decoding gets faster as the network learns
                last_val, steps_since_val = time.monotonic(), 0
                if state["bad_vals"] >= rec["patience"]:
                    stopped_early = True
                    break
        else:
            state["epoch"] += 1
            continue
        break

    loop_end = time.monotonic()
    # Final validation of the last weights (cosine decay usually makes them the best).
    if steps_since_val > 0 and not cancelled:
        v = _val_cer(adapter, val)
        state["history"].append({"step": state["step"], "val_cer": v})
        if v < state["best_cer"]:
            state["best_cer"], best_state = v, _snapshot(adapter.model)
    state["elapsed"] = elapsed_before + (time.monotonic() - loop_start)
    checkpoint()
    if cancelled and not state["history"]:
        raise CancelledError(f"training stopped before the first validation; resume with the same output {out}")

    if state["step"] == 0 and not cancelled:
        report({"message": "the time budget ran out before the first training step (loading the model and reading "
                           "the validation lines used it); the saved model is the base network. Give it more minutes."})
    if hasattr(adapter, "fit_decoder"):
        report({"message": "choosing the decoder on the validation pages"})
        adapter.fit_decoder(data, val, best_state, tune=not cancelled, deadline=budget_end - SAVE_SECONDS)
    manifest = {
        "kind": "recognizer",
        "engine": engine,
        "name": out.name,
        "base": resolved,
        "trained_on": {"labels": str(Path(labels).resolve()), "split": split, "lines": len(data.train),
                       "pages": data.train_pages, "val_lines": len(val), "val_pages": data.val_pages,
                       "skipped_empty": data.skipped_empty, "skipped_unreadable": data.skipped_unreadable,
                       "limit_lines": limit_lines, "seed": seed},
        "metrics": {"val_cer": state["best_cer"], "base_val_cer": state["base_cer"],
                    "train_seconds": round(state["elapsed"], 1), "wall_seconds": round(time.monotonic() - t0, 1),
                    "set_aside_for_finish_s": round(reserved, 1),
                    "finish_s": round(time.monotonic() - loop_end, 1),
                    "steps": state["step"], "epochs": round(state["step"] * rec["batch_size"] / len(data.train), 2),
                    "stopped": "early (no val improvement)" if stopped_early else ("on request" if cancelled else
                                                                                  "time" if state["step"] else
                                                                                  "time, before the first step")},
        "recipe": {**rec, "optimizer": "AdamW", "schedule": "linear warm-up + cosine decay over the time budget",
                   "loss": "CTC" if engine == "crnn" else "cross-entropy", "selection": "best validation CER"},
        "not_learnable": not_learnable,
        "history": state["history"],
        **adapter.describe(),
    }
    path = write_model_dir(out, manifest, lambda tmp: adapter.save(tmp, best_state))
    shutil.rmtree(work, ignore_errors=True)
    report({"message": f"saved {path} (validation CER {state['best_cer']:.3f}, base {state['base_cer']:.3f})",
            "val_cer": state["best_cer"], "best_val_cer": state["best_cer"]})
    return path
