"""The shared detector clean-up: clipping, tiny boxes, and fragments nested in a line's box."""

from __future__ import annotations

from PIL import Image

from core.detect import BaseDetector, drop_nested
from core.geometry import box_points
from core.types import Line


def line(x0, y0, x1, y1) -> Line:
    return Line(points=box_points(x0, y0, x1, y1), det_confidence=0.9)


def test_a_word_found_inside_its_line_is_dropped():
    whole, word, below = line(10, 10, 400, 40), line(200, 12, 260, 38), line(10, 60, 100, 90)
    assert drop_nested([whole, word, below]) == [whole, below]


def test_overlapping_neighbours_are_both_kept():
    a, b = line(10, 10, 200, 40), line(150, 10, 400, 40)  # they share a strip, neither lies inside the other
    assert drop_nested([a, b]) == [a, b]
    twin = line(10, 10, 200, 40)  # two boxes on the same spot: each lies inside the other, neither is larger
    assert len(drop_nested([a, twin])) == 2


class Fixed(BaseDetector):
    def __init__(self, lines):
        self.lines = lines

    def _predict(self, images):
        return [list(self.lines) for _ in images]


def test_base_detector_clips_drops_tiny_and_nested_boxes():
    page = Image.new("RGB", (300, 200), "white")
    found = Fixed([line(-20, 10, 280, 40), line(100, 15, 150, 35), line(10, 100, 13, 104)]).detect([page])[0]
    assert len(found) == 1
    assert found[0].points[0] == (0.0, 10.0)  # clipped to the page
