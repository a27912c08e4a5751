"""A searchable PDF: each page image with an invisible text layer over every line.

pikepdf (qpdf) writes the file because it lets the image bytes go in as they are: a JPEG as
a DCTDecode stream, an 8-bit grey or RGB PNG's IDAT data as a FlateDecode stream with the PNG
predictor, so the PDF is about the size of the images and nothing is re-encoded
(bench/export_pdf.py measures size and time). The text uses a glyph-less font (the approach
of Tesseract and OCRmyPDF): every character maps to one empty glyph, a ToUnicode map gives
viewers the real characters, and each line is stretched (Tz) and turned to fill its box.

So that the PDF also comes back in (`inkscribe import notes.pdf`), each page carries its PAGE-XML
2019 (`core.formats.pagexml`) as an attached file, listed in the document's EmbeddedFiles and
tied to its page by the page's /AF entry (PDF 2.0 associated files; older readers ignore the
key). `iter_searchable_pdf` reads that back with the page image taken out of its stream as
it went in: a JPEG byte for byte, a PNG's compressed rows unchanged under a new PNG header.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import pikepdf
from pikepdf import Array, Dictionary, Name

from core.errors import BadInputError
from core.formats import CREATOR, ExportPage
from core.formats.xmlsafe import MAX_XML_BYTES
from core.geometry import min_area_quad
from core.types import Line

ADVANCE = 500  # glyph advance in 1/1000 em: the natural width of a character is half the font size
DESCENT = 0.2  # share of the line height below the baseline
MAX_LEVEL_DEG = 8.0  # lines tilted less than this get level text (see _placement)
PAGE_DATA_DESC = "PAGE-XML 2019 of this page (Inkscribe): line boxes, baselines, texts, reading order"
NOT_OURS = ("a PDF without Inkscribe's page data; import its pages as images by uploading it on the Upload page "
            "(Inkscribe reads them again)")


def write_searchable_pdf(pages: Sequence[ExportPage], out: BinaryIO, dpi: int = 200, title: str = "") -> None:
    """Write the PDF to `out`; page images are read one at a time."""
    pdf = pikepdf.new()
    cids = _cid_map(ln.text for p in pages for ln in p.result.lines)
    font = _font(pdf, cids)
    names: set[str] = set()
    for page in pages:
        _add_page(pdf, page, font, cids, 72.0 / dpi, _page_data(pdf, page, names))
    pdf.docinfo[Name.Producer] = CREATOR
    pdf.docinfo[Name.Creator] = CREATOR
    if title:
        pdf.docinfo[Name.Title] = title
    pdf.save(out, compress_streams=True, stream_decode_level=pikepdf.StreamDecodeLevel.none,
             object_stream_mode=pikepdf.ObjectStreamMode.generate)


def searchable_pdf_bytes(pages: Sequence[ExportPage], dpi: int = 200, title: str = "") -> bytes:
    buf = io.BytesIO()
    write_searchable_pdf(pages, buf, dpi, title)
    return buf.getvalue()


def _printable(text: str) -> str:
    return "".join(c for c in text if c == " " or c.isprintable())


def _cid_map(texts: Iterable[str]) -> dict[str, int]:
    """A code for every character used (1…n), so any Unicode text fits two-byte codes."""
    chars = sorted({c for t in texts for c in _printable(t)})
    if len(chars) > 65534:
        raise ValueError("more than 65534 different characters")
    return {c: i for i, c in enumerate(chars, 1)}


# -- the page --------------------------------------------------------------------------------
def _page_data(pdf: pikepdf.Pdf, page: ExportPage, used: set[str]) -> pikepdf.Object:
    """The page's PAGE-XML as an attached file (EmbeddedFiles name tree); returns its file spec for /AF."""
    from core.formats.pagexml import write_page_xml

    name, n = f"{page.name}.xml", 1
    while name in used:  # two pages of one stem and number (never from the store, but cheap to rule out)
        n += 1
        name = f"{page.name}-{n}.xml"
    used.add(name)
    xml = write_page_xml(page.result, page.image_name, page.document, page.created, page.changed)
    pdf.attachments[name] = pikepdf.AttachedFileSpec(pdf, xml, filename=name, mime_type="application/xml",
                                                     description=PAGE_DATA_DESC, relationship=Name.Supplement)
    return pdf.attachments[name].obj


def _add_page(pdf: pikepdf.Pdf, page: ExportPage, font: pikepdf.Object, cids: dict[str, int], scale: float,
              page_data: pikepdf.Object) -> None:
    res = page.result
    w_pt, h_pt = res.width * scale, res.height * scale
    image = image_xobject(pdf, page.load_image())
    ops = [f"q {w_pt:.3f} 0 0 {h_pt:.3f} 0 0 cm /Im0 Do Q", "BT 3 Tr"]
    ops += [op for ln in res.lines for op in _line_ops(ln, cids, scale, h_pt)]
    ops.append("ET")
    content = pikepdf.Stream(pdf, "\n".join(ops).encode("ascii"))
    pdf.pages.append(pikepdf.Page(Dictionary(
        Type=Name.Page, MediaBox=Array([0, 0, round(w_pt, 3), round(h_pt, 3)]), Contents=pdf.make_indirect(content),
        Resources=Dictionary(XObject=Dictionary(Im0=image), Font=Dictionary(F1=font)), AF=Array([page_data]),
    )))


def _line_ops(ln: Line, cids: dict[str, int], scale: float, h_pt: float) -> list[str]:
    """Text operators placing one line's text over its box."""
    text = _printable(ln.text)
    if not text.strip() or len(ln.points) < 3:
        return []
    ox, oy, cos, sin, width, height = _placement(ln.points, scale, h_pt)
    if width < 0.5 or height < 0.5:
        return []
    # Text readers take characters closer than ~0.2 of the font size for overlaid duplicates (fake
    # bold) or as one word, so a long text in a short box gets a smaller font rather than overlap.
    size = min(height, 4.0 * width / len(text))
    # Kept off the box's ends by a little, so two boxes that touch on one row stay two words apart.
    inset = min(0.15 * size, 0.1 * width)
    ox, oy, width = ox + cos * inset, oy + sin * inset, width - 2 * inset
    size = min(size, 4.0 * width / len(text))
    stretch = 100.0 * width / (len(text) * size * ADVANCE / 1000)
    codes = "".join(f"{cids[c]:04X}" for c in text)
    return [f"/F1 {size:.2f} Tf {stretch:.3f} Tz {cos:.5f} {sin:.5f} {-sin:.5f} {cos:.5f} {ox:.2f} {oy:.2f} Tm "
            f"<{codes}> Tj"]


def _placement(points, scale: float, h_pt: float) -> tuple[float, float, float, float, float, float]:
    """Baseline start (PDF points), direction (cos, sin), length and line height of a line's box.

    A line tilted by less than MAX_LEVEL_DEG is set level across its box: text readers split words
    whose letters climb (pdftotext breaks a word when the baseline moves), and a few degrees of a
    handwritten line are well inside its box. Steeper lines follow their rotated box.
    """
    tl, tr, br, bl = [(x * scale, h_pt - y * scale) for x, y in min_area_quad(points)]
    width, height = math.dist(bl, br), math.dist(tl, bl)
    if width < 0.5 or height < 0.5:
        return 0.0, 0.0, 1.0, 0.0, 0.0, 0.0
    cos, sin = (br[0] - bl[0]) / width, (br[1] - bl[1]) / width
    if abs(math.degrees(math.atan2(sin, cos))) < MAX_LEVEL_DEG:
        xs = [x * scale for x, _ in points]
        ys = [h_pt - y * scale for _, y in points]
        middle = (min(ys) + max(ys)) / 2
        return min(xs), middle - (0.5 - DESCENT) * height, 1.0, 0.0, max(xs) - min(xs), height
    return bl[0] + (tl[0] - bl[0]) * DESCENT, bl[1] + (tl[1] - bl[1]) * DESCENT, cos, sin, width, height


# -- images, as they are -------------------------------------------------------------------
def image_xobject(pdf: pikepdf.Pdf, data: bytes) -> pikepdf.Object:
    """The image as a PDF image stream; JPEG and 8-bit grey/RGB PNG bytes go in without re-encoding."""
    if data.startswith(b"\xff\xd8\xff"):
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            mode, size = img.mode, img.size
        if mode in ("L", "RGB"):
            return _stream(pdf, data, size, mode == "RGB", Name.DCTDecode, None)
    elif data.startswith(b"\x89PNG\r\n\x1a\n"):
        png = _png_parts(data)
        if png is not None:
            (w, h, rgb), idat = png
            parms = Dictionary(Predictor=15, Colors=3 if rgb else 1, BitsPerComponent=8, Columns=w)
            return _stream(pdf, idat, (w, h), rgb, Name.FlateDecode, parms)
    return image_xobject(pdf, _as_png(data))


def _stream(pdf, data: bytes, size: tuple[int, int], rgb: bool, filt, parms) -> pikepdf.Object:
    s = pikepdf.Stream(pdf, b"")
    s.write(data, filter=filt, decode_parms=parms)
    s.Type, s.Subtype = Name.XObject, Name.Image
    s.Width, s.Height = size
    s.ColorSpace = Name.DeviceRGB if rgb else Name.DeviceGray
    s.BitsPerComponent = 8
    return pdf.make_indirect(s)


def _png_parts(data: bytes) -> tuple[tuple[int, int, bool], bytes] | None:
    """(width, height, is_rgb) and the joined IDAT data of a PNG a PDF can take as it is, else None."""
    pos, idat, header = 8, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            if depth != 8 or color not in (0, 2) or interlace:
                return None
            header = (w, h, color == 2)
        elif kind in (b"tRNS", b"PLTE"):
            return None
        elif kind == b"IDAT":
            idat.append(chunk)
        elif kind == b"IEND":
            break
        pos += 12 + length
    return (header, b"".join(idat)) if header and idat else None


def _as_png(data: bytes) -> bytes:
    """Anything else (alpha, palette, 16-bit, CMYK JPEG) becomes an RGB PNG once."""
    from PIL import Image

    from core.ingest import to_rgb

    with Image.open(io.BytesIO(data)) as img:
        rgb = to_rgb(img)
    buf = io.BytesIO()
    rgb.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


# -- reading our PDFs back ---------------------------------------------------------------------
@dataclass
class PdfPage:
    """One page of an Inkscribe PDF: its PAGE-XML and image bytes, or why it cannot come back."""

    number: int  # 1-based, in the PDF
    page_xml: bytes = b""
    image: bytes = b""
    image_suffix: str = "png"
    problem: str | None = None


def iter_searchable_pdf(path: Path, max_pixels: int | None = None) -> Iterator[PdfPage]:
    """The pages of a PDF Inkscribe wrote, one at a time (one page image in memory).

    BadInputError (on the first step) for a PDF that cannot be opened or carries none of our
    page data; a single page without it, or with a damaged image, is yielded with `problem` set.
    """
    try:
        pdf = pikepdf.open(path)
    except pikepdf.PasswordError as exc:
        raise BadInputError("the PDF is password-protected; remove the password and import it again") from exc
    except (pikepdf.PdfError, OSError, ValueError) as exc:
        raise BadInputError(f"not a readable PDF ({_first_line(exc)})") from exc
    with pdf:
        try:
            pages = list(pdf.pages)
            specs = [_page_data_spec(page) for page in pages]
        except _DAMAGED as exc:
            raise BadInputError(f"not a readable PDF ({_first_line(exc)})") from exc
        if not any(s is not None for s in specs):
            raise BadInputError(NOT_OURS)
        for n, (page, spec) in enumerate(zip(pages, specs, strict=True), 1):
            if spec is None:
                yield PdfPage(n, problem="the page carries no Inkscribe page data (added to the PDF after export?)")
                continue
            try:
                xml = _embedded_bytes(spec)
                image, suffix = page_image_bytes(page, max_pixels)
            except BadInputError as exc:
                yield PdfPage(n, problem=str(exc))
                continue
            except _DAMAGED as exc:  # whatever a damaged or hand-edited object raises: this page only
                yield PdfPage(n, problem=f"the page is damaged ({_first_line(exc)})")
                continue
            yield PdfPage(n, xml, image, suffix)


_DAMAGED = (pikepdf.PdfError, pikepdf.models.image.UnsupportedImageTypeError,
            pikepdf.models.image.InvalidPdfImageError, NotImplementedError, ValueError, TypeError, KeyError,
            AttributeError, OSError, zlib.error)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:200]


def _page_data_spec(page: pikepdf.Page) -> pikepdf.Object | None:
    """The file spec of the page's attached PAGE-XML (an .xml file among its associated files), else None."""
    files = page.obj.get("/AF")
    if not isinstance(files, Array):
        return None
    for spec in files:
        if isinstance(spec, Dictionary) and "/EF" in spec:
            name = str(spec.get("/UF", spec.get("/F", "")))
            if name.lower().endswith(".xml"):
                return spec
    return None


def _embedded_bytes(spec: pikepdf.Object, limit: int = MAX_XML_BYTES) -> bytes:
    """An attached file's bytes, inflated with a bound (a small stream must not unpack to gigabytes)."""
    ef = spec.get("/EF")
    stream = ef.get("/UF", ef.get("/F")) if isinstance(ef, Dictionary) else None
    if not isinstance(stream, pikepdf.Stream):
        raise BadInputError("its attached page data is missing")
    filters = _filters(stream)
    raw = stream.read_raw_bytes()
    if not filters:
        data = raw
    elif filters == [Name.FlateDecode]:
        inflate = zlib.decompressobj()
        data = inflate.decompress(raw, limit + 1)
    else:
        raise BadInputError(f"its attached page data is stored in a way Inkscribe does not write ({filters})")
    if len(data) > limit:
        size = f"{limit // 2**20} MB" if limit >= 2**20 else f"{limit} bytes"
        raise BadInputError(f"its attached page data unpacks to more than {size}; a page's PAGE-XML is far smaller")
    return data


def _filters(stream: pikepdf.Stream) -> list:
    f = stream.get("/Filter")
    if f is None:
        return []
    return list(f) if isinstance(f, Array) else [f]


def page_image_bytes(page: pikepdf.Page, max_pixels: int | None = None) -> tuple[bytes, str]:
    """(image file bytes, "jpg" | "png") of the page's image as `image_xobject` put it in.

    A JPEG comes out byte for byte; an 8-bit PNG's compressed rows come out unchanged under a
    fresh PNG header (same pixels); anything else (an edited PDF) is decoded once into a PNG.
    """
    images = dict(page.get_images(recursive=False))  # ours sit in the page's own resources
    if not images:
        raise BadInputError("the page has no image")
    stream = images.get("/Im0") or (next(iter(images.values())) if len(images) == 1 else None)
    if stream is None:
        raise BadInputError(f"the page has {len(images)} images; Inkscribe writes one")
    w, h = int(stream.get("/Width", 0)), int(stream.get("/Height", 0))
    if w <= 0 or h <= 0:
        raise BadInputError("the page image has no size")
    if max_pixels and w * h > max_pixels:
        raise BadInputError(f"the page image is {w}×{h}, over the {max_pixels:,}-pixel limit")
    filters = _filters(stream)
    space = stream.get("/ColorSpace")
    if filters == [Name.DCTDecode]:
        data = stream.read_raw_bytes()
        if data.startswith(b"\xff\xd8\xff"):
            return data, "jpg"
    elif filters == [Name.FlateDecode] and space in (Name.DeviceRGB, Name.DeviceGray):
        parms = stream.get("/DecodeParms")
        if isinstance(parms, Array) and len(parms) == 1:
            parms = parms[0]
        rgb = space == Name.DeviceRGB
        if (isinstance(parms, Dictionary) and int(parms.get("/Predictor", 1)) >= 10
                and int(parms.get("/Colors", 1)) == (3 if rgb else 1) and int(parms.get("/BitsPerComponent", 8)) == 8
                and int(parms.get("/Columns", 1)) == w and int(stream.get("/BitsPerComponent", 8)) == 8):
            return _png_file(w, h, rgb, stream.read_raw_bytes()), "png"
    pil = pikepdf.PdfImage(stream).as_pil_image()
    buf = io.BytesIO()
    pil.convert("RGB" if pil.mode not in ("L", "RGB") else pil.mode).save(buf, format="PNG", compress_level=1)
    return buf.getvalue(), "png"


def _png_file(w: int, h: int, rgb: bool, idat: bytes) -> bytes:
    """A PNG around already-compressed, predictor-filtered rows (what `_png_parts` took out)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 2 if rgb else 0, 0, 0, 0)
    step = 1 << 20
    body = b"".join(chunk(b"IDAT", idat[i:i + step]) for i in range(0, len(idat), step))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + body + chunk(b"IEND", b"")


# -- the glyph-less font --------------------------------------------------------------------
def _font(pdf: pikepdf.Pdf, cids: dict[str, int]) -> pikepdf.Object:
    n = len(cids)
    gid_map = pikepdf.Stream(pdf, zlib.compress(b"\x00\x00" + b"\x00\x01" * n))
    gid_map.Filter = Name.FlateDecode
    font_file = pikepdf.Stream(pdf, _glyphless_ttf())
    descriptor = Dictionary(Type=Name.FontDescriptor, FontName=Name("/GlyphLessFont"), Flags=5,
                            FontBBox=Array([0, -200, ADVANCE, 800]), ItalicAngle=0, Ascent=800, Descent=-200,
                            CapHeight=800, StemV=80, FontFile2=pdf.make_indirect(font_file))
    cid_font = Dictionary(Type=Name.Font, Subtype=Name.CIDFontType2, BaseFont=Name("/GlyphLessFont"),
                          CIDSystemInfo=Dictionary(Registry=pikepdf.String("Adobe"), Ordering=pikepdf.String("Identity"),
                                                   Supplement=0),
                          FontDescriptor=pdf.make_indirect(descriptor), DW=ADVANCE,
                          CIDToGIDMap=pdf.make_indirect(gid_map))
    to_unicode = pikepdf.Stream(pdf, _to_unicode(cids))
    return pdf.make_indirect(Dictionary(
        Type=Name.Font, Subtype=Name.Type0, BaseFont=Name("/GlyphLessFont"), Encoding=Name("/Identity-H"),
        DescendantFonts=Array([pdf.make_indirect(cid_font)]), ToUnicode=pdf.make_indirect(to_unicode),
    ))


def _to_unicode(cids: dict[str, int]) -> bytes:
    """The CMap that tells viewers (and pdftotext) which character each code stands for."""
    items = [f"<{cid:04X}> <{c.encode('utf-16-be').hex().upper()}>" for c, cid in cids.items()]
    blocks = []
    for i in range(0, len(items), 100):
        chunk = items[i:i + 100]
        blocks.append(f"{len(chunk)} beginbfchar\n" + "\n".join(chunk) + "\nendbfchar")
    return "\n".join([
        "/CIDInit /ProcSet findresource begin", "12 dict begin", "begincmap",
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def",
        "/CMapName /Adobe-Identity-UCS def", "/CMapType 2 def",
        "1 begincodespacerange", "<0000> <FFFF>", "endcodespacerange", *blocks,
        "endcmap", "CMapName currentdict /CMap defineresource pop", "end", "end", "",
    ]).encode("ascii")


@lru_cache(maxsize=1)
def _glyphless_ttf() -> bytes:
    """A TrueType font of two empty glyphs, built once (about 1 KB)."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    fb = FontBuilder(1000, isTTF=True)
    fb.setupGlyphOrder([".notdef", "blank"])
    fb.setupCharacterMap({0x20: "blank"})
    empty = TTGlyphPen(None).glyph()
    fb.setupGlyf({".notdef": empty, "blank": TTGlyphPen(None).glyph()})
    fb.setupHorizontalMetrics({".notdef": (ADVANCE, 0), "blank": (ADVANCE, 0)})
    fb.setupHorizontalHeader(ascent=800, descent=-200)
    fb.setupNameTable({"familyName": "GlyphLessFont", "styleName": "Regular"})
    fb.setupOS2(sTypoAscender=800, sTypoDescender=-200, usWinAscent=800, usWinDescent=200)
    fb.setupPost()
    buf = io.BytesIO()
    fb.save(buf)
    return buf.getvalue()
