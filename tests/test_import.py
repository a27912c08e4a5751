"""core.interchange: every format Inkscribe writes comes back in; other tools' PAGE/ALTO; bad input is named."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pikepdf
import pytest
from lxml import etree
from PIL import Image

from core import dataset, interchange
from core.errors import BadInputError
from core.formats import pdf as pdf_format
from core.geometry import bbox, box_points, clip_points
from core.store import Store, page_results
from core.synth import make_page
from core.types import Line

REPO = Path(__file__).resolve().parent.parent  # not `from conftest`: tests/robustness has a conftest too

SCHEMAS = REPO.parent / "shared" / "schemas"


def seed_document(store: Store, name: str = "lecture.pdf", pages: int = 2, confirm: bool = True) -> int:
    """A stored document of synthetic note pages: several lines a row, a margin column, varied confidences."""
    doc = store.create_document(name, f"sha-{name}", "pdf", pages, "classical", "default")
    for n in range(1, pages + 1):
        sp = make_page(10 + n, width=1000)
        w, h = sp.image.size
        lines = []
        for i, box in enumerate(sp.boxes):
            pts = clip_points(box, w, h)
            lines.append(Line(pts, f"line {n}.{i} ünïcode & <x>", 0.3 + (i % 7) / 10,
                              column=1 if bbox(pts)[0] > 0.6 * w else 0))
        page_id = store.add_page(doc, n, sp.image, lines, "default")
        if confirm:
            for r in store.lines(page_id):
                store.update_line(r["id"], status="confirmed")
    store.set_document_status(doc, "done")
    return doc


def assert_same_pages(store: Store, a: int, b: int, tol: float = 1.0) -> None:
    """Same pages (size, order), same line texts in the same order, every box point within `tol` px."""
    pa, pb = page_results(store, a), page_results(store, b)
    assert [(p.width, p.height) for p in pa] == [(p.width, p.height) for p in pb]
    for x, y in zip(pa, pb, strict=True):
        assert [ln.text for ln in x.lines] == [ln.text for ln in y.lines]
        for la, lb in zip(x.lines, y.lines, strict=True):
            assert len(la.points) == len(lb.points)
            assert max(abs(p - q) for u, v in zip(la.points, lb.points, strict=True) for p, q in zip(u, v, strict=True)) \
                <= tol


@pytest.mark.parametrize("fmt,out_name", [("page-xml", "out.zip"), ("alto", "out.zip"), ("labels", "out.zip"),
                                          ("ppocr", "out.zip"), ("pdf", "notes.pdf")])
def test_export_then_import_gives_the_same_pages_boxes_and_texts(store, tmp_path, fmt, out_name):
    doc = seed_document(store)
    out = tmp_path / out_name
    interchange.export_file(store, fmt, out, [doc])
    summary = interchange.import_path(store, out)
    assert summary.skipped == [] and summary.documents == 1 and summary.pages == 2
    assert summary.lines == sum(len(p.lines) for p in page_results(store, doc))
    assert_same_pages(store, doc, summary.document_ids[0])
    new = store.pages(summary.document_ids[0])
    with Image.open(new[0].image_path) as img, Image.open(store.pages(doc)[0].image_path) as orig:
        assert img.tobytes() == orig.tobytes()  # the page image itself came back


def test_alto_file_alone_with_its_images_beside_round_trips(store, tmp_path):
    doc = seed_document(store)
    interchange.export_file(store, "alto", tmp_path / "notes.xml", [doc])
    for p in interchange.store_pages(store, [doc]):
        (tmp_path / p.image_name).write_bytes(p.load_image())
    summary = interchange.import_path(store, tmp_path / "notes.xml")
    assert (summary.documents, summary.skipped) == (1, [])
    assert_same_pages(store, doc, summary.document_ids[0])


def test_imagefolder_export_imports_back_as_line_crops(store, tmp_path):
    doc = seed_document(store, pages=1)
    out = tmp_path / "set.zip"
    interchange.export_file(store, "imagefolder", out)
    summary = interchange.import_path(store, out)
    texts = [ln.text for ln in page_results(store, doc)[0].lines]
    assert summary.lines == len(texts) and summary.skipped == []
    got = [r["text"] for r in store.confirmed_lines(summary.document_ids[0])]
    assert sorted(got) == sorted(texts)


def _foreign_pdf(path: Path) -> Path:
    """A scan saved as a PDF by another program: an image, no Inkscribe page data."""
    Image.new("RGB", (300, 200), "white").save(path, format="PDF")
    return path


def test_searchable_pdf_round_trips_from_a_folder_and_a_zip_and_other_pdfs_are_skipped(store, tmp_path):
    a, b = seed_document(store, "a.pdf"), seed_document(store, "b notes.pdf", pages=1)
    folder = tmp_path / "in"
    folder.mkdir()
    interchange.export_file(store, "pdf", folder / "both.pdf", [a, b])
    _foreign_pdf(folder / "scan.pdf")
    summary = interchange.import_path(store, folder)
    assert summary.skipped == [{"item": "scan.pdf", "reason": pdf_format.NOT_OURS}]
    assert (summary.documents, summary.pages) == (2, 3)
    names = {store.document(i)["name"]: i for i in summary.document_ids}
    assert set(names) == {"in: a.pdf", "in: b notes.pdf"}  # each page's document, as PAGE-XML names it
    assert_same_pages(store, a, names["in: a.pdf"])
    assert_same_pages(store, b, names["in: b notes.pdf"])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.write(folder / "both.pdf", "exports/both.pdf")
        zf.write(folder / "scan.pdf", "exports/scan.pdf")
    (tmp_path / "in.zip").write_bytes(buf.getvalue())
    zipped = interchange.import_path(store, tmp_path / "in.zip")
    assert (zipped.documents, zipped.pages, [s["item"] for s in zipped.skipped]) == (2, 3, ["exports/scan.pdf"])


def test_a_foreign_pdf_alone_is_skipped_with_its_reason_and_nothing_is_stored(store, tmp_path):
    summary = interchange.import_path(store, _foreign_pdf(tmp_path / "scan.pdf"))
    assert summary.to_json() == {"documents": 0, "pages": 0, "lines": 0,
                                 "skipped": [{"item": "scan.pdf", "reason": pdf_format.NOT_OURS}]}
    assert "Upload page" in pdf_format.NOT_OURS and store.documents() == []
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7\nnot really")
    (reason,) = interchange.import_path(store, tmp_path / "broken.pdf").skipped
    assert reason["item"] == "broken.pdf" and "not a readable PDF" in reason["reason"]


def test_a_page_added_to_our_pdf_later_is_skipped_and_the_rest_comes_back(store, tmp_path):
    doc = seed_document(store, pages=2)
    out = tmp_path / "notes.pdf"
    interchange.export_file(store, "pdf", out, [doc])
    with pikepdf.open(out, allow_overwriting_input=True) as pdf:
        pdf.add_blank_page(page_size=(200, 200))  # e.g. a page merged in by a PDF tool: no page data
        pdf.save(out)
    summary = interchange.import_path(store, out)
    assert (summary.documents, summary.pages) == (1, 2)
    assert [s["item"] for s in summary.skipped] == ["notes.pdf page 3"]
    assert "no Inkscribe page data" in summary.skipped[0]["reason"]
    assert_same_pages(store, doc, summary.document_ids[0])


def test_digitized_pdf_imports_back_through_the_cli_and_the_dataset_page(monkeypatch, tmp_path, capsys, store):
    from streamlit.testing.v1 import AppTest
    from test_review import FakeRecognizer, install_fakes, page_image

    from core.cli import main
    from core.settings import REPO_ROOT

    install_fakes(monkeypatch, {"default": FakeRecognizer("hello world", 0.75)})
    img, _ = page_image(["some words here", "and another line"])
    img.save(tmp_path / "scan.png")
    out = tmp_path / "read.pdf"
    assert main(["digitize", str(tmp_path / "scan.png"), "--format", "pdf", "-o", str(out), "--detector", "classical",
                 "--no-store"]) == 0
    capsys.readouterr()
    assert main(["import", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["documents"], result["pages"], result["skipped"]) == (1, 1, [])
    (doc,) = store.documents()
    (page,) = page_results(store, doc["id"])
    assert result["lines"] == len(page.lines) >= 2 and {ln.text for ln in page.lines} == {"hello world"}
    assert doc["name"] == "read.pdf: scan.png" and (page.width, page.height) == img.size
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("app_pages/dataset.py").run()
    at.file_uploader(key="ds-import").set_value(("read.pdf", out.read_bytes(), "application/pdf")).run()
    at.button(key="ds-import-go").click().run()
    assert not at.exception and any(f"Imported {result['lines']} lines on 1 pages" in s.value for s in at.success)
    at.file_uploader(key="ds-import").set_value(("scan.pdf", _foreign_pdf(tmp_path / "f.pdf").read_bytes(),
                                                 "application/pdf")).run()
    at.button(key="ds-import-go").click().run()
    assert any("without Inkscribe's page data" in e.value for e in at.error)
    assert len(store.documents()) == 2


def test_every_page_and_alto_file_of_an_export_is_valid_against_the_schemas(store, tmp_path):
    if not (SCHEMAS / "page2019.xsd").is_file():
        pytest.skip("../shared/schemas is not present")
    parser = etree.XMLParser(no_network=True)
    page_xsd = etree.XMLSchema(etree.parse(str(SCHEMAS / "page2019.xsd"), parser))
    alto_xsd = etree.XMLSchema(etree.parse(str(SCHEMAS / "alto-4-4.xsd"), parser))
    seed_document(store, "a.pdf")
    seed_document(store, "b notes.pdf", pages=1)
    for fmt, schema in (("page-xml", page_xsd), ("alto", alto_xsd)):
        with zipfile.ZipFile(io.BytesIO(interchange.export_bytes(store, fmt, archive=True))) as zf:
            xmls = [n for n in zf.namelist() if n.endswith(".xml")]
            assert len(xmls) == (3 if fmt == "page-xml" else 2)
            for name in xmls:
                root = etree.fromstring(zf.read(name))
                assert schema.validate(root), (name, str(schema.error_log)[:300])
                refs = [el.get("imageFilename") for el in root.iter("{*}Page") if el.get("imageFilename")]
                refs += [el.text for el in root.iter("{*}fileName")]
                folder = name.rpartition("/")[0]
                assert all((f"{folder}/{r}" if folder else r) in zf.namelist() for r in refs), "images inside"


# -- other tools' files -------------------------------------------------------------------------
def _jpeg(size=(800, 600)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "white").save(buf, format="JPEG")
    return buf.getvalue()


TRANSKRIBUS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<PcGts xmlns="http://schema.primaresearch.org/PAGE/gts/pagecontent/2013-07-15"
       xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
       xsi:schemaLocation="http://schema.primaresearch.org/PAGE/gts/pagecontent/2013-07-15
       http://schema.primaresearch.org/PAGE/gts/pagecontent/2013-07-15/pagecontent.xsd">
    <Metadata>
        <Creator>prov=University of Innsbruck:Transkribus</Creator>
        <Created>2021-03-04T10:11:12.123+01:00</Created>
        <LastChange>2021-03-05T09:00:00.000+01:00</LastChange>
    </Metadata>
    <Page imageFilename="{image}" imageWidth="1600" imageHeight="1200">
        <ReadingOrder>
            <OrderedGroup id="ro_1614851472" caption="Regions reading order">
                <RegionRefIndexed index="0" regionRef="r_second_in_file"/>
                <RegionRefIndexed index="1" regionRef="r_first_in_file"/>
            </OrderedGroup>
        </ReadingOrder>
        <TextRegion orientation="0.0" id="r_first_in_file" custom="readingOrder {{index:1;}}">
            <Coords points="1000,100 1500,100 1500,300 1000,300"/>
            <TextLine id="r1l1" custom="readingOrder {{index:0;}}">
                <Coords points="1000,100 1500,100 1500,180 1000,180"/>
                <Baseline points="1000,170 1500,170"/>
                <TextEquiv><Unicode>margin note</Unicode></TextEquiv>
            </TextLine>
            <TextEquiv><Unicode>margin note</Unicode></TextEquiv>
        </TextRegion>
        <TextRegion orientation="0.0" id="r_second_in_file" custom="readingOrder {{index:0;}}">
            <Coords points="100,100 900,100 900,500 100,500"/>
            <TextLine id="tr_1_tl_1" custom="readingOrder {{index:0;}}">
                <Coords points="100,100 899,104 900,180 101,178"/>
                <Baseline points="100,170 900,172"/>
                <Word id="w1"><Coords points="100,100 300,100 300,180 100,180"/>
                    <TextEquiv><Unicode>first</Unicode></TextEquiv></Word>
                <TextEquiv conf="0.87"><Unicode>first line</Unicode></TextEquiv>
            </TextLine>
            <TextLine id="tr_1_tl_2" custom="readingOrder {{index:1;}}">
                <Coords points="100,200 900,200 900,280 100,280"/>
                <Word id="w2"><Coords points="100,200 300,200 300,280 100,280"/>
                    <TextEquiv><Unicode>words</Unicode></TextEquiv></Word>
                <Word id="w3"><Coords points="320,200 600,200 600,280 320,280"/>
                    <TextEquiv><Unicode>only</Unicode></TextEquiv></Word>
            </TextLine>
            <TextEquiv><Unicode>first line
words only</Unicode></TextEquiv>
        </TextRegion>
    </Page>
</PcGts>
"""

METS = """<?xml version="1.0" encoding="UTF-8"?><mets:mets xmlns:mets="http://www.loc.gov/METS/"/>"""


def test_transkribus_style_page_2013_with_images_one_folder_up_imports(store, tmp_path):
    xml = TRANSKRIBUS.format(image="0001_scan.jpg")
    if (SCHEMAS / "page2013.xsd").is_file():  # the fixture is what PAGE 2013 allows
        schema = etree.XMLSchema(etree.parse(str(SCHEMAS / "page2013.xsd"), etree.XMLParser(no_network=True)))
        assert schema.validate(etree.fromstring(xml.encode())), schema.error_log
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("Lecture notes/0001_scan.jpg", _jpeg((800, 600)))  # half the size PAGE gives: coordinates scale
        zf.writestr("Lecture notes/page/0001_scan.xml", xml)
        zf.writestr("Lecture notes/mets.xml", METS)
    (tmp_path / "export_job_123.zip").write_bytes(buf.getvalue())
    summary = interchange.import_path(store, tmp_path / "export_job_123.zip")
    assert summary.to_json() == {"documents": 1, "pages": 1, "lines": 3, "skipped": []}
    doc = store.document(summary.document_ids[0])
    assert doc["name"] == "export_job_123.zip: Lecture notes"
    (page,) = page_results(store, doc["id"])
    assert [ln.text for ln in page.lines] == ["first line", "words only", "margin note"]  # ReadingOrder wins
    assert page.lines[0].points == [(50, 50), (449.5, 52), (450, 90), (50.5, 89)]
    assert all(r["status"] == "confirmed" for r in store.lines(store.pages(doc["id"])[0].id))


def test_single_page_file_from_another_tool_finds_its_image_by_name(store, tmp_path):
    folder = tmp_path / "escriptorium"
    folder.mkdir()
    (folder / "IMG_7.jpg").write_bytes(_jpeg((1600, 1200)))
    (folder / "IMG_7.xml").write_text(TRANSKRIBUS.format(image="/home/someone/scans/IMG_7.jpg"), encoding="utf-8")
    summary = interchange.import_path(store, folder / "IMG_7.xml")
    assert (summary.pages, summary.lines, summary.skipped) == (1, 3, [])


ALTO_KRAKEN = """<?xml version="1.0" encoding="UTF-8"?>
<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#">
  <Description><MeasurementUnit>pixel</MeasurementUnit>
    <sourceImageInformation><fileName>page_3.png</fileName></sourceImageInformation></Description>
  <Layout><Page ID="eSc_dummypage_" PHYSICAL_IMG_NR="1" WIDTH="1000" HEIGHT="700"><PrintSpace>
    <TextBlock ID="eSc_textblock_1">
      <TextLine ID="eSc_line_a" BASELINE="10 60 600 62" HPOS="10" VPOS="20" WIDTH="590" HEIGHT="50">
        <Shape><Polygon POINTS="10 20 600 20 600 70 10 70"/></Shape>
        <String CONTENT="Hello" WC="0.9"/><SP/><String CONTENT="eScriptorium" WC="0.8"/>
      </TextLine>
      <TextLine ID="eSc_line_b" HPOS="10" VPOS="100" WIDTH="300" HEIGHT="40">
        <String CONTENT="no-shape" HPOS="10" VPOS="100" WIDTH="150" HEIGHT="40"/><HYP CONTENT="-"/>
      </TextLine>
    </TextBlock></PrintSpace></Page></Layout>
</alto>
"""


@pytest.mark.parametrize("version", [2, 3, 4])
def test_alto_v2_to_v4_from_kraken_and_escriptorium_imports(store, tmp_path, version):
    xml = ALTO_KRAKEN.replace("ns-v4#", f"ns-v{version}#")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        png = io.BytesIO()
        Image.new("L", (1000, 700), 255).save(png, format="PNG")
        zf.writestr("page_3.png", png.getvalue())
        zf.writestr("page_3.xml", xml)
    (tmp_path / "alto.zip").write_bytes(buf.getvalue())
    summary = interchange.import_path(store, tmp_path / "alto.zip")
    assert (summary.pages, summary.lines, summary.skipped) == (1, 2, [])
    (page,) = page_results(store, summary.document_ids[0])
    assert [ln.text for ln in page.lines] == ["Hello eScriptorium", "no-shape-"]
    assert page.lines[0].points == [(10, 20), (600, 20), (600, 70), (10, 70)]
    assert page.lines[1].points == box_points(10, 100, 310, 140)


# -- bad input ----------------------------------------------------------------------------------
def page_xml(image: str, lines: list[tuple[str, str]], ns: str = "2019-07-15", size=(400, 300)) -> str:
    body = "".join(f'<TextLine id="l{i}"><Coords points="{pts}"/><TextEquiv><Unicode>{t}</Unicode></TextEquiv>'
                   f"</TextLine>" for i, (pts, t) in enumerate(lines))
    return (f'<?xml version="1.0" encoding="UTF-8"?><PcGts xmlns="http://schema.primaresearch.org/PAGE/gts/'
            f'pagecontent/{ns}"><Metadata><Creator>x</Creator><Created>2020-01-01T00:00:00</Created><LastChange>'
            f'2020-01-01T00:00:00</LastChange></Metadata><Page imageFilename="{image}" imageWidth="{size[0]}" '
            f'imageHeight="{size[1]}"><TextRegion id="r"><Coords points="0,0 10,0 10,10"/>{body}</TextRegion>'
            "</Page></PcGts>")


def _png(size=(400, 300)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "white").save(buf, format="PNG")
    return buf.getvalue()


GOOD_LINE = ("10,10 200,10 200,40 10,40", "good line")
XXE = ('<?xml version="1.0"?><!DOCTYPE PcGts [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
       '<PcGts xmlns="http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15">&x;</PcGts>')
LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">'
          '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;">]><lolz>&lol3;</lolz>')


def bad_folder(root: Path) -> Path:
    root.mkdir()
    (root / "good.png").write_bytes(_png())
    (root / "good.xml").write_text(page_xml("good.png", [GOOD_LINE]))
    (root / "xxe.xml").write_text(XXE)
    (root / "laughs.xml").write_text(LAUGHS)
    (root / "noimage.xml").write_text(page_xml("missing.png", [GOOD_LINE]))
    (root / "outside.png").write_bytes(_png())
    (root / "outside.xml").write_text(page_xml("outside.png", [
        ("350,10 450,10 450,40 350,40", "pokes out"), ("500,500 600,500 600,560 500,560", "all outside"), GOOD_LINE]))
    (root / "other.xml").write_text('<?xml version="1.0"?><doc xmlns="http://example.com/not-page"><p>hi</p></doc>')
    (root / "empty.xml").write_bytes(b"")
    (root / "broken.xml").write_text("<PcGts xmlns='http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15'>")
    with open(root / "huge.xml", "wb") as fh:  # 2 GB on paper, nothing on disk (a sparse file)
        fh.truncate(2 * 2**30)
    return root


def test_bad_files_are_named_in_skipped_and_the_rest_is_imported(store, tmp_path):
    started = time.monotonic()
    summary = interchange.import_path(store, bad_folder(tmp_path / "mixed"))
    assert time.monotonic() - started < 30, "the 2 GB file was never read"
    reasons = {s["item"]: s["reason"] for s in summary.skipped}
    assert "DTD or entities" in reasons["xxe.xml"] and "DTD or entities" in reasons["laughs.xml"]
    assert "missing.png" in reasons["noimage.xml"] and "missing" in reasons["noimage.xml"]
    assert "clipped" in reasons["outside.xml line r/l0"] and "skipped" in reasons["outside.xml line r/l1"]
    assert "unknown namespace" in reasons["other.xml"] and "example.com" in reasons["other.xml"]
    assert "empty" in reasons["empty.xml"] and "not well-formed" in reasons["broken.xml"]
    assert "2,147 MB" in reasons["huge.xml"]
    assert (summary.documents, summary.pages, summary.lines) == (1, 2, 3)
    texts = sorted(ln.text for p in page_results(store, summary.document_ids[0]) for ln in p.lines)
    assert texts == ["good line", "good line", "pokes out"]
    assert "root:" not in json.dumps([ln.text for p in page_results(store, summary.document_ids[0]) for ln in p.lines])


def test_zip_with_path_traversal_and_links_skips_those_members_only(store, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../evil.xml", page_xml("good.png", [GOOD_LINE]))
        zf.writestr("/abs/evil.png", _png())
        link = zipfile.ZipInfo("link.png")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
        zf.writestr("good.png", _png())
        zf.writestr("good.xml", page_xml("good.png", [GOOD_LINE]))
    (tmp_path / "in.zip").write_bytes(buf.getvalue())
    summary = interchange.import_path(store, tmp_path / "in.zip")
    reasons = {s["item"]: s["reason"] for s in summary.skipped}
    assert set(reasons) == {"../evil.xml", "/abs/evil.png", "link.png"}
    assert "outside the archive" in reasons["../evil.xml"] and "symbolic link" in reasons["link.png"]
    assert (summary.documents, summary.pages, summary.lines) == (1, 1, 1)
    assert not (tmp_path / "evil.xml").exists()


def test_oversized_zip_member_is_skipped_before_unpacking(store, tmp_path, monkeypatch):
    monkeypatch.setattr(dataset, "MAX_MEMBER_BYTES", 10_000)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.xml", " " * 50_000)
        zf.writestr("good.png", _png())
        zf.writestr("good.xml", page_xml("good.png", [GOOD_LINE]))
    (tmp_path / "in.zip").write_bytes(buf.getvalue())
    summary = interchange.import_path(store, tmp_path / "in.zip")
    assert [s["item"] for s in summary.skipped] == ["big.xml"] and summary.lines == 1


def test_a_failure_while_storing_leaves_nothing_half_written(store, tmp_path, monkeypatch):
    folder = tmp_path / "two"
    folder.mkdir()
    for n in (1, 2):
        (folder / f"p{n}.png").write_bytes(_png())
        (folder / f"p{n}.xml").write_text(page_xml(f"p{n}.png", [GOOD_LINE]))
    real_save, calls = Image.Image.save, []

    def failing_save(self, fp, *a, **k):
        calls.append(fp)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_save(self, fp, *a, **k)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError):
        interchange.import_path(store, folder)
    assert store.documents() == [] and not any(store.images_dir.rglob("*.png"))


def test_nothing_importable_is_a_clear_error(store, tmp_path):
    (tmp_path / "only.png").write_bytes(_png())
    with pytest.raises(BadInputError, match="found no PAGE or ALTO XML"):
        interchange.import_path(store, tmp_path)
    with pytest.raises(BadInputError, match="not a PAGE or ALTO XML file"):
        interchange.import_path(store, tmp_path / "only.png")


# -- the CLI ------------------------------------------------------------------------------------
def run_core(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "INKSCRIBE_HOME": str(home), "HF_HUB_OFFLINE": "1", "INKSCRIBE_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def test_cli_import_prints_the_json_contract(store, inkscribe_home, tmp_path):
    summary_dir = bad_folder(tmp_path / "mixed")
    (summary_dir / "huge.xml").unlink()
    r = run_core("import", str(summary_dir), home=inkscribe_home)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == {"documents", "pages", "lines", "skipped"}
    assert (out["documents"], out["pages"], out["lines"]) == (1, 2, 3)
    assert all(set(s) == {"item", "reason"} for s in out["skipped"]) and len(out["skipped"]) == 8
    r = run_core("import", str(tmp_path / "nope.zip"), home=inkscribe_home)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr


@pytest.mark.parametrize("fmt", interchange.EXPORT_FORMATS)
def test_cli_export_writes_every_format_for_chosen_documents(store, inkscribe_home, tmp_path, fmt, capsys):
    from core.cli import main

    a = seed_document(store, "a.pdf", pages=1)
    seed_document(store, "b.pdf", pages=1)
    out = tmp_path / f"out{interchange.SUFFIX[fmt]}"
    assert main(["export", "--format", fmt, "-o", str(out), "--document", str(a)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["path"] == str(out) and out.stat().st_size == result["bytes"] > 0
    data = out.read_bytes()
    if fmt == "pdf":
        assert data.startswith(b"%PDF-")
    elif fmt == "alto":
        assert etree.fromstring(data).tag == "{http://www.loc.gov/standards/alto/ns-v4#}alto"
    elif out.suffix == ".zip":
        assert zipfile.ZipFile(out).testzip() is None
    else:
        assert "a.pdf" in data.decode() or fmt == "txt"
    if "documents" in result:
        assert result["documents"] == 1
    assert main(["export", "--format", fmt, "-o", str(out), "--document", "999"]) == 2
    assert "no document with id 999" in capsys.readouterr().err


@pytest.mark.parametrize("no_store", [False, True])
def test_cli_digitize_writes_page_xml_alto_and_pdf_with_the_page_images(monkeypatch, tmp_path, capsys, no_store,
                                                                         inkscribe_home):
    from test_review import FakeRecognizer, install_fakes, page_image

    from core.cli import main

    install_fakes(monkeypatch, {"default": FakeRecognizer("hello world", 0.75)})
    img, _ = page_image(["some words here", "and another line"])
    src = tmp_path / "scan.pdf"
    img.save(src)  # a one-page PDF: without the store its page is rendered again
    flags = ["--detector", "classical"] + (["--no-store"] if no_store else [])
    for fmt, name in (("page-xml", "out.zip"), ("alto", "out.xml"), ("pdf", "out.pdf")):
        assert main(["digitize", str(src), "--format", fmt, "-o", str(tmp_path / name), *flags]) == 0, \
            capsys.readouterr().err
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        assert sorted(zf.namelist()) == ["scan-p0001.png", "scan-p0001.xml"]
        assert b"hello world" in zf.read("scan-p0001.xml")
        with Image.open(io.BytesIO(zf.read("scan-p0001.png"))) as page:
            assert page.size[0] > 1000  # the page as digitize read it (200 dpi)
    alto = (tmp_path / "out.xml").read_bytes()
    assert b'CONTENT="hello"' in alto and b'CONTENT="world"' in alto and b'fileName>scan-p0001.png<' in alto
    text = subprocess.run(["pdftotext", str(tmp_path / "out.pdf"), "-"], capture_output=True, text=True).stdout
    assert "hello world" in text
    assert len(Store(inkscribe_home).documents()) == (0 if no_store else 3)
    with pytest.raises(SystemExit):
        main(["digitize", str(src), "--format", "docx"])
    assert main(["digitize", str(src), "--format", "pdf"]) == 2  # a PDF needs -o
