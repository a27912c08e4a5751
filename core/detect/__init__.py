"""Detect: find text lines on a page image.

One `Detector` protocol; engines subclass `BaseDetector` and implement `_predict` for a batch
of pages. `load_detector` turns a name or a model directory into an engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from PIL import Image

from core.errors import ModelError
from core.geometry import bbox, clip_points, overlap_share
from core.modeldir import is_model_dir, read_manifest
from core.settings import SHIPPED_MODELS, get_settings
from core.types import Line


@runtime_checkable
class Detector(Protocol):
    name: str

    def detect(self, images: Sequence[Image.Image]) -> list[list[Line]]: ...


class BaseDetector:
    """Batching and clean-up shared by every engine; engines implement `_predict`."""

    name = "base"
    batch_size = 1
    min_height = 6.0
    min_width = 6.0

    def _predict(self, images: Sequence[Image.Image]) -> list[list[Line]]:
        raise NotImplementedError

    def detect(self, images: Sequence[Image.Image]) -> list[list[Line]]:
        out: list[list[Line]] = []
        for start in range(0, len(images), self.batch_size):
            batch = images[start : start + self.batch_size]
            for img, lines in zip(batch, self._predict(batch), strict=True):
                out.append(self._clean(img, lines))
        return out

    def _clean(self, img: Image.Image, lines: list[Line]) -> list[Line]:
        kept = []
        for line in lines:
            line.points = clip_points(line.points, img.width, img.height)
            x0, y0, x1, y1 = bbox(line.points)
            if x1 - x0 >= self.min_width and y1 - y0 >= self.min_height:
                kept.append(line)
        return drop_nested(kept)


NESTED_SHARE = 0.7


def drop_nested(lines: list[Line], share: float = NESTED_SHARE) -> list[Line]:
    """Drop boxes lying mostly (≥ `share` of their area) inside a larger box.

    Such a box is a fragment of that line (a word found on its own): reading both prints its
    words twice. On the notes' eval pages, the fine-tuned detector drew 36 such boxes among
    824, 29 of them false (docs/decisions/0007-detector.md).
    """
    def inside(a: Line, b: Line) -> bool:
        return overlap_share(a.points, b.points) >= share and overlap_share(b.points, a.points) < share

    return [a for a in lines if not any(b is not a and inside(a, b) for b in lines)]


DETECTOR_ALIASES = {"classical": "classical", "ink": "classical"}
SHIPPED_DETECTOR = SHIPPED_MODELS / "detector-yolo"


def available_detectors() -> list[str]:
    names = ["default", "classical"]
    if is_model_dir(SHIPPED_DETECTOR):
        names.insert(1, "yolo")
    return names


def resolve_detector_spec(spec: str | None) -> str:
    """Map 'default' to the `detector` setting, or else the best engine this install has."""
    spec = (spec or "default").strip()
    if spec == "default":
        configured = (get_settings().default_detector or "default").strip()
        if configured != "default":
            return resolve_detector_spec(configured)
        return str(SHIPPED_DETECTOR) if is_model_dir(SHIPPED_DETECTOR) else "classical"
    if spec == "yolo":
        return str(SHIPPED_DETECTOR)
    return spec


def load_detector(spec: str | None = "default") -> Detector:
    resolved = resolve_detector_spec(spec)
    if DETECTOR_ALIASES.get(resolved) == "classical":
        from core.detect.classical import ClassicalDetector

        return ClassicalDetector()
    path = Path(resolved)
    if not path.exists():
        raise ModelError(f"unknown detector {spec!r}: use one of {', '.join(available_detectors())} or a model directory")
    manifest = read_manifest(path)
    if manifest.get("kind") != "detector":
        raise ModelError(f"{path}: this model is a {manifest.get('kind')}, not a detector")
    engine = manifest.get("engine")
    if engine == "yolo":
        from core.detect.yolo import YoloDetector

        return YoloDetector(path, manifest)
    if engine == "classical":
        from core.detect.classical import ClassicalDetector

        return ClassicalDetector(**manifest.get("params", {}))
    raise ModelError(f"{path}: unknown detector engine {engine!r}")
