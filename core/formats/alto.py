"""ALTO: write v4 (valid against the ALTO 4.4 schema), read v2, v3 and v4.

One file, one `Page` per page. A page's lines sit in TextBlocks (one per run of consecutive
lines in one column, as in PAGE); a TextLine has its box (HPOS/VPOS/WIDTH/HEIGHT), polygon
Shape and BASELINE, and its words as Strings with WC (the line's confidence) and SP between
them. A line whose spacing a word split would change keeps its text in one String.
The image of each page is named by `sourceImageInformation`: `fileName` for the first page,
one `fileIdentifier` per page (location = the Page ID) when there are several.
"""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree

from core.errors import BadInputError
from core.formats import CREATOR, ParsedLine, ParsedPage, baseline, iso_utc, points_attr, xml_text
from core.formats.pagexml import _Maker, _regions
from core.geometry import bbox
from core.types import Line, PageResult

NS_V4 = "http://www.loc.gov/standards/alto/ns-v4#"
KNOWN = {f"http://www.loc.gov/standards/alto/ns-v{v}#": v for v in (2, 3, 4)}
XSI = "http://www.w3.org/2001/XMLSchema-instance"
SCHEMA = "http://www.loc.gov/alto/v4/alto-4-4.xsd"


def write_alto(pages: Sequence[tuple[PageResult, str]], created: float | None = None) -> bytes:
    """ALTO 4 for (page, image file name) pairs, in order."""
    e = _Maker(NS_V4)
    root = e("alto", nsmap={None: NS_V4, "xsi": XSI}, SCHEMAVERSION="4.4")
    root.set(f"{{{XSI}}}schemaLocation", f"{NS_V4} {SCHEMA}")
    desc = e.sub(root, "Description")
    e.sub(desc, "MeasurementUnit").text = "pixel"
    info = e.sub(desc, "sourceImageInformation")
    if pages:
        e.sub(info, "fileName").text = xml_text(pages[0][1])
    if len(pages) > 1:
        for n, (_, image_name) in enumerate(pages, 1):
            e.sub(info, "fileIdentifier", fileIdentifierLocation=f"P{n}").text = xml_text(image_name)
    proc = e.sub(desc, "Processing", ID="proc1")
    e.sub(proc, "processingDateTime").text = iso_utc(created)
    e.sub(e.sub(proc, "processingSoftware"), "softwareName").text = CREATOR
    layout = e.sub(root, "Layout")
    for n, (page, _) in enumerate(pages, 1):
        _write_page(e, layout, n, page)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _box(points) -> dict[str, str]:
    x0, y0, x1, y1 = bbox(points)
    x0, y0 = max(0.0, x0), max(0.0, y0)
    return {"HPOS": _n(x0), "VPOS": _n(y0), "WIDTH": _n(max(0.0, x1 - x0)), "HEIGHT": _n(max(0.0, y1 - y0))}


def _n(v: float) -> str:
    return str(round(v)) if abs(v - round(v)) < 0.05 else f"{v:.1f}"


def _write_page(e: _Maker, layout: etree._Element, n: int, page: PageResult) -> None:
    pg = e.sub(layout, "Page", ID=f"P{n}", PHYSICAL_IMG_NR=str(n), WIDTH=str(page.width), HEIGHT=str(page.height),
               PROCESSINGREFS="proc1")
    space = e.sub(pg, "PrintSpace", HPOS="0", VPOS="0", WIDTH=str(page.width), HEIGHT=str(page.height))
    for k, members in enumerate(_regions(page.lines), 1):
        block = e.sub(space, "TextBlock", ID=f"P{n}_B{k}", **_box([p for ln in members for p in ln.points]))
        for i, ln in enumerate(members, 1):
            pts = [(min(max(0.0, x), page.width), min(max(0.0, y), page.height)) for x, y in ln.points]
            _write_line(e, block, f"P{n}_B{k}_L{i}", Line(pts, ln.text, ln.confidence))


def _write_line(e: _Maker, block: etree._Element, ident: str, ln: Line) -> None:
    line = e.sub(block, "TextLine", ID=ident, **_box(ln.points), BASELINE=points_attr(baseline(ln.points)))
    e.sub(e.sub(line, "Shape"), "Polygon", POINTS=points_attr(ln.points))
    wc = f"{min(1.0, max(0.0, float(ln.confidence))):.4f}"
    text = xml_text(ln.text)
    words = text.split()
    if " ".join(words) != text or not words:  # odd spacing (or none): one String keeps the text as it is
        e.sub(line, "String", ID=f"{ident}_S1", CONTENT=text, WC=wc, **_box(ln.points))
        return
    x0, y0, x1, y1 = bbox(ln.points)
    per_char = (x1 - x0) / max(1, len(text))
    pos = 0
    for k, word in enumerate(words, 1):
        if k > 1:
            e.sub(line, "SP", HPOS=_n(x0 + per_char * pos), VPOS=_n(y0), WIDTH=_n(per_char))
            pos += 1
        e.sub(line, "String", ID=f"{ident}_S{k}", CONTENT=word, WC=wc, HPOS=_n(x0 + per_char * pos),
              VPOS=_n(y0), WIDTH=_n(per_char * len(word)), HEIGHT=_n(y1 - y0))
        pos += len(word)


# -- reading ----------------------------------------------------------------------------------
def is_alto(ns: str) -> bool:
    return ns in KNOWN


def read_alto(root: etree._Element, label: str) -> list[ParsedPage]:
    """Every Page of an ALTO file, lines in file order, coordinates scaled to pixels where the file says how."""
    ns = etree.QName(root).namespace or ""
    if ns not in KNOWN or etree.QName(root).localname != "alto":
        raise BadInputError(f"not ALTO v2-v4 (root {etree.QName(root).localname} in namespace {ns or 'none'!r})")
    q = {"a": ns}
    info = root.find("a:Description/a:sourceImageInformation", q)
    file_name = info.findtext("a:fileName", namespaces=q) if info is not None else None
    per_page = {fi.get("fileIdentifierLocation"): (fi.text or "").strip()
                for fi in (info.iterfind("a:fileIdentifier", q) if info is not None else [])}
    pages = root.findall("a:Layout/a:Page", q)
    out = []
    for n, pg in enumerate(pages, 1):
        ref = per_page.get(pg.get("ID") or "") or (file_name.strip() if file_name and n == 1 else None)
        page = ParsedPage(ref, _float(pg.get("WIDTH")), _float(pg.get("HEIGHT")),
                          label=label if len(pages) == 1 else f"{label} page {n}")
        for m, tl in enumerate(pg.iter(f"{{{ns}}}TextLine"), 1):
            page.lines.append(_line(tl, q, tl.get("ID") or f"line {m}"))
        out.append(page)
    return out


def _line(tl: etree._Element, q: dict, ident: str) -> ParsedLine:
    poly = tl.find("a:Shape/a:Polygon", q)
    pts = parse_alto_points(poly.get("POINTS", "")) if poly is not None else []
    if len(pts) < 3:
        pts = _rect(tl)
    parts, confs = [], []
    for el in tl:
        name = etree.QName(el).localname
        if name == "String":
            parts.append(el.get("CONTENT", ""))
            if el.get("WC") is not None:
                confs.append(_float(el.get("WC")) or 0.0)
        elif name == "SP":
            parts.append(" ")
        elif name == "HYP":
            parts.append(el.get("CONTENT", "-"))
    return ParsedLine(ident, pts, "".join(_join(parts)), min(confs) if confs else None)


def _join(parts: list[str]) -> list[str]:
    """Strings with an SP between them; adjacent Strings without one (some writers omit SP) get a space."""
    out: list[str] = []
    for p in parts:
        if out and p != " " and out[-1] != " " and not p.startswith(("-", "¬")):
            out.append(" ")
        out.append(p)
    return out


def _rect(el: etree._Element) -> list[tuple[float, float]]:
    x, y, w, h = (_float(el.get(k)) for k in ("HPOS", "VPOS", "WIDTH", "HEIGHT"))
    if None in (x, y, w, h):
        return []
    return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]


def parse_alto_points(value: str) -> list[tuple[float, float]]:
    """ALTO polygons come as 'x,y x,y' or 'x y x y' (both are in use)."""
    nums = value.replace(",", " ").split()
    try:
        vals = [float(v) for v in nums]
    except ValueError:
        return []
    if len(vals) % 2:
        return []
    return list(zip(vals[::2], vals[1::2], strict=True))


def _float(v: str | None) -> float | None:
    try:
        return float(v) if v is not None else None
    except ValueError:
        return None
