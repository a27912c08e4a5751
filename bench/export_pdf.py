"""Searchable-PDF export: size against the page images and time per page, the way the app and CLI export.

Pages are stored PNGs (what the store keeps: compress_level=1) of synthetic note pages, or with
--notes the real notes' JPEG pages and their labelled lines (../shared/data/notes, read in place).
The bar (issue 29): a 50-page PDF within 1.2x the images' bytes and under 1 s a page. Also checks
how many lines pdftotext gives back whole (-raw: content order, which is reading order; -layout:
as laid out, where boxes that overlap on the page can interleave), and that the PDF reads back as
Inkscribe imports it (each page's attached PAGE-XML and its image: pages, texts, JPEGs byte for
byte). Prints one JSON object.

    OMP_NUM_THREADS=1 .venv/bin/python bench/export_pdf.py --pages 50
    OMP_NUM_THREADS=1 .venv/bin/python bench/export_pdf.py --pages 50 --notes
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.formats import ExportPage  # noqa: E402
from core.formats.pdf import write_searchable_pdf  # noqa: E402
from core.geometry import bbox, clip_points  # noqa: E402
from core.types import Line, PageResult  # noqa: E402


def synth_pages(n: int, distinct: int) -> list[ExportPage]:
    """`n` pages cycling through `distinct` rendered synthetic pages, each stored as the store stores it."""
    from core.synth import make_page

    made = []
    for seed in range(distinct):
        sp = make_page(seed)
        buf = io.BytesIO()
        sp.image.save(buf, format="PNG", compress_level=1)
        w, h = sp.image.size
        lines = [Line(clip_points(b, w, h), _text_for(b), 0.8) for b in sp.boxes]
        made.append((buf.getvalue(), w, h, lines))
    return [_page(i, *made[i % distinct], "png") for i in range(n)]


def notes_pages(n: int) -> list[ExportPage]:
    from devdata import NOTES_LABELS

    rows = [json.loads(r) for r in Path(NOTES_LABELS).read_text().splitlines()[:n]]
    out = []
    for i, row in enumerate(rows):
        data = (Path(NOTES_LABELS).parent / row["page"]).read_bytes()
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
        lines = [Line([tuple(p) for p in ln["points"]], ln["text"], 0.9) for ln in row["lines"]]
        out.append(_page(i, data, w, h, lines, "jpg"))
    return out


def _page(i: int, data: bytes, w: int, h: int, lines: list[Line], suffix: str) -> ExportPage:
    return ExportPage(PageResult("bench.pdf", i + 1, w, h, lines), lambda: data, "bench", "bench.pdf", suffix)


def _text_for(box) -> str:
    x0, y0, x1, y1 = bbox(box)
    n = max(1, round((x1 - x0) / max(1.0, y1 - y0) * 1.6))
    return ("notes on the stack " * 20)[:n].strip() or "x"


def _found(pdf: Path, pages: list[ExportPage], mode: str) -> int:
    """Lines whose text (spaces normalised: -layout spreads stretched words) pdftotext gives back on one line."""
    text = subprocess.run(["pdftotext", mode, str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    rows = [" ".join(row.split()) for row in text.splitlines()]
    return sum(1 for p in pages for ln in p.result.lines
               if ln.text.strip() and any(" ".join(ln.text.split()) in row for row in rows))


def _read_back(pdf: Path, pages: list[ExportPage]) -> dict:
    """What `inkscribe import` reads of the PDF: pages whose PAGE-XML gives the texts and whose image is the one written."""
    from core.formats.pagexml import read_page_xml
    from core.formats.pdf import iter_searchable_pdf
    from core.formats.xmlsafe import parse_xml_bytes

    start = time.perf_counter()
    same, page_data = 0, 0
    for got, page in zip(iter_searchable_pdf(pdf), pages, strict=True):
        page_data += len(got.page_xml)
        parsed = read_page_xml(parse_xml_bytes(got.page_xml), "bench")
        texts_ok = [ln.text for ln in parsed.lines] == [ln.text for ln in page.result.lines]
        image_ok = got.image == page.load_image() if got.image_suffix == "jpg" else _pixels(got.image) == _pixels(
            page.load_image())
        same += texts_ok and image_ok
    return {"pages_read_back_whole": same, "page_xml_mb_uncompressed": round(page_data / 1e6, 2),
            "read_back_and_check_seconds": round(time.perf_counter() - start, 3)}


def _pixels(data: bytes) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return img.tobytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=50)
    ap.add_argument("--distinct", type=int, default=8, help="synthetic pages rendered (then cycled)")
    ap.add_argument("--notes", action="store_true", help="the real notes pages (JPEG) instead of synthetic PNGs")
    args = ap.parse_args()
    pages = notes_pages(args.pages) if args.notes else synth_pages(args.pages, args.distinct)
    image_bytes = sum(len(p.load_image()) for p in pages)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.pdf"
        start = time.perf_counter()
        with open(out, "wb") as fh:
            write_searchable_pdf(pages, fh)
        seconds = time.perf_counter() - start
        size = out.stat().st_size
        found = {mode: _found(out, pages, mode) for mode in ("-raw", "-layout")}
        back = _read_back(out, pages)
    lines = sum(len([ln for ln in p.result.lines if ln.text.strip()]) for p in pages)
    print(json.dumps({
        "source": "notes (JPEG)" if args.notes else "synthetic (stored PNG)", "pages": len(pages),
        "image_mb": round(image_bytes / 1e6, 2), "pdf_mb": round(size / 1e6, 2), "size_ratio": round(size / image_bytes, 4),
        "seconds": round(seconds, 3), "seconds_per_page": round(seconds / len(pages), 4),
        "lines": lines, "lines_found_by_pdftotext_raw": found["-raw"], "lines_found_by_pdftotext_layout": found["-layout"],
        **back,
    }, indent=1))


if __name__ == "__main__":
    main()
