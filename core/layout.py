"""Layout: reading order (top to bottom, columns and margin notes apart), rows and indentation.

Recursive XY-cut over line boxes: a clear vertical gap that runs the whole height of a region
separates columns (the main text first, then what stands beside it); otherwise the region is
cut into horizontal bands, top to bottom. Boxes that share a band and a column are a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median

from core.geometry import bbox, same_band
from core.types import Line


def _boxes(lines: Sequence[Line]) -> list[tuple[float, float, float, float]]:
    return [bbox(ln.points) for ln in lines]


def _gaps(intervals: list[tuple[float, float]], min_gap: float) -> list[float]:
    """Cut positions in the empty stretches between merged intervals."""
    cuts = []
    merged_end = None
    for start, end in sorted(intervals):
        if merged_end is not None and start - merged_end >= min_gap:
            cuts.append((merged_end + start) / 2)
        merged_end = end if merged_end is None else max(merged_end, end)
    return cuts


def _xy_cut(idx: list[int], boxes, line_h: float, column: int, out: list[tuple[int, int]]) -> int:
    """Append (line index, column) in reading order; returns the next free column number."""
    if len(idx) <= 1:
        out.extend((i, column) for i in idx)
        return column + 1
    # Columns first: a vertical gap clear of every box in this region.
    x_cuts = _gaps([(boxes[i][0], boxes[i][2]) for i in idx], min_gap=1.5 * line_h)
    if x_cuts:
        groups = _split(idx, x_cuts, lambda i: (boxes[i][0] + boxes[i][2]) / 2)
        # Only a real column when each side holds more than one row of text.
        if all(_row_count(g, boxes, line_h) >= 2 for g in groups):
            next_col = column
            for g in groups:
                next_col = _xy_cut(g, boxes, line_h, next_col, out)
            return next_col
    y_cuts = _gaps([(boxes[i][1] + 0.2 * (boxes[i][3] - boxes[i][1]), boxes[i][3] - 0.2 * (boxes[i][3] - boxes[i][1]))
                    for i in idx], min_gap=0.0)
    if y_cuts:
        for band in _split(idx, y_cuts, lambda i: (boxes[i][1] + boxes[i][3]) / 2):
            _xy_cut(band, boxes, line_h, column, out)
        return column + 1
    # One band: left to right (fragments of one row).
    out.extend((i, column) for i in sorted(idx, key=lambda i: boxes[i][0]))
    return column + 1


def _split(idx: list[int], cuts: list[float], key) -> list[list[int]]:
    groups: list[list[int]] = [[] for _ in range(len(cuts) + 1)]
    for i in idx:
        k = sum(1 for c in cuts if key(i) > c)
        groups[k].append(i)
    return [g for g in groups if g]


def _row_count(idx: list[int], boxes, line_h: float) -> int:
    ys = sorted((boxes[i][1] + boxes[i][3]) / 2 for i in idx)
    rows, last = 0, None
    for y in ys:
        if last is None or y - last > 0.5 * line_h:
            rows += 1
            last = y
    return rows


def order_lines(lines: Sequence[Line]) -> list[Line]:
    """Lines in reading order, each with its column number and indentation level set."""
    lines = list(lines)
    if not lines:
        return []
    boxes = _boxes(lines)
    line_h = median(b[3] - b[1] for b in boxes) or 1.0
    order: list[tuple[int, int]] = []
    _xy_cut(list(range(len(lines))), boxes, line_h, 0, order)
    # Renumber columns by first appearance so the main text is column 0.
    seen: dict[int, int] = {}
    for _, col in order:
        seen.setdefault(col, len(seen))
    result = []
    lefts_by_col: dict[int, list[float]] = {}
    for i, col in order:
        lines[i].column = seen[col]
        lefts_by_col.setdefault(lines[i].column, []).append(boxes[i][0])
        result.append(lines[i])
    for ln in result:
        base = min(lefts_by_col[ln.column])
        ln.indent = min(4, int((bbox(ln.points)[0] - base) / (2.0 * line_h)))
    return result


def rows(lines: Sequence[Line]) -> list[list[Line]]:
    """Group ordered lines into rows: consecutive boxes of one column that share a band."""
    out: list[list[Line]] = []
    for ln in lines:
        box = bbox(ln.points)
        if out:
            prev = out[-1][-1]
            prev_box = bbox(prev.points)
            if prev.column == ln.column and box[0] >= prev_box[2] - 2 and same_band(box, prev_box):
                out[-1].append(ln)
                continue
        out.append([ln])
    return out
