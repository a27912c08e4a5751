"""Interchange formats HTR tools share: PAGE-XML, ALTO and a searchable PDF.

Writers take `ExportPage`s (a page result, its image bytes loaded on demand, a unique file
stem); readers return `ParsedPage`s in the file's own coordinates, which `core.interchange`
checks against the real image before anything is stored. XML is only ever read through
`core.formats.xmlsafe` and written with lxml.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from core.types import PageResult, Point

CREATOR = "Inkscribe"


@dataclass
class ExportPage:
    """One page to write: what was read, how to get its image, and the file stem it goes under."""

    result: PageResult
    load_image: Callable[[], bytes]  # PNG or JPEG bytes, read only when the image is written
    doc_stem: str  # unique per document within one export: file names start with it
    document: str
    suffix: str = "png"
    created: float | None = None
    changed: float | None = None

    @property
    def name(self) -> str:
        return f"{self.doc_stem}-p{self.result.page:04d}"

    @property
    def image_name(self) -> str:
        return f"{self.name}.{self.suffix}"


@dataclass
class ParsedLine:
    id: str
    points: list[Point]
    text: str
    confidence: float | None = None


@dataclass
class ParsedPage:
    """A page as a PAGE or ALTO file describes it, before its image is found and checked."""

    image_ref: str | None
    width: float | None
    height: float | None
    lines: list[ParsedLine] = field(default_factory=list)
    document: str | None = None
    page_no: int | None = None
    label: str = ""  # what messages name: "file.xml" or "file.xml page 2"


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_text(text: str) -> str:
    """Text XML 1.0 can hold (a pasted control character would make lxml refuse the whole file)."""
    return _NOT_XML.sub("", text)


def image_suffix(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    raise ValueError("page images are written as PNG or JPEG")


def safe_stem(name: str) -> str:
    """A file-name-safe stem of a document name (no folders, no odd characters)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    return re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "page"


def iso_utc(ts: float | None = None) -> str:
    """xsd:dateTime in UTC, as PAGE's Created/LastChange require."""
    return datetime.fromtimestamp(time.time() if ts is None else ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def clip_int_points(points: Sequence[Point], width: int, height: int) -> list[tuple[int, int]]:
    """Whole-pixel points inside the image (PAGE allows only non-negative integers)."""
    return [(min(max(0, round(x)), width), min(max(0, round(y)), height)) for x, y in points]


def points_attr(points: Sequence[tuple[float, float]], sep: str = ",") -> str:
    return " ".join(f"{_num(x)}{sep}{_num(y)}" for x, y in points)


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.1f}"


def baseline(points: Sequence[Point]) -> list[Point]:
    """The line's baseline: the bottom edge of its min-area box, moved just inside the polygon.

    Detected boxes carry no baseline, but PAGE/ALTO consumers (Transkribus, eScriptorium,
    kraken) need one; the bottom edge of the rotated box is where handwriting sits, lifted by
    a tenth of the line height (at least a pixel) and shortened as much so it lies inside.
    """
    from core.geometry import min_area_quad

    tl, tr, br, bl = min_area_quad(points)
    height = max(math.dist(tl, bl), math.dist(tr, br))
    width = max(math.dist(bl, br), 1e-6)
    inset = min(max(1.0, 0.1 * height), height / 2)
    ux, uy = (br[0] - bl[0]) / width, (br[1] - bl[1]) / width  # along the line
    vx, vy = (tl[0] - bl[0]) / max(height, 1e-6), (tl[1] - bl[1]) / max(height, 1e-6)  # up
    along = min(inset, width / 4)
    start = (bl[0] + vx * inset + ux * along, bl[1] + vy * inset + uy * along)
    end = (br[0] + vx * inset - ux * along, br[1] + vy * inset - uy * along)
    return [_inside(start, points), _inside(end, points)]


def _inside(p: Point, polygon: Sequence[Point]) -> Point:
    """`p`, or the nearest point towards the polygon's centre that lies inside it."""
    import cv2
    import numpy as np

    poly = np.asarray(polygon, dtype=np.float32).reshape(-1, 1, 2)
    cx, cy = float(poly[:, 0, 0].mean()), float(poly[:, 0, 1].mean())
    for k in range(11):
        t = k / 10
        q = (p[0] + (cx - p[0]) * t, p[1] + (cy - p[1]) * t)
        if cv2.pointPolygonTest(poly, q, False) >= 0:
            return q
    return cx, cy
