"""A weight-free line finder: ink mask, rules removed, strokes smeared into lines.

It needs nothing but OpenCV, so a fresh install can always digitize; the YOLO engine is the
accurate one, this is the fallback and a baseline for the benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image

from core.detect import BaseDetector
from core.geometry import box_points
from core.types import Line


class ClassicalDetector(BaseDetector):
    name = "classical"

    def __init__(self, work_width: int = 1000, ink_threshold: float = 0.0, smear: float = 4):
        self.work_width = work_width
        self.ink_threshold = ink_threshold
        self.smear = smear

    def _predict(self, images: Sequence[Image.Image]) -> list[list[Line]]:
        return [self._page(img) for img in images]

    def ink_mask(self, gray: np.ndarray) -> np.ndarray:
        """Pixels clearly darker than the paper around them, without ruled or grid lines."""
        h, w = gray.shape
        k = max(15, (min(h, w) // 30) | 1)
        background = cv2.morphologyEx(gray, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
        diff = cv2.subtract(background, gray)
        if self.ink_threshold:
            thr = self.ink_threshold
        else:
            otsu, _ = cv2.threshold(diff, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
            thr = max(25.0, float(otsu))
        ink = (diff > thr).astype(np.uint8) * 255
        # Rules and grid lines are long and thin: find them by opening, then take them out.
        horiz = cv2.morphologyEx(ink, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (max(20, w // 12), 1)))
        vert = cv2.morphologyEx(ink, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (1, max(20, h // 12))))
        ink = cv2.subtract(ink, cv2.bitwise_or(horiz, vert))
        return cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))

    def _page(self, img: Image.Image) -> list[Line]:
        scale = min(1.0, self.work_width / img.width)
        small = img.convert("L").resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
        gray = np.asarray(small)
        ink = self.ink_mask(gray)
        n, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
        heights = stats[1:, cv2.CC_STAT_HEIGHT]
        areas = stats[1:, cv2.CC_STAT_AREA]
        real = heights[(areas >= 12) & (heights >= 4)]
        if len(real) == 0:
            return []
        xh = float(np.median(real))  # about the height of a lowercase letter
        smear_w = max(3, int(round(xh * self.smear)))
        mask = cv2.morphologyEx(
            ink, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (smear_w, max(1, int(xh * 0.3))))
        )
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        boxes: list[tuple[int, int, int, int]] = []
        for i in range(1, n):
            x, y, w, h, area = stats[i]
            ink_px = int(np.count_nonzero(ink[y : y + h, x : x + w][labels[y : y + h, x : x + w] == i]))
            if ink_px < max(10, xh * xh * 0.3) or h < xh * 0.5:
                continue
            boxes.extend(self._split_tall(ink, labels == i, (x, y, w, h), xh))
        lines = []
        for x, y, w, h in boxes:
            pad = xh * 0.25
            x0, y0 = (x - pad) / scale, (y - pad) / scale
            x1, y1 = (x + w + pad) / scale, (y + h + pad) / scale
            lines.append(Line(points=box_points(x0, y0, x1, y1), det_confidence=0.5))
        return lines

    def _split_tall(self, ink: np.ndarray, comp: np.ndarray, box: tuple, xh: float) -> list[tuple]:
        """Cut a blob that spans several lines at the emptiest rows of its ink profile."""
        x, y, w, h = (int(v) for v in box)
        if h < xh * 3.2:
            return [(x, y, w, h)]
        region = (ink[y : y + h, x : x + w] > 0) & comp[y : y + h, x : x + w]
        profile = region.sum(axis=1).astype(float)
        smooth = np.convolve(profile, np.ones(max(1, int(xh * 0.5))) / max(1, int(xh * 0.5)), mode="same")
        lo, hi = int(xh * 1.2), h - int(xh * 1.2)
        if hi <= lo:
            return [(x, y, w, h)]
        cut = lo + int(np.argmin(smooth[lo:hi]))
        if smooth[cut] > 0.35 * smooth.max():
            return [(x, y, w, h)]
        out = []
        for top, bottom in ((0, cut), (cut, h)):
            rows = np.nonzero(region[top:bottom].any(axis=1))[0]
            cols = np.nonzero(region[top:bottom].any(axis=0))[0]
            if len(rows) == 0:
                continue
            sub = (x + int(cols[0]), y + top + int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))
            sub_comp = np.zeros_like(comp)
            sub_comp[sub[1] : sub[1] + sub[3], sub[0] : sub[0] + sub[2]] = comp[sub[1] : sub[1] + sub[3], sub[0] : sub[0] + sub[2]]
            out.extend(self._split_tall(ink, sub_comp, sub, xh))
        return out
