"""Polygon helpers shared by detection, cropping, training and evaluation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from core.types import Point


def bbox(points: Sequence[Point]) -> tuple[float, float, float, float]:
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def box_points(x0: float, y0: float, x1: float, y1: float) -> list[Point]:
    """Four corners clockwise from top-left, the labels' convention."""
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def squeeze_width(image: Image.Image, factor: float) -> Image.Image:
    """The image narrowed by `factor` (height kept), as a line detector with `squeeze_x` sees pages.

    A YOLO head reaches at most 15 strides either side of an anchor; thin lines are caught by
    stride-8 anchors, so at 640 px a line wider than 240 px comes out cut short. Narrowing the
    page brings full-width lines within reach while letters keep their height.
    """
    if factor <= 1.0:
        return image
    return image.resize((max(1, round(image.width / factor)), image.height), Image.Resampling.BILINEAR)


def iou(a: Sequence[Point], b: Sequence[Point]) -> float:
    """IoU of the axis-aligned boxes around two polygons (line boxes are near-horizontal)."""
    ax0, ay0, ax1, ay1 = bbox(a)
    bx0, by0, bx1, by1 = bbox(b)
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union if union > 0 else 0.0


def same_band(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    """Whether two (x0, y0, x1, y1) boxes sit on one text row: they share over half the shorter one's height."""
    return min(a[3], b[3]) - max(a[1], b[1]) > 0.5 * min(a[3] - a[1], b[3] - b[1])


def overlap_share(inner: Sequence[Point], outer: Sequence[Point]) -> float:
    """Share of `inner`'s box area covered by `outer`'s box."""
    ax0, ay0, ax1, ay1 = bbox(inner)
    bx0, by0, bx1, by1 = bbox(outer)
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    area = (ax1 - ax0) * (ay1 - ay0)
    return iw * ih / area if area > 0 else 0.0


def min_area_quad(points: Sequence[Point]) -> list[Point]:
    """The tightest rotated rectangle around a polygon, as TL, TR, BR, BL corners."""
    pts = np.asarray(points, dtype=np.float32)
    if len(pts) == 4:
        quad = pts
    else:
        import cv2

        quad = cv2.boxPoints(cv2.minAreaRect(pts))
    return _order_quad(quad)


def _order_quad(quad: np.ndarray) -> list[Point]:
    """Order four corners as top-left, top-right, bottom-right, bottom-left for a text line."""
    pts = sorted(((float(x), float(y)) for x, y in quad), key=lambda p: p[0])
    left, right = pts[:2], pts[2:]
    # A line is wider than tall, so the two left-most points are its left edge.
    tl, bl = sorted(left, key=lambda p: p[1])
    tr, br = sorted(right, key=lambda p: p[1])
    return [tl, tr, br, bl]


# Share of the line's height kept around its box. Reading, training and evaluation all cut with it,
# so a model is scored and used on the pixels it learnt from; labelled boxes are drawn tight, and a
# margin keeps ascenders and descenders (eval cer_4plus of an all-lines model cut at 0.08 vs 0:
# 0.0651 vs 0.0666; the base: 0.178 vs 0.189; 0.15 is worse again, docs/decisions/0005-recognition-rejected.md).
LINE_PAD = 0.08


def crop_line(image: Image.Image, points: Sequence[Point], pad: float = LINE_PAD) -> Image.Image:
    """Cut a line out of a page, straightening a tilted box with a perspective warp.

    Training, evaluation and inference all crop through here, so the model sees the same pixels.
    """
    tl, tr, br, bl = min_area_quad(points)
    width = max(math.dist(tl, tr), math.dist(bl, br))
    height = max(math.dist(tl, bl), math.dist(tr, br))
    if width < 1 or height < 1:
        raise ValueError("empty line box")
    if pad:
        # Grow the quad outward along its own axes so strokes at the edge are kept.
        ux, uy = (tr[0] - tl[0]) / width, (tr[1] - tl[1]) / width
        vx, vy = (bl[0] - tl[0]) / height, (bl[1] - tl[1]) / height
        dx, dy = pad * height, pad * height
        tl = (tl[0] - ux * dx - vx * dy, tl[1] - uy * dx - vy * dy)
        tr = (tr[0] + ux * dx - vx * dy, tr[1] + uy * dx - vy * dy)
        br = (br[0] + ux * dx + vx * dy, br[1] + uy * dx + vy * dy)
        bl = (bl[0] - ux * dx + vx * dy, bl[1] - uy * dx + vy * dy)
        width += 2 * dx
        height += 2 * dy
    size = (max(1, round(width)), max(1, round(height)))
    quad = (*tl, *bl, *br, *tr)
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return rgb.transform(size, Image.Transform.QUAD, quad, resample=Image.Resampling.BILINEAR,
                         fillcolor=(255, 255, 255))


def clip_points(points: Sequence[Point], width: int, height: int) -> list[Point]:
    return [(min(max(0.0, float(x)), width - 1.0), min(max(0.0, float(y)), height - 1.0)) for x, y in points]
