"""Read the `labels.jsonl` format (one page a line, line polygons and texts) and cut crops."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import BadInputError
from core.types import Point


@dataclass
class LabelLine:
    points: list[Point]
    text: str


@dataclass
class LabelPage:
    image_path: Path
    doc: str
    split: str
    lines: list[LabelLine] = field(default_factory=list)


def read_labels(path: str | Path, split: str | None = None, strict: bool = False) -> list[LabelPage]:
    """Pages of a labels file, image paths resolved against the file's folder.

    Bad rows and pages whose image is missing are skipped with a warning on the returned
    list's `problems`; `strict=True` makes any of them an error instead.
    """
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"{p}: no such labels file")
    pages: list[LabelPage] = []
    problems: list[str] = []
    with open(p, "rb") as fh:
        for n, raw_bytes in enumerate(fh, 1):
            if not raw_bytes.strip():
                continue
            try:
                raw = raw_bytes.decode("utf-8")
                row = json.loads(raw)
                if not isinstance(row, dict):
                    raise ValueError("not a JSON object")
                image = p.parent / row["page"]
                lines = [
                    LabelLine([(float(x), float(y)) for x, y in ln["points"]], str(ln.get("text", "")))
                    for ln in row.get("lines", [])
                ]
                if any(len(ln.points) < 3 for ln in lines):
                    raise ValueError("a line has fewer than 3 points")
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
                problems.append(f"line {n}: {type(exc).__name__}: {exc}"[:300])
                continue
            if split and row.get("split", "train") != split:
                continue
            if not image.is_file():
                problems.append(f"line {n}: image {row['page']} is missing")
                continue
            pages.append(LabelPage(image, str(row.get("doc", image.stem)), str(row.get("split", "train")), lines))
    if problems and strict:
        raise BadInputError(f"{p}: {len(problems)} bad rows, first: {problems[0]}")
    if not pages:
        detail = f" ({problems[0]})" if problems else ""
        raise BadInputError(f"{p}: no usable pages{' in split ' + repr(split) if split else ''}{detail}")
    result = LabelsList(pages)
    result.problems = problems
    return result


class LabelsList(list):
    problems: list[str]


def iter_line_crops(pages: list[LabelPage]) -> Iterator[tuple[LabelPage, LabelLine, object]]:
    """(page, line, crop) for every line with a non-empty box, one page image open at a time."""
    from core.geometry import crop_line
    from core.ingest import load_image

    for page in pages:
        try:
            rgb = load_image(page.image_path)  # upright as training sees it (EXIF), with the size limits
        except BadInputError:
            raise
        except Exception as exc:  # a damaged or non-image file named in the labels
            raise BadInputError(f"{page.image_path.name}: the page image is damaged or not an image") from exc
        for line in page.lines:
            try:
                crop = crop_line(rgb, line.points)
            except ValueError:
                continue
            yield page, line, crop
