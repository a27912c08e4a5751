"""Line-crop preprocessing shared by inference and training, and training-only augmentation.

The deterministic part (`prepare`, `to_batch`) is the single path every CRNN crop takes, in the
app and in training, so a fine-tuned model sees exactly the pixels it was trained on. The
augmentations live in `augment` and are only ever called by the trainer.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

DEFAULT_HEIGHT = 48  # `prepare`'s default; each network's own input height is in core.recognize.networks
MAX_WIDTH = 2048  # ~28 characters per 64 px of height would already be an unusual line


def to_gray(img: Image.Image) -> Image.Image:
    """Grayscale (8-bit) regardless of the input mode; alpha is flattened onto white."""
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img.convert("L")


def resize_to_height(img: Image.Image, height: int = DEFAULT_HEIGHT, max_width: int = MAX_WIDTH,
                     min_width: int | None = None) -> Image.Image:
    """Scale to a fixed height keeping the aspect ratio (width clamped to [min_width, max_width])."""
    min_width = min_width or height // 2
    w, h = img.size
    new_w = int(min(max_width, max(min_width, math.ceil(height * w / max(1, h)))))
    return img.resize((new_w, height), Image.Resampling.BICUBIC)


def prepare(img: Image.Image, height: int = DEFAULT_HEIGHT, max_width: int = MAX_WIDTH) -> np.ndarray:
    """A crop as the float32 array the CRNN reads: gray, fixed height, values in [-1, 1]."""
    small = resize_to_height(to_gray(img), height, max_width)
    return np.asarray(small, dtype=np.float32) / 127.5 - 1.0


def to_batch(arrays: Sequence[np.ndarray], multiple: int = 4) -> tuple[np.ndarray, list[int]]:
    """Stack prepared crops into [B, 1, H, W]; each is right-padded by repeating its last column.

    Repeating the edge (as EasyOCR does) rather than padding with a constant keeps the padded
    area looking like paper, so the pad does not read as a stroke.
    """
    widths = [a.shape[1] for a in arrays]
    width = max(widths)
    width = int(math.ceil(width / multiple) * multiple)
    height = arrays[0].shape[0]
    out = np.empty((len(arrays), 1, height, width), dtype=np.float32)
    for i, a in enumerate(arrays):
        w = a.shape[1]
        out[i, 0, :, :w] = a
        if w < width:
            out[i, 0, :, w:] = a[:, w - 1 : w]
    return out, widths


# ---------------------------------------------------------------- training-only augmentation


def augment(img: Image.Image, rng: random.Random, strength: float = 1.0) -> Image.Image:
    """A lightly perturbed copy of a grayscale crop: rotation, scale, contrast, brightness, blur.

    Deliberately small: the crops come from one writer and one scanner, so heavy augmentation
    only teaches the model about images it will never see.
    """
    if strength <= 0:
        return img
    img = to_gray(img)
    if rng.random() < 0.5:
        angle = rng.uniform(-2.0, 2.0) * strength
        img = img.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=_paper(img))
    if rng.random() < 0.5:
        # Horizontal stretch/squeeze: handwriting width varies line to line.
        sx = 1.0 + rng.uniform(-0.12, 0.12) * strength
        img = img.resize((max(2, round(img.width * sx)), img.height), Image.Resampling.BILINEAR)
    if rng.random() < 0.3:
        # Crop jitter: detector boxes are never exactly where the labeller drew them.
        dy = round(img.height * 0.06 * strength)
        if dy >= 1 and img.height > 4 * dy:
            top, bottom = rng.randint(0, dy), rng.randint(0, dy)
            img = img.crop((0, top, img.width, img.height - bottom))
    if rng.random() < 0.5:
        img = ImageEnhance.Contrast(img).enhance(1.0 + rng.uniform(-0.3, 0.3) * strength)
    if rng.random() < 0.5:
        img = ImageEnhance.Brightness(img).enhance(1.0 + rng.uniform(-0.15, 0.15) * strength)
    if rng.random() < 0.2:
        img = img.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.3, 1.0) * strength))
    return img


def _paper(img: Image.Image) -> int:
    """The crop's background gray level (its brightest tenth), used to fill rotated corners."""
    arr = np.asarray(img)
    return int(np.percentile(arr, 90)) if arr.size else 255
