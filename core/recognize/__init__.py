"""Recognize: line crops in, text and a confidence per line out.

One `Recognizer` protocol; engines subclass `BaseRecognizer` (which sorts by width, batches
and guards against empty crops) and implement `_predict`. `load_recognizer` turns a name, a
hub id or a model directory into an engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from PIL import Image

from core.errors import ModelError
from core.modeldir import is_model_dir, read_manifest


@dataclass
class Recognition:
    text: str
    confidence: float


@runtime_checkable
class Recognizer(Protocol):
    name: str

    def recognize(self, crops: Sequence[Image.Image]) -> list[Recognition]: ...


class BaseRecognizer:
    """Width-sorted batching (less padding), order restored; engines implement `_predict`."""

    name = "base"
    batch_size = 16

    def _predict(self, crops: Sequence[Image.Image]) -> list[Recognition]:
        raise NotImplementedError

    def recognize(self, crops: Sequence[Image.Image]) -> list[Recognition]:
        results: list[Recognition | None] = [None] * len(crops)
        usable = []
        for i, crop in enumerate(crops):
            if crop is None or crop.width < 2 or crop.height < 2:
                results[i] = Recognition("", 0.0)
            else:
                usable.append(i)
        usable.sort(key=lambda i: crops[i].width / max(1, crops[i].height))
        for start in range(0, len(usable), self.batch_size):
            idx = usable[start : start + self.batch_size]
            for i, rec in zip(idx, self._predict([crops[i] for i in idx]), strict=True):
                results[i] = rec
        return [r if r is not None else Recognition("", 0.0) for r in results]


def resolve_recognizer_spec(spec: str | None) -> str:
    """'default' → the offline default engine this install ships."""
    from core.recognize.registry import resolve

    return resolve(spec or "default")


def load_recognizer(spec: str | None = "default") -> Recognizer:
    from core.recognize.registry import load

    return load(spec or "default")


def describe_model(path: str | Path) -> dict:
    """The manifest of a recognizer model directory, checked for kind."""
    if not is_model_dir(path):
        raise ModelError(f"{path}: not an Inkscribe model directory")
    manifest = read_manifest(path)
    if manifest.get("kind") != "recognizer":
        raise ModelError(f"{path}: this model is a {manifest.get('kind')}, not a recognizer")
    return manifest
