"""Synthetic note pages with one box per text line, for training the line detector.

Real notes may not train shipped weights, so the detector learns from rendered pages that
look like them: handwriting-style OFL fonts on ruled, grid, dotted, plain or tinted paper,
bullets, indents, margin notes, spaced digit rows, sketches that are not lines, scan noise.

Boxes follow the labelling of the notes: words close together form one box (a bullet or
a "·)" heading mark included); words separated by a big gap (several letter heights) are
separate boxes, so "0   1   2   3" is four boxes. An enumerator ("2.", "Ex:", a circled digit)
followed by a gap of one or two letters is its own box about half the time, as the notes
label it either way. Drawings, arrows and long rules are not
lines. Output: PIL images plus 4-point boxes, or a YOLO data set (`write_yolo_pages`).
"""

from __future__ import annotations

import io
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from core.geometry import bbox, box_points, squeeze_width
from core.types import Point

logging.getLogger("fontTools").setLevel(logging.ERROR)

# OFL-licensed handwriting-style fonts from Debian packages (see each /usr/share/doc/<pkg>/copyright).
FONT_FILES = [
    "/usr/share/fonts/truetype/humor-sans/Humor-Sans.ttf",
    "/usr/share/fonts/opentype/comic-neue/ComicNeue-Regular.otf",
    "/usr/share/fonts/opentype/comic-neue/ComicNeue-Light.otf",
    "/usr/share/fonts/opentype/comic-neue/ComicNeue-Italic.otf",
    "/usr/share/fonts/opentype/dancingscript/DancingScript-Regular.otf",
    "/usr/share/fonts/truetype/kristi/Kristi.ttf",
    "/usr/share/fonts/truetype/breip/Breip.ttf",
    "/usr/share/fonts/opentype/bwht/BecauseWeBuild-Regular.otf",
    "/usr/share/fonts/opentype/bwht/BecauseWeConnect-Regular.otf",
    "/usr/share/fonts/opentype/bwht/BecauseWeCreate-Regular.otf",
    "/usr/share/fonts/opentype/bwht/BecauseWeLearn-Regular.otf",
    "/usr/share/fonts/opentype/bwht/BecauseWeMentor-Regular.otf",
    "/usr/share/fonts/opentype/bwht/BecauseWeOrganize-Regular.otf",
    "/usr/share/fonts/truetype/ecolier-court/Ecolier-court.ttf",
    "/usr/share/fonts/opentype/kaushanscript/KaushanScript-Regular.otf",
]

WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an they "
    "you were her she there one all we their when can has more would will if no out so what up about into than "
    "them only other new some time could these two may first then do any like my now over such our man me even "
    "most made after also did many before must through back years where much your way well down should because "
    "each just those people how too little state good very make world still own see men work long get here between "
    "both life being under never day same another know while last might us great old year off come since against "
    "go came right used take three memory register address value pointer array index element node tree heap sort "
    "merge pivot stack queue list graph edge vertex cycle path search binary linear hash table key function return "
    "loop while input output signal clock latch enable gate flip flop load store branch offset mode base content "
    "data partition swap compare insert remove find minimum maximum children parent root level trigger active "
    "circuit negative positive edge condition instruction previous incremented adjacent stable unstable divide "
    "conquer plan options choose step runtime complete order higher lower maintain fix terminating relationship "
    "lecture exam note homework review assembly program variable string char integer float bool struct class object "
    "method call recursion base case proof lemma theorem example definition because therefore however argument "
    "Note Def Ex Proof TODO Q A Why How What When If Then Else Format Indirect Register Enable Selection Insertion"
).split()
TOKENS = (
    "R0 R1 R2 R3 R4 R5 PC IR MAR MDR LD ST LDR STR LDI STI BR JSR RET ADD AND NOT x y z i j k n m "
    "f(x) g(n) O(n) O(1) O(log n) O(n log n) n^2 2^k i+1 2i 2i+1 n-1 A[i] A[0] A[n-1] x_1 x_2 a,b (a,b) [0,1] "
    "= == != <= >= < > + - * / % -> => <- | & ^ ~ := ; : ! ? # @ $ { } ( ) [ ] 0 1 2 3 4 5 6 7 8 9 10 16 32 64 "
    "128 255 1024 0x1F 0b101 3.14 -1 +1 1/2 x16 16bit 8bit 6bit 4bit e.g. i.e. etc. vs. → ≥ ≤ ≠ ± × ÷ √ ∞ ∑"
).split()
BULLETS = ["•", "·", "-", "*", "·)", "•)", "→", "1.", "2.", "3.", "a)", "b)", "(1)", "(2)", "①", "②", "Q:", "A:"]
# Enumerators the notes often box apart from their line; a lone digit gets a drawn circle.
ENUMERATORS = ["1.", "2.", "3.", "a)", "b)", "(1)", "(2)", "①", "②", "③", "Q:", "A:", "Ex:", "Ex :", "Note:",
               "Po:", "1", "2", "3", "4", "5"]
INKS = {
    "blue": [(20, 40, 160), (30, 60, 190), (15, 30, 120), (40, 70, 200), (25, 50, 140)],
    "black": [(20, 20, 25), (40, 40, 45), (10, 10, 10), (55, 55, 60)],
    "purple": [(100, 40, 160), (130, 50, 180)],
    "red": [(190, 30, 40), (210, 50, 120)],
    "green": [(20, 120, 60)],
}
PAPERS = [
    (245, 228, 214), (246, 232, 220), (250, 240, 228), (255, 255, 255), (252, 251, 246), (248, 246, 238),
    (242, 242, 242), (236, 242, 250), (250, 248, 222), (230, 230, 226), (244, 236, 246),
]


@dataclass
class SynthPage:
    image: Image.Image
    boxes: list[list[Point]]


_FONT_CACHE: dict[tuple[str, int], ImageFont.FreeTypeFont] = {}


def available_fonts() -> list[str]:
    return [f for f in FONT_FILES if Path(f).is_file()]


_CMAPS: dict[str, set[int] | None] = {}


def _supported(path: str, text: str) -> bool:
    """Whether the font has a glyph for every character (fonts without one draw boxes)."""
    if path not in _CMAPS:
        try:
            from fontTools.ttLib import TTFont

            _CMAPS[path] = set(TTFont(path, lazy=True).getBestCmap())
        except Exception:  # fontTools missing or an odd font: draw whatever it draws
            _CMAPS[path] = None
    cmap = _CMAPS[path]
    return cmap is None or all(ord(c) in cmap for c in text if not c.isspace())


def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    key = (path, size)
    if key not in _FONT_CACHE:
        if len(_FONT_CACHE) > 400:
            _FONT_CACHE.clear()
        _FONT_CACHE[key] = ImageFont.truetype(path, size) if path else ImageFont.load_default(size)
    return _FONT_CACHE[key]


def _text(rng: random.Random, n_words: int) -> str:
    out = []
    for _ in range(n_words):
        r = rng.random()
        w = rng.choice(TOKENS) if r < 0.22 else rng.choice(WORDS)
        if r > 0.9:
            w = w.capitalize()
        elif r > 0.87:
            w = w.upper()
        out.append(w)
    s = " ".join(out)
    if rng.random() < 0.2:
        s += rng.choice([":", " :", ",", ".", " ?", " )", " ->"])
    return s


def _segment_texts(rng: random.Random) -> list[tuple[str, float | None, bool]]:
    """Texts of one row as (text, gap before it in letter heights, circled) parts; gap None: a big gap."""
    kind = rng.random()
    if kind < 0.12:  # a row of spaced digits or symbols: one box each
        items = [rng.choice("0123456789XxABCDabcd+-=*#") for _ in range(rng.randint(2, 6))]
        if rng.random() < 0.5:
            items = [str(i) for i in range(rng.randint(0, 5), rng.randint(6, 10))][: rng.randint(2, 6)]
        return [(t, None, False) for t in items]
    if kind < 0.2:  # a single short token
        return [(rng.choice(TOKENS + WORDS[:40] + ["X", "x", "1", "2", "a", "b", "?", "!"]), None, False)]
    n = rng.choice([1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 8, 10, 12])
    main = _text(rng, n)
    parts: list[tuple[str, float | None, bool]] = []
    if rng.random() < 0.12:  # "②  Create the table": the enumerator is a box of its own
        mark = rng.choice(ENUMERATORS)
        parts.append((mark, None, mark.isdigit()))
        parts.append((main, rng.uniform(0.8, 2.0), False))
    else:
        if rng.random() < 0.4:
            main = rng.choice(BULLETS) + " " + main
        parts.append((main, None, False))
    while rng.random() < 0.25 and len(parts) < 4:  # a second group after a big gap: "mem   =   [PC + off]"
        parts.append((_text(rng, rng.choice([1, 1, 2, 3, 4])), None, False))
    return parts


def _render_segment(text: str, font_path: str, size: int, rng: random.Random, word_gap: float) -> Image.Image:
    """Ink mask ('L') of a word group, each word jittered in size and baseline like a hand."""
    words = [w if _supported(font_path, w) else rng.choice(WORDS) for w in text.split(" ")]
    font = _font(font_path, size)
    asc, desc = font.getmetrics()
    height = int((asc + desc) * 1.5) + 8
    pieces = []
    for w in words:
        s = max(6, int(size * rng.uniform(0.9, 1.1)))
        f = _font(font_path, s)
        left, _, right, _ = f.getbbox(w)
        pieces.append((w, f, right - left, left))
    width = int(sum(p[2] for p in pieces) + word_gap * size * len(pieces) + 20)
    mask = Image.new("L", (max(4, width), height), 0)
    d = ImageDraw.Draw(mask)
    x = 4.0
    stroke = 1 if rng.random() < 0.35 else 0
    for w, f, wd, left in pieces:
        dy = rng.gauss(0, size * 0.04)
        d.text((x - left, size * 0.25 + dy), w, font=f, fill=255, stroke_width=stroke, stroke_fill=255)
        x += wd + word_gap * size * rng.uniform(0.6, 1.3)
    return mask


def _paper(rng: random.Random, w: int, h: int) -> tuple[Image.Image, int]:
    """Paper colour with grid, ruled, dotted or no pattern; returns the image and its spacing."""
    color = rng.choice(PAPERS)
    color = tuple(int(np.clip(c + rng.randint(-6, 6), 0, 255)) for c in color)
    img = Image.new("RGB", (w, h), color)
    d = ImageDraw.Draw(img)
    spacing = int(w * rng.uniform(0.035, 0.06))
    pattern = rng.choices(["grid", "ruled", "dotted", "plain"], weights=[4, 3, 1.5, 1.5])[0]
    dark = rng.uniform(0.55, 0.85)
    tint = rng.choice([(1, 1, 1), (0.85, 0.9, 1.0), (1.0, 0.9, 0.85), (0.9, 1, 0.95)])
    lc = tuple(int(c * dark * t) for c, t in zip(color, tint, strict=True))
    lw = rng.choice([1, 1, 2, 2, 3])
    off_x, off_y = rng.randint(0, spacing), rng.randint(0, spacing)
    if pattern in ("grid", "ruled"):
        for y in range(off_y, h, spacing):
            d.line([(0, y), (w, y)], fill=lc, width=lw)
    if pattern == "grid":
        for x in range(off_x, w, spacing):
            d.line([(x, 0), (x, h)], fill=lc, width=lw)
    if pattern == "dotted":
        r = max(1, lw)
        for y in range(off_y, h, spacing):
            for x in range(off_x, w, spacing):
                d.ellipse([x - r, y - r, x + r, y + r], fill=lc)
    if pattern == "ruled" and rng.random() < 0.5:  # a margin rule
        mx = int(w * rng.uniform(0.08, 0.15))
        d.line([(mx, 0), (mx, h)], fill=(220, 120, 120), width=lw + 1)
    return img, spacing if pattern != "plain" else 0


def _sketch(d: ImageDraw.ImageDraw, rng: random.Random, area: tuple[int, int, int, int], ink, width: int) -> None:
    """Strokes that are not text: arrows, boxes, circles, trees, wiggles, long rules."""
    x0, y0, x1, y1 = area
    if x1 - x0 < 20 or y1 - y0 < 10:
        return
    for _ in range(rng.randint(1, 6)):
        kind = rng.random()
        ax, ay = rng.uniform(x0, x1), rng.uniform(y0, y1)
        bx, by = rng.uniform(x0, x1), rng.uniform(y0, y1)
        if kind < 0.25:
            d.line([(ax, ay), (bx, by)], fill=ink, width=width)
            ang = math.atan2(by - ay, bx - ax)
            for da in (2.6, -2.6):
                d.line([(bx, by), (bx + 15 * math.cos(ang + da), by + 15 * math.sin(ang + da))], fill=ink, width=width)
        elif kind < 0.45:
            d.rectangle([min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)], outline=ink, width=width)
        elif kind < 0.6:
            r = rng.uniform(10, max(12, (y1 - y0) / 2))
            d.ellipse([ax - r, ay - r, ax + r, ay + r], outline=ink, width=width)
        elif kind < 0.8:
            pts = [(ax, ay)]
            for _ in range(rng.randint(3, 10)):
                pts.append((np.clip(pts[-1][0] + rng.uniform(-60, 60), x0, x1), np.clip(pts[-1][1] + rng.uniform(-40, 40), y0, y1)))
            d.line(pts, fill=ink, width=width, joint="curve")
        else:
            d.line([(ax, ay), (min(x1, ax + rng.uniform(100, 500)), ay + rng.uniform(-3, 3))], fill=ink, width=width)


def _diagram(d: ImageDraw.ImageDraw, rng: random.Random, area: tuple[int, int, int, int], ink, width: int,
             size: int, place) -> None:
    """A tree, boxes with words inside, or a labelled wiring sketch; `place(text, x, top, s)` labels it."""
    x0, y0, x1, y1 = area
    if x1 - x0 < size * 6 or y1 - y0 < size * 3:
        return
    kind = rng.random()
    s = max(8, int(size * rng.uniform(0.7, 1.0)))
    label = lambda: rng.choice("ABCDEFGXYZabcdexyz0123456789") if rng.random() < 0.8 else rng.choice(TOKENS[:40])  # noqa: E731
    if kind < 0.5:  # a tree: edges and small circles, letters beside or as the nodes
        depth = rng.randint(2, 3)
        level_h = (y1 - y0) / (depth + 0.5)
        cx = rng.uniform(x0 + (x1 - x0) * 0.2, x1 - (x1 - x0) * 0.2)
        level = [(cx, y0 + s)]
        every = list(level)
        spread = min((x1 - x0) / 3, s * rng.uniform(3, 6))
        for lvl in range(depth):
            nxt = []
            for nx, ny in level:
                for side in (-1, 1):
                    if rng.random() < 0.8:
                        child = (nx + side * spread / (lvl + 1), ny + level_h)
                        d.line([(nx, ny), child], fill=ink, width=width)
                        if rng.random() < 0.5:
                            r = s * 0.3
                            d.ellipse([child[0] - r, child[1] - r, child[0] + r, child[1] + r], outline=ink, width=width)
                        nxt.append(child)
            level = nxt
            every += nxt
        for nx, ny in every:
            if rng.random() < 0.75:
                dx = rng.choice([-1.2, 0.5, -0.3]) * s
                place(label(), int(nx + dx), int(ny - s * rng.uniform(0.2, 1.3)), s)
    elif kind < 0.75:  # words in boxes (gates, registers): the word is the line, the frame is not
        for _ in range(rng.randint(1, 4)):
            bx = int(rng.uniform(x0, x1 - s * 6))
            by = int(rng.uniform(y0, max(y0 + 1, y1 - s * 2)))
            box = place(rng.choice(WORDS + TOKENS[:20]), bx + int(s * 0.5), by + int(s * 0.4), s)
            if box:
                bx0, by0, bx1, by1 = bbox(box)
                m = s * rng.uniform(0.2, 0.6)
                d.rectangle([bx0 - m, by0 - m, bx1 + m, by1 + m], outline=ink, width=width)
                if rng.random() < 0.6:
                    d.line([(bx1 + m, (by0 + by1) / 2), (min(x1, bx1 + m + s * 4), (by0 + by1) / 2)], fill=ink, width=width)
    else:  # wires with short labels at their ends
        for _ in range(rng.randint(2, 5)):
            ax, ay = rng.uniform(x0, x1 - s * 4), rng.uniform(y0 + s, y1 - s)
            bx = min(x1, ax + rng.uniform(s * 3, s * 12))
            d.line([(ax, ay), (bx, ay)], fill=ink, width=width)
            if rng.random() < 0.5:
                d.line([(bx, ay), (bx, min(y1, ay + rng.uniform(s, s * 4)))], fill=ink, width=width)
            if rng.random() < 0.8:
                place(label(), int(ax - s * 1.5), int(ay - s * 0.5), s)


def make_page(seed: int | random.Random, width: int | None = None) -> SynthPage:
    """One synthetic page and its line boxes (4 points each, page pixels)."""
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    fonts = available_fonts() or [""]
    w = width or rng.randint(1100, 1700)
    h = int(w * rng.choice([1.414, 1.414, 1.414, 1.294, 1.5, 1.33]))
    img, spacing = _paper(rng, w, h)
    ink_mask_layers: list[tuple[Image.Image, tuple[int, int], tuple[int, int, int]]] = []
    page_font = rng.choice(fonts)
    ink_name = rng.choices(list(INKS), weights=[6, 3, 0.6, 0.4, 0.2])[0]
    page_ink = rng.choice(INKS[ink_name])
    size = int(w * rng.uniform(0.022, 0.04))  # font px; the notes' letters are ~2-3 % of the width
    row = spacing if spacing else int(size * rng.uniform(1.5, 2.4))
    row = max(row, int(size * 1.25))
    pad = rng.uniform(0.08, 0.3)
    word_gap = rng.uniform(0.35, 0.9)
    big_gap = rng.uniform(2.5, 5.0)
    boxes: list[list[Point]] = []

    def place(text: str, x: int, top: int | None, s: int, ink, font_path: str, baseline: int | None = None):
        """Render a word group at x (top or baseline row); record its ink and box. None if it does not fit."""
        mask = _render_segment(text, font_path, s, rng, word_gap)
        bb = mask.getbbox()
        if bb is None:
            return None
        mask = mask.crop(bb)
        if top is None:
            top = (baseline or 0) - mask.height + int(rng.gauss(0, s * 0.05))
        x = max(0, x)
        if x + mask.width > w - 3 or top < 0 or top + mask.height > h - 1:
            return None
        ink_mask_layers.append((mask, (x, top), ink))
        p = pad * s
        box = box_points(x - p * rng.uniform(0.5, 1.5), top - p * rng.uniform(0.5, 1.2),
                         x + mask.width + p * rng.uniform(0.5, 1.5), top + mask.height + p * rng.uniform(0.5, 1.2))
        boxes.append(box)
        return box

    sketch = ImageDraw.Draw(img)
    stroke_w = max(1, int(size * rng.uniform(0.06, 0.12)))
    margin = int(w * rng.uniform(0.02, 0.1))
    y = rng.randint(int(row * 0.5), int(row * 3))
    while y < h - row:
        r = rng.random()
        if r < 0.08:  # blank rows
            y += row * rng.randint(1, 2)
            continue
        if r < 0.13:  # a sketch block
            span = row * rng.randint(2, 6)
            _sketch(sketch, rng, (margin, y, w - margin, min(h - 5, y + span)), page_ink, stroke_w)
            y += span
            continue
        if r < 0.25:  # a diagram whose labels are lines and whose strokes are not
            span = row * rng.randint(3, 8)
            _diagram(sketch, rng, (margin, y, w - margin, min(h - 5, y + span)), page_ink, stroke_w, size,
                     lambda t, x, top, s: place(t, x, top, s, page_ink if rng.random() < 0.7 else rng.choice(
                         INKS[rng.choice(list(INKS))]), page_font))
            y += span
            continue
        font_path = page_font if rng.random() < 0.9 else rng.choice(fonts)
        ink = page_ink if rng.random() < 0.85 else rng.choice(INKS[rng.choice(list(INKS))])
        s = max(8, int(size * rng.uniform(0.85, 1.15) * (0.7 if rng.random() < 0.08 else 1.0)))
        x = margin + int(rng.choice([0, 0, 0, 1, 1, 2, 3]) * size * rng.uniform(1.0, 2.0))
        if rng.random() < 0.1:
            x = int(w * rng.uniform(0.4, 0.8))  # a note on the right
        end = None  # right edge of the previous group on this row
        for text, gap, circled in _segment_texts(rng):
            if end is not None:
                x = int(end + s * (big_gap * rng.uniform(1.0, 1.6) if gap is None else gap))
            if gap is None and rng.random() < 0.08:  # an arrow or a bar between groups: a stroke, not a line
                ax = x + rng.uniform(0.5, 1.0) * s
                ay = y + row * 0.85 - s * 0.4
                sketch.line([(ax, ay), (ax + s * 1.5, ay)], fill=page_ink, width=stroke_w)
                sketch.line([(ax + s * 1.5, ay), (ax + s * 1.1, ay - s * 0.3)], fill=page_ink, width=stroke_w)
                x = int(ax + s * big_gap)
            box = place(text, x, None, s, ink, font_path, baseline=y + int(row * 0.85))
            if box is None:
                break
            bx0, by0, bx1, by1 = bbox(box)
            if circled and bx1 - bx0 < 1.5 * (by1 - by0):  # a circled digit (not a font's stand-in word): one box
                cx, cy, r = (bx0 + bx1) / 2, (by0 + by1) / 2, max(bx1 - bx0, by1 - by0) * rng.uniform(0.55, 0.75)
                sketch.ellipse([cx - r, cy - r, cx + r, cy + r], outline=ink, width=stroke_w)
                boxes[-1] = box = box_points(cx - r - 2, cy - r - 2, cx + r + 2, cy + r + 2)
            end = bbox(box)[2]
        if rng.random() < 0.06 and boxes:  # an underline under the last row: part of the line, not a new one
            x0, y0, x1, y1 = bbox(boxes[-1])
            sketch.line([(x0, y1 - 2), (x1, y1 - 2 + rng.uniform(-3, 3))], fill=page_ink, width=stroke_w)
        y += row * (1 if rng.random() < 0.75 else 2)
        if rng.random() < 0.08:
            y += int(row * rng.uniform(-0.2, 0.3))
    for mask, (x, top), ink in ink_mask_layers:
        img.paste(Image.new("RGB", mask.size, ink), (x, top), mask)
    img, boxes = _degrade(img, boxes, rng)
    return SynthPage(img, boxes)


def _degrade(img: Image.Image, boxes: list[list[Point]], rng: random.Random) -> tuple[Image.Image, list[list[Point]]]:
    """Scan look: slight rotation, blur, noise, contrast, JPEG."""
    w, h = img.size
    if rng.random() < 0.5:
        angle = rng.uniform(-1.5, 1.5)
        fill = img.getpixel((2, 2))
        img = img.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=fill)
        a = math.radians(-angle)
        cx, cy = w / 2, h / 2

        def rot(p: Point) -> Point:
            dx, dy = p[0] - cx, p[1] - cy
            return (cx + dx * math.cos(a) - dy * math.sin(a), cy + dx * math.sin(a) + dy * math.cos(a))

        boxes = [[rot(p) for p in b] for b in boxes]
        # Labels are near-axis-aligned boxes: take the box around the rotated corners.
        boxes = [box_points(*bbox(b)) for b in boxes]
    if rng.random() < 0.4:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.3)))
    arr = np.asarray(img).astype(np.float32)
    if rng.random() < 0.5:
        arr = arr * rng.uniform(0.85, 1.05) + rng.uniform(-15, 10)
    if rng.random() < 0.3:  # uneven lighting
        grad = np.linspace(rng.uniform(-20, 0), rng.uniform(0, 10), h, dtype=np.float32)[:, None, None]
        arr = arr + grad
    if rng.random() < 0.5:
        arr = arr + np.random.default_rng(rng.randint(0, 2**31)).normal(0, rng.uniform(2, 9), arr.shape)
    if rng.random() < 0.2:
        arr = arr.mean(axis=2, keepdims=True).repeat(3, axis=2)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if rng.random() < 0.7:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=rng.randint(45, 92))
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    boxes = [[(min(max(0.0, x), w - 1.0), min(max(0.0, y), h - 1.0)) for x, y in b] for b in boxes]
    return img, [b for b in boxes if bbox(b)[2] - bbox(b)[0] > 2 and bbox(b)[3] - bbox(b)[1] > 2]


def yolo_rows(boxes: list[list[Point]], width: int, height: int) -> list[str]:
    """YOLO label rows ('0 cx cy w h', normalised) for the axis-aligned boxes around polygons."""
    rows = []
    for b in boxes:
        x0, y0, x1, y1 = bbox(b)
        x0, x1 = max(0.0, x0), min(float(width), x1)
        y0, y1 = max(0.0, y0), min(float(height), y1)
        if x1 - x0 < 1 or y1 - y0 < 1:
            continue
        rows.append(f"0 {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} {(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}")
    return rows


def save_yolo_sample(image: Image.Image, boxes: list[list[Point]], images_dir: Path, labels_dir: Path, stem: str,
                     max_side: int = 1280, squeeze_x: float = 1.0) -> None:
    """Write `images_dir/stem.jpg` (downscaled to `max_side`, narrowed by `squeeze_x`) and `labels_dir/stem.txt`."""
    scale = min(1.0, max_side / max(image.size))
    rows = yolo_rows(boxes, image.width, image.height)  # normalised, so unaffected by the resize
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    image = squeeze_width(image, squeeze_x)
    images_dir.mkdir(parents=True, exist_ok=True)
    labels_dir.mkdir(parents=True, exist_ok=True)
    image.convert("RGB").save(images_dir / f"{stem}.jpg", quality=90)
    (labels_dir / f"{stem}.txt").write_text("\n".join(rows) + ("\n" if rows else ""))


def write_yolo_pages(out: str | Path, n: int, seed: int = 0, max_side: int = 1280, prefix: str = "synth",
                     squeeze_x: float = 1.0) -> list[Path]:
    """`n` synthetic pages as `out/images/*.jpg` + `out/labels/*.txt`; existing files are kept (rerunnable)."""
    out = Path(out)
    paths = []
    for i in range(n):
        stem = f"{prefix}_{seed}_{i:05d}"
        img_path = out / "images" / f"{stem}.jpg"
        if not (img_path.exists() and (out / "labels" / f"{stem}.txt").exists()):
            page = make_page(random.Random(seed * 1_000_003 + i))
            save_yolo_sample(page.image, page.boxes, out / "images", out / "labels", stem, max_side, squeeze_x)
        paths.append(img_path)
    return paths
