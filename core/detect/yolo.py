"""YOLO line detector: an ultralytics model in a model directory (`weights.pt` + manifest).

ultralytics is used fully offline: `ensure_ultralytics_offline()` points its config dir at
ours and puts the font it insists on there (a copy of Liberation Sans named Arial.ttf), so it
never tries to download anything. Any YOLO call sets torch to one thread for the whole
process; we put the process's own thread count back after each call.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from core.detect import BaseDetector
from core.device import resolve_device, ultralytics_device
from core.errors import ModelError
from core.geometry import box_points, overlap_share, squeeze_width
from core.settings import configure_process
from core.types import Line

FONT_CANDIDATES = [
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
]


def ensure_ultralytics_offline() -> Path:
    """Set ultralytics' offline flags and config dir, and give it its font; returns the config dir.

    Must run before `import ultralytics` (it reads YOLO_CONFIG_DIR on import); harmless after.
    """
    configure_process()
    cfg = Path(os.environ["YOLO_CONFIG_DIR"]).expanduser()
    fonts = cfg / "Ultralytics"
    fonts.mkdir(parents=True, exist_ok=True)
    arial = fonts / "Arial.ttf"
    if not arial.exists():
        for cand in FONT_CANDIDATES:
            if Path(cand).is_file():
                tmp = fonts / f".Arial.ttf.{os.getpid()}"
                shutil.copyfile(cand, tmp)
                os.replace(tmp, arial)
                break
    return cfg


def import_yolo():
    """`ultralytics.YOLO`, imported offline, with Pillow's own `Image.open` put back.

    ultralytics replaces `PIL.Image.open` process-wide with a wrapper that, on any file Pillow
    cannot identify, tries to import (or install) pi-heif: a bad upload or dataset image would
    then fail with ModuleNotFoundError instead of Pillow's clear error.
    """
    ensure_ultralytics_offline()
    from PIL import Image
    from ultralytics import YOLO
    from ultralytics.utils import patches

    original = getattr(patches, "_image_open", None)
    if original is not None and Image.open is not original:
        Image.open = original
    return YOLO


@contextlib.contextmanager
def keep_threads() -> Iterator[None]:
    """Undo ultralytics' `torch.set_num_threads(1)` when the call is over."""
    import torch

    n = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


def reading_device(preference: str | None = None) -> str:
    """Where YOLO reads pages: `preference` (None: the `device` setting), except MPS, which reads on the CPU.

    ultralytics' detection on MPS has returned no boxes or misplaced ones where the CPU was right
    (ultralytics issues #25485, #16827, #8555), and reading a page is a small share of the time its
    lines take to recognize, so the detector stays on the CPU there while recognizers use MPS. CUDA is
    used as set, in float32 (boxes as measured on the CPU)."""
    device = resolve_device(preference)
    return "cpu" if device == "mps" else device


def apply_margins(xyxy: np.ndarray, margins: dict[str, float]) -> np.ndarray:
    """Boxes (x0, y0, x1, y1 rows) grown or shrunk on each side by a share of their own height."""
    if not margins or not len(xyxy):
        return xyxy
    h = (xyxy[:, 3] - xyxy[:, 1])
    out = xyxy.copy()
    out[:, 0] -= margins.get("left", 0.0) * h
    out[:, 1] -= margins.get("top", 0.0) * h
    out[:, 2] += margins.get("right", 0.0) * h
    out[:, 3] += margins.get("bottom", 0.0) * h
    return out


def add_small_boxes(first: tuple, second: tuple, max_width: float, overlap: float) -> tuple:
    """`first`'s boxes plus `second`'s boxes narrower than `max_width` that no `first` box overlaps
    (by `overlap` of either box's area)."""
    boxes, confs = first
    kept_points = [box_points(*a) for a in boxes]
    keep = []
    for b, c in zip(*second, strict=True):
        if b[2] - b[0] >= max_width:
            continue
        pts = box_points(*b)
        if not any(overlap_share(pts, q) >= overlap or overlap_share(q, pts) >= overlap for q in kept_points):
            keep.append((b, c))
    if not keep:
        return first
    return (np.vstack([boxes, np.array([b for b, _ in keep])]), np.concatenate([confs, [c for _, c in keep]]))


class YoloDetector(BaseDetector):
    """Boxes from an ultralytics detector, as 4-point lines with their confidence."""

    name = "yolo"
    batch_size = 4

    def __init__(self, path: str | Path, manifest: dict | None = None):
        from core.modeldir import read_manifest

        self.path = Path(path)
        self.manifest = manifest if manifest is not None else read_manifest(self.path)
        self.weights = self.path / self.manifest.get("weights", "weights.pt")
        if not self.weights.is_file():
            raise ModelError(f"{self.path}: the detector's weights file {self.weights.name} is missing")
        self.name = str(self.manifest.get("name") or self.path.name)
        self.imgsz = int(self.manifest.get("imgsz", 1024))
        self.conf = float(self.manifest.get("conf", 0.25))
        self.iou = float(self.manifest.get("iou", 0.5))
        self.max_det = int(self.manifest.get("max_det", 300))
        self.squeeze_x = max(1.0, float(self.manifest.get("squeeze_x", 1.0)))  # pages are narrowed by this first
        # Each side of a box moved out (+) or in (-) by this share of its height, so boxes are cut
        # like the labelled boxes a recognizer learnt from (`core.evaluate.fit_box_margins`).
        self.margins = {side: float(v) for side, v in (self.manifest.get("box_margins") or {}).items()}
        # Optional second, larger read kept only for small boxes the first read missed: reading the
        # whole page larger finds bullets and digits but cuts long lines short (docs/decisions/0007-detector.md).
        self.small_read: dict | None = self.manifest.get("small_read")
        self.device = reading_device()
        self._model = None

    def _load(self):
        if self._model is None:
            with keep_threads():
                YOLO = import_yolo()  # noqa: N806 - the class, imported late
                try:
                    self._model = YOLO(str(self.weights), task="detect")
                except Exception as exc:  # a corrupt or foreign .pt: say which file
                    raise ModelError(f"{self.weights}: cannot load this YOLO model ({exc})") from exc
        return self._model

    def _read(self, rgb: Sequence[Image.Image], squeeze_x: float, imgsz: int, conf: float) -> list[tuple]:
        """(boxes as x0, y0, x1, y1 rows in page pixels, confidences) per page, for one reading."""
        model = self._load()
        seen = [squeeze_width(img, squeeze_x) for img in rgb]
        with keep_threads():
            results = model.predict(
                seen, imgsz=imgsz, conf=conf, iou=self.iou, max_det=self.max_det,
                device=ultralytics_device(self.device), verbose=False,
            )
        out = []
        for img, small, res in zip(rgb, seen, results, strict=True):
            boxes = res.boxes
            xyxy = boxes.xyxy.cpu().numpy().astype(float) if boxes is not None else np.zeros((0, 4))
            xyxy[:, [0, 2]] *= img.width / small.width
            out.append((xyxy, boxes.conf.cpu().numpy() if boxes is not None else np.zeros(0)))
        return out

    def _predict(self, images: Sequence[Image.Image]) -> list[list[Line]]:
        rgb = [img if img.mode == "RGB" else img.convert("RGB") for img in images]
        reads = self._read(rgb, self.squeeze_x, self.imgsz, self.conf)
        if self.small_read:
            sr = self.small_read
            extra = self._read(rgb, float(sr["squeeze_x"]), int(sr["imgsz"]), float(sr["conf"]))
            reads = [add_small_boxes(first, second, max(img.size) * float(sr["max_width_share"]),
                                     float(sr.get("overlap", 0.3)))
                     for img, first, second in zip(rgb, reads, extra, strict=True)]
        out = []
        for xyxy, confs in reads:
            xyxy = apply_margins(xyxy, self.margins)
            lines = [
                Line(points=box_points(*(float(v) for v in b)), det_confidence=float(c))
                for b, c in zip(xyxy, confs, strict=True)
            ]
            lines.sort(key=lambda ln: (ln.points[0][1], ln.points[0][0]))
            out.append(lines)
        return out
