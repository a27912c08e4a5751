"""What an engine family must provide to be fine-tuned: the trainer's side of the seam.

The trainer owns the time budget, the loop, validation and checkpoints; an `Adapter` owns
everything that depends on the network: its trainable parameters, how a batch becomes a loss
(`loss`, the training step), how the weights read (`recognizer`, the validation step), how
they are saved, and what happens after the last step (`finish_seconds`, `fit_decoder`). One
adapter per engine family (`adapter_for`); a new family adds its adapter there.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.train.data import DataSplit, Sample

Progress = Callable[[dict], None]


class Adapter(ABC):
    """One base model being fine-tuned. Built as `Adapter(resolved, recipe, train_texts, device)`: the
    resolved base spec, the run's recipe, the training lines' texts (to grow an alphabet) and the device."""

    family: str  # the engine family written into the manifest ("ctc", "encoder-decoder")
    loss_name: str  # for the manifest's recipe
    model: Any  # the torch module being trained, on `device`
    added: list[str]  # characters this run made learnable (its alphabet grew)
    recipe: dict

    def params(self) -> list:
        """The parameters the optimizer updates (frozen layers excluded)."""
        return [p for p in self.model.parameters() if p.requires_grad]

    @abstractmethod
    def unknown_chars(self, texts: list[str]) -> list[str]:
        """Characters of `texts` the model cannot produce (dropped from targets, told to the user)."""

    @abstractmethod
    def train_mode(self) -> None:
        """Put the model in training mode (after validation put it in eval mode)."""

    @abstractmethod
    def batches(self, samples: list[Sample], rng: random.Random) -> list[list[int]]:
        """One epoch of batches, as indices into `samples`."""

    @abstractmethod
    def loss(self, samples: list[Sample], rng: random.Random):
        """The training step's loss (a scalar tensor) on `samples`, augmented with `rng`."""

    @abstractmethod
    def recognizer(self, name: str = "training"):
        """A recognizer reading with the current weights, for validation (best path, no writer's model)."""

    @abstractmethod
    def save(self, folder: Path, state: dict) -> None:
        """Write the engine's files for weights `state` into `folder` (inside `write_model_dir`)."""

    @abstractmethod
    def finish_seconds(self, data: DataSplit, val: list[Sample], read_seconds: float) -> float:
        """Seconds the run needs after its last step, given that reading `val` once takes `read_seconds`."""

    @abstractmethod
    def fit_decoder(self, data: DataSplit, val: list[Sample], state: dict, tune: bool, deadline: float | None,
                    report: Progress) -> None:
        """Fit what reads beside the network (the writer's character model) for weights `state`; `tune`:
        choose its settings on `val`, until `deadline` (a `time.monotonic()` value)."""

    @abstractmethod
    def describe(self) -> dict:
        """Manifest entries of this family (alphabet, input height, decoding)."""


def adapter_for(family: str) -> type[Adapter]:
    """The adapter class of an engine family."""
    from core.train.ctc import CTCAdapter
    from core.train.encoder_decoder import EncoderDecoderAdapter

    adapters: dict[str, type[Adapter]] = {CTCAdapter.family: CTCAdapter,
                                          EncoderDecoderAdapter.family: EncoderDecoderAdapter}
    return adapters[family]
