"""Export: Markdown a person would keep, plain text and JSON from ordered page results.

Markdown never invents text: it adds structure only where the layout shows it (a heading per
source, page markers, list items for lines that start with a bullet, nesting by indentation,
margin notes as quotes after the main text) and escapes anything Markdown would reinterpret.
PAGE-XML, ALTO and the searchable PDF live in `core.formats`; `core.interchange` writes every
format from stored documents or a digitize run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from core.geometry import bbox
from core.layout import rows
from core.types import Line, PageResult

BULLET_CHARS = "•·▪◦○●‣⁃*–—>→"
# A bullet too, unless a digit or another mark follows: "-5" and ".5" are numbers, "..." and "->" are not bullets.
# Handwritten bullet dots are often read as "." (and labelled so: 344 lines of the notes data set).
SIGN_BULLETS = "-."
_BULLET_RE = re.compile(rf"^\s*(?:[{re.escape(BULLET_CHARS)}]|[{re.escape(SIGN_BULLETS)}](?![\d.\->]))\)?\s*")
_NUMBERED_RE = re.compile(r"^\s*(\d{1,3}|[a-zA-Z])[.)]\s+")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|])")


def escape_md(text: str) -> str:
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = re.sub(r"^(\s*)([#+=])", r"\1\\\2", text)
    text = re.sub(r"^(\s*\d+)([.)])(\s)", r"\1\\\2\3", text)
    return text


def _row_text(row: Sequence[Line]) -> str:
    return " ".join(ln.text.strip() for ln in row if ln.text.strip())


def page_markdown(page: PageResult) -> list[str]:
    out: list[str] = []
    main = [ln for ln in page.lines if ln.column == 0]
    margin = [ln for ln in page.lines if ln.column != 0]
    out.extend(_block_markdown(main))
    if margin:
        out.append("")
        out.extend("> " + line if line else ">" for line in _block_markdown(margin))
    return out


def _block_markdown(lines: Sequence[Line]) -> list[str]:
    out: list[str] = []
    grouped = rows(lines)
    heights = [bbox(ln.points)[3] - bbox(ln.points)[1] for ln in lines] or [1.0]
    line_h = sorted(heights)[len(heights) // 2]
    prev_bottom = None
    for row in grouped:
        text = _row_text(row)
        if not text:
            continue
        top = min(bbox(ln.points)[1] for ln in row)
        if prev_bottom is not None and top - prev_bottom > 1.2 * line_h and out and out[-1] != "":
            out.append("")  # a clear vertical gap is a paragraph break
        prev_bottom = max(bbox(ln.points)[3] for ln in row)
        indent = min(ln.indent for ln in row)
        bullet = _BULLET_RE.match(text)
        if bullet and len(text) > bullet.end():
            out.append("  " * indent + "- " + escape_md(text[bullet.end():].strip()))
        elif _NUMBERED_RE.match(text):
            out.append("  " * indent + text.strip().replace("\\", "\\\\"))
        else:
            # Hard line break keeps handwritten lines as lines; indentation kept with NBSPs.
            out.append("\u00a0" * (2 * indent) + escape_md(text) + "  ")
    while out and out[-1] == "":
        out.pop()
    return out


def to_markdown(pages: Sequence[PageResult], title: str | None = None) -> str:
    """One Markdown document: a heading per source, a marker per page."""
    out: list[str] = []
    if title:
        out += [f"# {escape_md(title)}", ""]
    source = None
    for page in pages:
        if page.source != source:
            source = page.source
            out += [f"{'##' if title else '#'} {escape_md(source)}", ""]
        out += [f"<!-- page {page.page} -->", ""]
        body = page_markdown(page)
        out += body if body else ["*(no text found on this page)*"]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def to_text(pages: Sequence[PageResult]) -> str:
    """One line of text per detected line, pages separated by a blank line."""
    return "\n\n".join("\n".join(ln.text for ln in page.lines) for page in pages) + "\n"


def to_json(pages: Sequence[PageResult]) -> str:
    return json.dumps({"pages": [p.to_json() for p in pages]}, ensure_ascii=False, indent=1)


def to_page_xml(page: PageResult, image_name: str | None = None) -> str:
    """PAGE-XML 2019 of one page (core.formats.pagexml); a zip with the images is `interchange.write_page_xml_zip`."""
    from core.formats.pagexml import write_page_xml

    return write_page_xml(page, image_name or page.source).decode("utf-8")


FORMATS = {"md": to_markdown, "txt": to_text, "json": to_json}


def render(pages: Sequence[PageResult], fmt: str) -> str:
    if fmt == "md":
        return to_markdown(pages)
    return FORMATS[fmt](pages)
