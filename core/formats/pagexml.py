"""PAGE-XML: write the 2019 schema (what Transkribus, eScriptorium, OCR-D read); read 2013 and 2019.

One file per page. Lines sit in TextRegions, one region per run of consecutive lines in one
column, so the ReadingOrder of regions and the order of lines inside them give back the
page's reading order exactly. Every line has Coords, a Baseline and a TextEquiv with conf.
"""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree

from core.errors import BadInputError
from core.formats import CREATOR, ParsedLine, ParsedPage, baseline, clip_int_points, iso_utc, points_attr, xml_text
from core.geometry import bbox
from core.types import Line, PageResult

NS_2019 = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
NS_PREFIX = "http://schema.primaresearch.org/PAGE/gts/pagecontent/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
DOC_ITEM, PAGE_ITEM = "inkscribe:document", "inkscribe:page"


def _regions(lines: Sequence[Line]) -> list[list[Line]]:
    """Runs of consecutive lines in the same column (reading order kept across regions)."""
    runs: list[list[Line]] = []
    for ln in lines:
        if runs and runs[-1][0].column == ln.column:
            runs[-1].append(ln)
        else:
            runs.append([ln])
    return runs


def write_page_xml(page: PageResult, image_name: str, document: str | None = None,
                   created: float | None = None, changed: float | None = None) -> bytes:
    """PAGE-XML 2019 of one page, valid against the official schema."""
    e = _Maker(NS_2019)
    root = e("PcGts", nsmap={None: NS_2019, "xsi": XSI})
    root.set(f"{{{XSI}}}schemaLocation", f"{NS_2019} {NS_2019}/pagecontent.xsd")
    meta = e.sub(root, "Metadata")
    e.sub(meta, "Creator").text = CREATOR
    e.sub(meta, "Created").text = iso_utc(created)
    e.sub(meta, "LastChange").text = iso_utc(changed if changed is not None else created)
    if document is not None:
        e.sub(meta, "MetadataItem", type="other", name=DOC_ITEM, value=xml_text(document))
        e.sub(meta, "MetadataItem", type="other", name=PAGE_ITEM, value=str(page.page))
    pg = e.sub(root, "Page", imageFilename=xml_text(image_name), imageWidth=str(page.width), imageHeight=str(page.height))
    regions = [r for r in _regions(page.lines)]
    if regions:
        group = e.sub(e.sub(pg, "ReadingOrder"), "OrderedGroup", id="ro1", caption="Regions reading order")
        for k in range(len(regions)):
            e.sub(group, "RegionRefIndexed", index=str(k), regionRef=f"r{k + 1}")
    for k, members in enumerate(regions, 1):
        _write_region(e, pg, k, members, page)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _write_region(e: _Maker, pg: etree._Element, k: int, members: list[Line], page: PageResult) -> None:
    x0, y0, x1, y1 = bbox([p for ln in members for p in ln.points])
    region = e.sub(pg, "TextRegion", id=f"r{k}", type="paragraph", custom=f"readingOrder {{index:{k - 1};}}")
    e.sub(region, "Coords", points=points_attr(clip_int_points([(x0, y0), (x1, y0), (x1, y1), (x0, y1)],
                                                                page.width, page.height)))
    for i, ln in enumerate(members, 1):
        tl = e.sub(region, "TextLine", id=f"r{k}l{i}", custom=f"readingOrder {{index:{i - 1};}}")
        e.sub(tl, "Coords", points=points_attr(clip_int_points(ln.points, page.width, page.height)))
        e.sub(tl, "Baseline", points=points_attr(clip_int_points(baseline(ln.points), page.width, page.height)))
        equiv = e.sub(tl, "TextEquiv", conf=f"{min(1.0, max(0.0, float(ln.confidence))):.4f}")
        e.sub(equiv, "Unicode").text = xml_text(ln.text)
    equiv = e.sub(region, "TextEquiv")
    e.sub(equiv, "Unicode").text = xml_text("\n".join(ln.text for ln in members))


class _Maker:
    """Elements in one namespace, attributes in the order given (schemas do not care, people do)."""

    def __init__(self, ns: str):
        self.ns = ns

    def __call__(self, tag: str, nsmap: dict | None = None, **attrs: str) -> etree._Element:
        el = etree.Element(f"{{{self.ns}}}{tag}", nsmap=nsmap)
        for k, v in attrs.items():
            el.set(k, v)
        return el

    def sub(self, parent: etree._Element, tag: str, **attrs: str) -> etree._Element:
        el = etree.SubElement(parent, f"{{{self.ns}}}{tag}")
        for k, v in attrs.items():
            el.set(k, v)
        return el


# -- reading ----------------------------------------------------------------------------------
def is_page_xml(ns: str) -> bool:
    return ns.startswith(NS_PREFIX)


def read_page_xml(root: etree._Element, label: str) -> ParsedPage:
    """The page of a PAGE-XML file (any PRImA namespace): lines in reading order with text and conf."""
    ns = etree.QName(root).namespace or ""
    if not is_page_xml(ns) or etree.QName(root).localname != "PcGts":
        raise BadInputError(f"not PAGE-XML (root {etree.QName(root).localname} in namespace {ns or 'none'!r})")
    q = {"p": ns}
    pg = root.find("p:Page", q)
    if pg is None:
        raise BadInputError("the PAGE file has no Page element")
    meta = {m.get("name"): m.get("value") for m in root.iterfind("p:Metadata/p:MetadataItem", q)}
    page_no = meta.get(PAGE_ITEM)
    parsed = ParsedPage(pg.get("imageFilename"), _float(pg.get("imageWidth")), _float(pg.get("imageHeight")),
                        document=meta.get(DOC_ITEM), page_no=int(page_no) if page_no and page_no.isdigit() else None,
                        label=label)
    for region in _ordered_regions(pg, q):
        for n, tl in enumerate(region.iterfind("p:TextLine", q), 1):
            parsed.lines.append(_line(tl, q, f"{region.get('id') or 'region'}/{tl.get('id') or n}"))
    return parsed


def _ordered_regions(pg: etree._Element, q: dict) -> list[etree._Element]:
    """Text regions (nested ones included) in ReadingOrder; those it does not list follow in file order."""
    regions = [r for r in pg.iter(f"{{{q['p']}}}TextRegion")]
    by_id = {r.get("id"): r for r in regions}
    refs = pg.findall("p:ReadingOrder//p:RegionRefIndexed", q)
    refs.sort(key=lambda r: _float(r.get("index")) or 0.0)
    ordered = [by_id[r.get("regionRef")] for r in refs if r.get("regionRef") in by_id]
    seen = {id(r) for r in ordered}
    return ordered + [r for r in regions if id(r) not in seen]


def _line(tl: etree._Element, q: dict, ident: str) -> ParsedLine:
    coords = tl.find("p:Coords", q)
    pts = parse_points(coords.get("points", "")) if coords is not None else []
    equivs = tl.findall("p:TextEquiv", q)
    if equivs:
        best = min(equivs, key=lambda t: _float(t.get("index")) if t.get("index") else 0.0)
        text = best.findtext("p:Unicode", default="", namespaces=q)
        conf = _float(best.get("conf"))
    else:  # text only on the words
        words = [w.findtext("p:TextEquiv/p:Unicode", default="", namespaces=q) for w in tl.iterfind("p:Word", q)]
        text, conf = " ".join(w for w in words if w), None
    return ParsedLine(ident, pts, text, conf)


def parse_points(value: str) -> list[tuple[float, float]]:
    """'x,y x,y …' (PAGE) — tolerant of floats and of negative values other tools write."""
    out = []
    for pair in value.split():
        x, _, y = pair.partition(",")
        try:
            out.append((float(x), float(y)))
        except ValueError:
            return []
    return out


def _float(v: str | None) -> float | None:
    try:
        return float(v) if v is not None else None
    except ValueError:
        return None
