"""Synthetic pages: deterministic, boxes inside the page, YOLO files well-formed and rerunnable."""

from __future__ import annotations

import random

from core.geometry import bbox
from core.synth import available_fonts, make_page, write_yolo_pages, yolo_rows


def test_fonts_are_installed():
    assert available_fonts(), "no handwriting-style font found (apt fonts-* packages)"


def test_page_is_deterministic_and_boxes_fit():
    a = make_page(3, width=700)
    b = make_page(3, width=700)
    assert a.image.size == b.image.size
    assert a.boxes == b.boxes
    assert a.image.width == 700
    assert len(a.boxes) >= 3
    for box in a.boxes:
        assert len(box) == 4
        x0, y0, x1, y1 = bbox(box)
        assert 0 <= x0 < x1 <= a.image.width and 0 <= y0 < y1 <= a.image.height


def test_boxes_cover_ink_not_paper():
    """Every box holds darker pixels than the page median: it was drawn around ink."""
    import numpy as np

    page = make_page(random.Random(11), width=800)
    gray = np.asarray(page.image.convert("L")).astype(float)
    paper = np.median(gray)
    for box in page.boxes:
        x0, y0, x1, y1 = (int(v) for v in bbox(box))
        assert gray[y0 : y1 + 1, x0 : x1 + 1].min() < paper - 40


def test_pages_vary():
    sizes = {make_page(s, width=600).image.getpixel((5, 5)) for s in range(6)}
    assert len(sizes) > 1  # papers differ


def test_yolo_rows_normalised():
    rows = yolo_rows([[(10, 20), (110, 20), (110, 60), (10, 60)], [(0, 0), (0.5, 0), (0.5, 0.5), (0, 0.5)]], 200, 100)
    assert rows == ["0 0.300000 0.400000 0.500000 0.400000"]  # the empty box is dropped


def test_write_yolo_pages_rerunnable(tmp_path):
    paths = write_yolo_pages(tmp_path, 2, seed=4, max_side=500)
    assert len(paths) == 2 and all(p.is_file() for p in paths)
    labels = sorted((tmp_path / "labels").glob("*.txt"))
    assert len(labels) == 2
    for lab in labels:
        for row in lab.read_text().splitlines():
            cls, *vals = row.split()
            assert cls == "0" and all(0.0 <= float(v) <= 1.0 for v in vals)
    mtime = paths[0].stat().st_mtime_ns
    write_yolo_pages(tmp_path, 2, seed=4, max_side=500)
    assert paths[0].stat().st_mtime_ns == mtime  # kept, not rebuilt


def test_enumerators_are_sometimes_boxed_apart():
    """The notes box "②", "Ex:" apart from their line about half the time: some rows do the same."""
    from core.synth import ENUMERATORS, _segment_texts

    rng = random.Random(0)
    rows = [_segment_texts(rng) for _ in range(2000)]
    apart = [r for r in rows if len(r) >= 2 and r[0][0] in ENUMERATORS and r[1][1] is not None]
    assert 0.05 < len(apart) / len(rows) < 0.2
    assert all(0.8 <= gap <= 2.0 for _, gap, _ in (r[1] for r in apart))  # a small gap, not a big one
    assert any(circled for r in apart for _, _, circled in r[:1])  # a digit in a drawn ring
    assert all(not circled for r in rows for _, _, circled in r[1:])  # only enumerators get a ring
