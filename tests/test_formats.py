"""core.formats: PAGE-XML and ALTO valid against the official schemas, baselines, the searchable PDF."""

from __future__ import annotations

import html
import io
import json
import re
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pikepdf
import pytest
from lxml import etree
from PIL import Image

from core.formats import ExportPage, baseline
from core.formats.alto import read_alto, write_alto
from core.formats.pagexml import read_page_xml, write_page_xml
from core.formats.pdf import searchable_pdf_bytes
from core.formats.xmlsafe import parse_xml_bytes
from core.geometry import bbox, box_points
from core.synth import make_page
from core.types import Line, PageResult

REPO = Path(__file__).resolve().parent.parent  # not `from conftest`: tests/robustness has a conftest too
NOTES = REPO.parent / "shared" / "data" / "notes"

SCHEMAS = REPO.parent / "shared" / "schemas"
PAGE_NS = "{http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15}"


@pytest.fixture(scope="module")
def xsd():
    if not (SCHEMAS / "page2019.xsd").is_file():
        pytest.skip("../shared/schemas is not present")
    parser = etree.XMLParser(no_network=True)
    return {name: etree.XMLSchema(etree.parse(str(SCHEMAS / f), parser))
            for name, f in (("page", "page2019.xsd"), ("alto", "alto-4-4.xsd"))}


def assert_valid(schema: etree.XMLSchema, data: bytes) -> etree._Element:
    root = etree.fromstring(data)
    assert schema.validate(root), [str(e) for e in schema.error_log][:5]
    return root


def synth_result(seed: int = 1) -> tuple[Image.Image, PageResult]:
    """A synthetic notes page with text of a plausible length for each box, and a margin column."""
    sp = make_page(seed, width=1200)
    lines = []
    for i, box in enumerate(sp.boxes):
        x0, y0, x1, y1 = bbox(box)
        n = max(1, round((x1 - x0) / max(1.0, (y1 - y0)) * 1.6))  # about as many characters as fit
        text = " ".join(["word"] * (n // 5 + 1))[:n].strip() or "a"
        lines.append(Line(box, f"{text}{i}", confidence=0.5 + (i % 5) / 10, column=1 if x0 > 0.6 * sp.image.width else 0))
    return sp.image, PageResult("synth.png", 1, sp.image.width, sp.image.height, lines)


def tricky_page() -> PageResult:
    lines = [
        Line(box_points(10, 10, 300, 50), "a < b & \"c\" → ü", 0.93),
        Line([(10, 60), (300, 66), (299, 104), (11, 98), (4, 80)], "  odd  spacing", 0.5),
        Line(box_points(400, 10, 600, 50), "", 1.7, column=1),  # no text, confidence beyond 1
        Line(box_points(-5, 110, 300, 900), "poking out\x00of the page", -0.2),
    ]
    return PageResult("notes.pdf", 3, 640, 480, lines)


def test_page_xml_is_valid_2019_with_baselines_conf_and_reading_order(xsd):
    _, page = synth_result(1)
    root = assert_valid(xsd["page"], write_page_xml(page, "synth-p0001.png", document="synth.png"))
    meta = root.find(f"{PAGE_NS}Metadata")
    assert [c.tag.removeprefix(PAGE_NS) for c in meta][:3] == ["Creator", "Created", "LastChange"]
    pg = root.find(f"{PAGE_NS}Page")
    assert (pg.get("imageFilename"), pg.get("imageWidth")) == ("synth-p0001.png", str(page.width))
    region_ids = [r.get("id") for r in pg.iter(f"{PAGE_NS}TextRegion")]
    assert [r.get("regionRef") for r in pg.iter(f"{PAGE_NS}RegionRefIndexed")] == region_ids
    text_lines = list(pg.iter(f"{PAGE_NS}TextLine"))
    assert [t.findtext(f"{PAGE_NS}TextEquiv/{PAGE_NS}Unicode") for t in text_lines] == [ln.text for ln in page.lines]
    assert [float(t.find(f"{PAGE_NS}TextEquiv").get("conf")) for t in text_lines] == \
        pytest.approx([ln.confidence for ln in page.lines], abs=1e-4)
    for t, ln in zip(text_lines, page.lines, strict=True):
        base = [tuple(map(int, p.split(","))) for p in t.find(f"{PAGE_NS}Baseline").get("points").split()]
        assert len(base) == 2 and base[0][0] < base[1][0]
        x0, y0, x1, y1 = bbox(ln.points)
        assert all(x0 - 1 <= x <= x1 + 1 and (y0 + y1) / 2 < y <= y1 + 1 for x, y in base), "on the lower edge"


def test_page_xml_edge_cases_stay_valid_and_read_back(xsd):
    page = tricky_page()
    data = write_page_xml(page, "notes-p0003.png", document="notes.pdf")
    assert_valid(xsd["page"], data)
    assert_valid(xsd["page"], write_page_xml(PageResult("empty.png", 1, 100, 100, []), "empty.png"))
    parsed = read_page_xml(parse_xml_bytes(data), "x.xml")
    assert (parsed.document, parsed.page_no, parsed.image_ref) == ("notes.pdf", 3, "notes-p0003.png")
    assert [ln.text for ln in parsed.lines] == ["a < b & \"c\" → ü", "  odd  spacing", "", "poking outof the page"]
    assert [ln.confidence for ln in parsed.lines] == [0.93, 0.5, 1.0, 0.0]
    assert parsed.lines[3].points == [(0, 110), (300, 110), (300, 480), (0, 480)]  # clipped into the image


def test_alto_is_valid_v4_with_boxes_shapes_baselines_and_word_confidence(xsd):
    _, synth = synth_result(2)
    data = write_alto([(tricky_page(), "notes-p0003.png"), (synth, "synth-p0001.png")])
    root = assert_valid(xsd["alto"], data)
    ns = {"a": "http://www.loc.gov/standards/alto/ns-v4#"}
    assert len(root.findall("a:Layout/a:Page", ns)) == 2
    first = root.find("a:Layout/a:Page/a:PrintSpace/a:TextBlock/a:TextLine", ns)
    assert {"HPOS", "VPOS", "WIDTH", "HEIGHT", "BASELINE"} <= set(first.keys())
    assert first.find("a:Shape/a:Polygon", ns) is not None
    words = first.findall("a:String", ns)
    assert [w.get("CONTENT") for w in words] == ["a", "<", "b", "&", "\"c\"", "→", "ü"]
    assert {w.get("WC") for w in words} == {"0.9300"} and len(first.findall("a:SP", ns)) == 6
    pages = read_alto(parse_xml_bytes(data), "a.xml")
    assert [p.image_ref for p in pages] == ["notes-p0003.png", "synth-p0001.png"]
    assert [ln.text for ln in pages[0].lines] == ["a < b & \"c\" → ü", "  odd  spacing", "", "poking outof the page"]
    assert [ln.text for ln in pages[1].lines] == [ln.text for ln in synth.lines]
    got = [c for p in pages[1].lines[0].points for c in p]
    assert got == pytest.approx([c for p in synth.lines[0].points for c in p], abs=0.06)


@pytest.mark.parametrize("polygon", [
    box_points(10, 10, 200, 40),
    [(10, 30), (200, 10), (204, 48), (14, 68)],  # tilted
    [(0, 0), (100, 0), (100, 12), (200, 12), (200, 40), (0, 40)],  # not convex: a step
])
def test_baseline_lies_inside_the_line_polygon_along_its_bottom(polygon):
    base = baseline(polygon)
    poly = np.asarray(polygon, dtype=np.float32).reshape(-1, 1, 2)
    assert all(cv2.pointPolygonTest(poly, p, False) >= 0 for p in base)
    x0, y0, x1, y1 = bbox(polygon)
    assert base[1][0] - base[0][0] > 0.4 * (x1 - x0)
    assert min(p[1] for p in base) > (y0 + y1) / 2 - 1


# -- the searchable PDF ------------------------------------------------------------------------
WORD_RE = re.compile(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>')


def pdf_lines(pdf: bytes, tmp_path, pages: list[PageResult], dpi: int = 200) -> list[list[str]]:
    """The PDF's text per page, per line box: poppler's words assigned to the box they overlap most."""
    path = tmp_path / "out.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(["pdftotext", "-bbox", str(path), "-"], capture_output=True, text=True, check=True).stdout
    result = []
    for page_html, page in zip(out.split("<page ")[1:], pages, strict=True):
        got: list[list[tuple[float, str]]] = [[] for _ in page.lines]
        boxes = [[v * 72 / dpi for v in bbox(ln.points)] for ln in page.lines]
        for m in WORD_RE.finditer(page_html):
            wx0, wy0, wx1, wy1 = map(float, m.groups()[:4])
            overlap = [max(0, min(wx1, b[2]) - max(wx0, b[0])) * max(0, min(wy1, b[3]) - max(wy0, b[1])) for b in boxes]
            got[int(np.argmax(overlap))].append((wx0, html.unescape(m.group(5))))
        result.append([" ".join(w for _, w in sorted(words)) for words in got])
    return result


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_pdf_text_layer_reads_back_line_for_line_and_embeds_images_as_they_are(tmp_path):
    pages, exports = [], []
    for n, seed in enumerate((1, 2), 1):
        img, res = synth_result(seed)
        res.page = n
        data = png_bytes(img) if n == 1 else _jpeg(img)
        pages.append(res)
        exports.append(ExportPage(res, lambda d=data: d, "synth", "synth.png", "png" if n == 1 else "jpg"))
    pdf = searchable_pdf_bytes(exports)
    assert pdf_lines(pdf, tmp_path, pages) == [[ln.text for ln in p.lines] for p in pages]
    images = [exports[0].load_image(), exports[1].load_image()]
    assert len(pdf) < 1.2 * sum(len(b) for b in images)
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        raw = [next(iter(p.get_images().values())).read_raw_bytes() for p in doc.pages]
        assert doc.pages[0].mediabox[2] == pytest.approx(pages[0].width * 72 / 200, abs=0.01)
    assert raw[1] == images[1], "the JPEG went in unchanged"
    with Image.open(io.BytesIO(images[0])) as png:
        assert png.mode == "RGB"
    assert _inflate(raw[0]) == _inflate(_idat(images[0])), "the PNG's compressed rows went in unchanged"


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _idat(png: bytes) -> bytes:
    from core.formats.pdf import _png_parts

    return _png_parts(png)[1]


def _inflate(data: bytes) -> bytes:
    import zlib

    return zlib.decompress(data)


def test_pdf_carries_each_page_as_valid_page_xml_and_gives_its_images_back(xsd, tmp_path):
    from core.formats.pdf import iter_searchable_pdf

    pages, exports, images = [], [], []
    for n, seed in enumerate((4, 5), 1):
        img, res = synth_result(seed)
        res.page = n
        data = png_bytes(img) if n == 1 else _jpeg(img)
        pages.append(res)
        images.append(data)
        exports.append(ExportPage(res, lambda d=data: d, "synth", "synth.png", "png" if n == 1 else "jpg",
                                  created=1.7e9, changed=1.7e9 + 60))
    (tmp_path / "s.pdf").write_bytes(searchable_pdf_bytes(exports))
    with pikepdf.open(tmp_path / "s.pdf") as doc:
        assert sorted(doc.attachments) == ["synth-p0001.xml", "synth-p0002.xml"]
        for page, name in zip(doc.pages, ("synth-p0001.xml", "synth-p0002.xml"), strict=True):
            (spec,) = page.obj.AF  # tied to its page, not only listed in the document
            assert str(spec.UF) == name and spec.AFRelationship == pikepdf.Name.Supplement
    back = list(iter_searchable_pdf(tmp_path / "s.pdf"))
    assert [p.problem for p in back] == [None, None]
    for got, res, exp in zip(back, pages, exports, strict=True):
        root = assert_valid(xsd["page"], got.page_xml)
        parsed = read_page_xml(root, "x")
        assert (parsed.image_ref, parsed.document, parsed.page_no) == (exp.image_name, "synth.png", res.page)
        assert [ln.text for ln in parsed.lines] == [ln.text for ln in res.lines]
        assert root.findtext(f"{PAGE_NS}Metadata/{PAGE_NS}LastChange") == "2023-11-14T22:14:20Z"
    assert back[1].image == images[1] and back[1].image_suffix == "jpg", "the JPEG comes back byte for byte"
    with Image.open(io.BytesIO(back[0].image)) as got, Image.open(io.BytesIO(images[0])) as orig:
        assert back[0].image_suffix == "png" and got.tobytes() == orig.tobytes(), "the PNG's pixels come back"
    assert _idat(back[0].image) == _idat(images[0]), "its compressed rows unchanged"


def test_pdf_without_our_page_data_is_refused_with_the_reason(tmp_path):
    from core.errors import BadInputError
    from core.formats.pdf import NOT_OURS, iter_searchable_pdf

    Image.new("L", (100, 80), 255).save(tmp_path / "scan.pdf")
    with pytest.raises(BadInputError, match="without Inkscribe's page data"):
        next(iter_searchable_pdf(tmp_path / "scan.pdf"))
    assert "Upload page" in NOT_OURS
    (tmp_path / "locked.pdf").write_bytes(b"")
    with pikepdf.new() as pdf:
        pdf.add_blank_page()
        pdf.save(tmp_path / "locked.pdf", encryption=pikepdf.Encryption(owner="o", user="u"))
    with pytest.raises(BadInputError, match="password"):
        next(iter_searchable_pdf(tmp_path / "locked.pdf"))


def test_pdf_damaged_page_is_named_and_a_page_data_bomb_is_not_unpacked(tmp_path):
    from core.errors import BadInputError
    from core.formats.pdf import _embedded_bytes, iter_searchable_pdf

    exports = []
    for n in (1, 2):
        img, res = synth_result(n)
        res.page = n
        exports.append(ExportPage(res, lambda i=img: png_bytes(i), "synth", "synth.png"))
    (tmp_path / "s.pdf").write_bytes(searchable_pdf_bytes(exports))
    with pikepdf.open(tmp_path / "s.pdf", allow_overwriting_input=True) as doc:
        image = doc.pages[0].Resources.XObject.Im0
        image.write(b"\x00garbage, not deflated", filter=pikepdf.Name.FlateDecode)  # no predictor: decoded, and fails
        doc.save(tmp_path / "s.pdf")
    back = list(iter_searchable_pdf(tmp_path / "s.pdf"))
    assert back[0].problem and "damaged" in back[0].problem and back[1].problem is None
    with pikepdf.open(tmp_path / "s.pdf") as doc:
        (spec,) = doc.pages[1].obj.AF
        assert _embedded_bytes(spec) == back[1].page_xml
        with pytest.raises(BadInputError, match="more than 1000 bytes"):
            _embedded_bytes(spec, limit=1000)  # inflated no further than the limit


def test_pdf_on_a_real_notes_page(tmp_path, notes_dir):
    row = json.loads((notes_dir / "labels.jsonl").read_text().splitlines()[0])
    data = (NOTES / row["page"]).read_bytes()
    with Image.open(io.BytesIO(data)) as img:
        w, h = img.size
    lines = [Line([tuple(p) for p in ln["points"]], ln["text"], 0.9) for ln in row["lines"] if ln["text"].strip()]
    page = PageResult(row["page"], 1, w, h, lines)
    pdf = searchable_pdf_bytes([ExportPage(page, lambda: data, "notes", "notes", "jpg")])
    assert pdf_lines(pdf, tmp_path, [page]) == [[" ".join(ln.text.split()) for ln in lines]]
    assert len(pdf) < 1.2 * len(data)


def test_pdf_page_shows_the_image_and_nothing_of_the_text(tmp_path):
    img, res = synth_result(3)
    blank = PageResult(res.source, 1, res.width, res.height, [])
    shown = [_render(searchable_pdf_bytes([ExportPage(r, lambda: png_bytes(img), "s", "s")]), img.size, tmp_path)
             for r in (res, blank)]
    assert np.array_equal(shown[0], shown[1]), "the text layer is invisible"
    original = np.asarray(img, dtype=np.float32)  # the renderer smooths scan noise: compare with the flipped page
    assert np.abs(shown[0] - original).mean() < 0.5 * np.abs(shown[0] - original[::-1]).mean(), "the page, upright"


def _render(pdf: bytes, size: tuple[int, int], tmp_path) -> np.ndarray:
    (tmp_path / "s.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-scale-to-x", str(size[0]), "-scale-to-y", str(size[1]), "-png", "-singlefile",
                    str(tmp_path / "s.pdf"), str(tmp_path / "r")], check=True)
    with Image.open(tmp_path / "r.png") as rendered:
        return np.asarray(rendered.convert("RGB"), dtype=np.float32)


def test_pdf_steeply_tilted_line_follows_its_box(tmp_path):
    import math

    angle = math.radians(20)
    cx, cy, half_w, half_h = 400, 300, 250, 25
    ux, uy, vx, vy = math.cos(angle), -math.sin(angle), math.sin(angle), math.cos(angle)  # along, down
    quad = [(cx - ux * half_w - vx * half_h, cy - uy * half_w - vy * half_h),
            (cx + ux * half_w - vx * half_h, cy + uy * half_w - vy * half_h),
            (cx + ux * half_w + vx * half_h, cy + uy * half_w + vy * half_h),
            (cx - ux * half_w + vx * half_h, cy - uy * half_w + vy * half_h)]
    page = PageResult("t.png", 1, 800, 600, [Line(quad, "climbing up the page", 0.9)])
    pdf = searchable_pdf_bytes([ExportPage(page, lambda: png_bytes(Image.new("RGB", (800, 600), "white")), "t", "t")])
    (tmp_path / "t.pdf").write_bytes(pdf)
    raw = subprocess.run(["pdftotext", "-raw", str(tmp_path / "t.pdf"), "-"], capture_output=True, text=True).stdout
    assert raw.split() == ["climbing", "up", "the", "page"]
    with pikepdf.open(tmp_path / "t.pdf") as doc:
        ops = doc.pages[0].Contents.read_bytes().decode()
    a, b = (float(v) for v in re.search(r"Tz ([-\d.]+) ([-\d.]+) ", ops).groups())
    assert math.degrees(math.atan2(b, a)) == pytest.approx(20, abs=0.5)  # the text turns with the line
