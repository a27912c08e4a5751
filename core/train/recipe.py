"""The training recipe every network starts from, and the learning-rate schedule.

Each network's own overrides (english_g2 freezes its first convs, TrOCR wants a smaller learning
rate) are in its entry of `core.recognize.networks`; `recipe=` overrides any key for one run.
Defaults measured on the notes: docs/decisions/0005-recognition-rejected.md.
"""

from __future__ import annotations

import math

RECIPE = {
    "lr": 1e-3,
    "weight_decay": 0.01,
    "warmup": 0.05,  # share of the time budget
    "batch_size": 16,
    "img_height": None,  # None: the base model's own height (the table's input height for a network as shipped)
    "augment": 1.0,  # strength of preprocess.augment, 0 = off
    "freeze_convs": 0,  # leading conv layers kept frozen (english_g2's entry freezes 3)
    "grad_clip": 5.0,
    "patience": 6,  # validations without improvement before stopping early
    "rehearse": 0,  # lines of the base's own training data mixed in (self-training: 150; core.train.rehearsal)
    "keep": "best",  # the weights a run keeps: the "best" validated, or the "last" (no early stop; decision 0010)
    "val_lines": 200,  # validation is capped so it stays a small share of the budget
    "min_steps_per_val": 40,
    "max_steps": None,  # optional step cap (tests, reproducible runs); the time budget still applies
    "val_every_steps": None,  # validate every N steps instead of every budget/6 seconds
    "text_prior": True,  # mix a general-English character model into the writer's (share chosen on validation)
    "cut_alphabet": False,  # drop output rows of CJK characters the training text does not use (crnn.cut_alphabet)
}


def default_recipe(resolved: str) -> dict:
    """The measured defaults for fine-tuning this base: RECIPE with its network's overrides."""
    from core.recognize.registry import base_network

    return {**RECIPE, **base_network(resolved).recipe}


def lr_at(frac: float, recipe: dict) -> float:
    """Linear warm-up over the first `warmup` share of the run, then cosine decay to 2 % of `lr`."""
    warm = float(recipe["warmup"])
    if frac < warm:
        return recipe["lr"] * max(0.05, frac / warm)
    t = min(1.0, (frac - warm) / max(1e-6, 1 - warm))
    return recipe["lr"] * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))
