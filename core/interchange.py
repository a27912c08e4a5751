"""Moving documents in and out as HTR users do: one code path for the CLI and the app.

Export: stored documents (or a digitize run) → Markdown, text, JSON, PAGE-XML zip, ALTO,
searchable PDF, labels.jsonl zip, imagefolder or PPOCRLabel zip. Import: PAGE-XML (2013/2019)
and ALTO (v2–v4) files, folders and zips as Transkribus and eScriptorium write them, Inkscribe's
own searchable PDFs (their attached PAGE-XML and page images), plus every labels format
`core.dataset` reads. Everything is checked first; what cannot be read is
named in `skipped` with the reason; the rest goes in through `dataset._write_import`, one
transaction with the page images, so nothing is half-written.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from core import dataset
from core.atomic import write_atomic
from core.errors import BadInputError
from core.formats import ExportPage, ParsedPage, safe_stem
from core.geometry import bbox
from core.store import Store, page_results

TEXT_FORMATS = ("md", "txt", "json")
EXPORT_FORMATS = ("md", "txt", "json", "page-xml", "alto", "pdf", "labels", "imagefolder", "ppocr")
SUFFIX = {"md": ".md", "txt": ".txt", "json": ".json", "page-xml": ".zip", "alto": ".xml", "pdf": ".pdf",
          "labels": ".zip", "imagefolder": ".zip", "ppocr": ".zip"}
MIME = {".md": "text/markdown", ".txt": "text/plain", ".json": "application/json", ".zip": "application/zip",
        ".xml": "application/xml", ".pdf": "application/pdf"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
MAX_LABELS_BYTES = 256 * 2**20
MAX_PDF_BYTES = dataset.MAX_IMPORT_BYTES  # a PDF is opened lazily (qpdf reads its index), so only the total is capped
CLIP_TOLERANCE = 1.0  # px a point may lie outside the image before the line is reported as clipped


# -- pages to export --------------------------------------------------------------------------
def store_pages(store: Store, doc_ids: Sequence[int] | None = None) -> list[ExportPage]:
    """Stored documents (all when none given) as pages to export, images read when written."""
    docs = {d["id"]: d for d in store.documents()}
    wanted = list(doc_ids) if doc_ids else [i for i, d in docs.items() if d["pages_done"]]
    _check_ids(docs, wanted)
    out: list[ExportPage] = []
    stems: set[str] = set()
    for doc_id in wanted:
        doc = docs[doc_id]
        stem = _unique(safe_stem(doc["name"]), stems, doc_id)
        for res, row in zip(page_results(store, doc_id), store.pages(doc_id), strict=True):
            out.append(ExportPage(res, _reader(row.image_path), stem, doc["name"], row.image_path.suffix.lstrip(".") or "png",
                                  doc["created_at"], doc["updated_at"]))
    return out


def _check_ids(docs, wanted: Sequence[int]) -> None:
    missing = [i for i in wanted if i not in docs]
    if missing:
        raise BadInputError(f"no document with id {missing[0]} in the store")


def _dataset_zip(store: Store, fmt: str, doc_ids: Sequence[int] | None) -> bytes:
    """imagefolder / PPOCRLabel zips of the confirmed lines (core.dataset), of the chosen documents."""
    if doc_ids:
        _check_ids({d["id"] for d in store.documents()}, doc_ids)
    return dataset.export_zip(store, fmt, list(doc_ids) if doc_ids else None)


def _reader(path: Path) -> Callable[[], bytes]:
    return lambda: path.read_bytes()


def _unique(stem: str, used: set[str], doc_id: int) -> str:
    name = stem if stem not in used else f"{stem}-{doc_id}"
    used.add(name)
    return name


def digitized_pages(docs: Sequence, store: Store | None) -> list[ExportPage]:
    """The pages of a `digitize` run: images from the store when kept there, else rendered again from the input."""
    from core.ingest import iter_pages

    out: list[ExportPage] = []
    stems: set[str] = set()
    for n, doc in enumerate(docs):
        stem = _unique(safe_stem(Path(doc.source).name), stems, n + 1)
        stored = {p.page_no: p.image_path for p in store.pages(doc.document_id)} if store and doc.document_id else {}
        for res in doc.pages:
            if res.page in stored:
                load = _reader(stored[res.page])
            else:
                load = _renderer(Path(doc.source), res.page, iter_pages)
            out.append(ExportPage(res, load, stem, res.source))
    return out


def _renderer(source: Path, page_no: int, iter_pages) -> Callable[[], bytes]:
    def load() -> bytes:
        for page in iter_pages(source, skip=_AllBut(page_no)):
            if page.image is not None:
                buf = io.BytesIO()
                page.image.save(buf, format="PNG", compress_level=1)
                return buf.getvalue()
        raise BadInputError(f"{source.name}: page {page_no} could not be rendered again")
    return load


class _AllBut:
    """A `skip` set holding every page number except one (iter_pages renders only that page)."""

    def __init__(self, keep: int):
        self.keep = keep

    def __contains__(self, n: object) -> bool:
        return n != self.keep


# -- writing ----------------------------------------------------------------------------------
def write_export(pages: Sequence[ExportPage], fmt: str, out: BinaryIO, archive: bool = False, title: str = "") -> None:
    """Write `pages` in `fmt` to `out`. `archive` (ALTO only): a zip of one ALTO file per document plus images."""
    from core.export import render, to_markdown
    from core.formats.alto import write_alto
    from core.formats.pdf import write_searchable_pdf
    from core.settings import get_settings

    if fmt == "md":
        out.write(to_markdown([p.result for p in pages], title=title or None).encode("utf-8"))
    elif fmt in TEXT_FORMATS:
        out.write(render([p.result for p in pages], fmt).encode("utf-8"))
    elif fmt == "page-xml":
        write_page_xml_zip(pages, out)
    elif fmt == "alto" and archive:
        write_alto_zip(pages, out)
    elif fmt == "alto":
        out.write(write_alto([(p.result, p.image_name) for p in pages]))
    elif fmt == "pdf":
        write_searchable_pdf(pages, out, dpi=get_settings().pdf_dpi, title=title)
    elif fmt == "labels":
        write_labels_zip(pages, out)
    else:
        raise BadInputError(f"unknown export format {fmt!r} ({', '.join(EXPORT_FORMATS)})")


def write_page_xml_zip(pages: Sequence[ExportPage], out: BinaryIO) -> None:
    """One PAGE file per page and its image side by side, `imageFilename` naming the image exactly."""
    from core.formats.pagexml import write_page_xml

    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in pages:
            zf.writestr(p.image_name, p.load_image(), compress_type=zipfile.ZIP_STORED)  # already compressed
            zf.writestr(f"{p.name}.xml", write_page_xml(p.result, p.image_name, p.document, p.created, p.changed))


def write_alto_zip(pages: Sequence[ExportPage], out: BinaryIO) -> None:
    from core.formats.alto import write_alto

    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for stem, group in _by_document(pages).items():  # a folder per document, as the importer groups them
            for p in group:
                zf.writestr(f"{stem}/{p.image_name}", p.load_image(), compress_type=zipfile.ZIP_STORED)
            zf.writestr(f"{stem}/{stem}.xml", write_alto([(p.result, p.image_name) for p in group]))


def write_labels_zip(pages: Sequence[ExportPage], out: BinaryIO) -> None:
    """labels.jsonl (the CLI's training format) with the page images under pages/."""
    rows = []
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in pages:
            zf.writestr(f"pages/{p.image_name}", p.load_image(), compress_type=zipfile.ZIP_STORED)
            rows.append(json.dumps({"page": f"pages/{p.image_name}", "doc": p.document, "split": "train",
                                    "lines": [ln.to_json() for ln in p.result.lines]},
                                   ensure_ascii=False))
        zf.writestr("labels.jsonl", "\n".join(rows) + "\n")


def _by_document(pages: Sequence[ExportPage]) -> dict[str, list[ExportPage]]:
    groups: dict[str, list[ExportPage]] = {}
    for p in pages:
        groups.setdefault(p.doc_stem, []).append(p)
    return groups


def export_bytes(store: Store, fmt: str, doc_ids: Sequence[int] | None = None, archive: bool = False) -> bytes:
    """One export as bytes (what the app's download buttons hand over)."""
    if fmt in ("imagefolder", "ppocr"):
        return _dataset_zip(store, fmt, doc_ids)
    pages = store_pages(store, doc_ids)
    if not pages:
        raise BadInputError("there is nothing to export yet")
    buf = io.BytesIO()
    write_export(pages, fmt, buf, archive=archive, title="Notes" if fmt == "md" and not doc_ids else "")
    return buf.getvalue()


def export_file(store: Store, fmt: str, out: str | Path, doc_ids: Sequence[int] | None = None) -> dict:
    """Write an export to `out` atomically (temp file beside it, then rename); ALTO to a .zip carries the images."""
    out = Path(out)
    archive = fmt == "alto" and out.suffix.lower() == ".zip"
    if fmt in ("imagefolder", "ppocr"):
        data = _dataset_zip(store, fmt, doc_ids)
        pages: list[ExportPage] = []
        write = lambda fh: fh.write(data)  # noqa: E731
    else:
        pages = store_pages(store, doc_ids)
        if not pages:
            raise BadInputError("there is nothing to export yet")
        write = lambda fh: write_export(pages, fmt, fh, archive=archive)  # noqa: E731
    write_atomic(out, write)
    counts = {"documents": len({p.doc_stem for p in pages}), "pages": len(pages)} if pages else {}
    return {"path": str(out), "format": fmt, **counts, "bytes": out.stat().st_size}


# -- import -----------------------------------------------------------------------------------
@dataclass
class ImportSummary:
    documents: int = 0
    pages: int = 0
    lines: int = 0
    skipped: list[dict] = field(default_factory=list)
    document_ids: list[int] = field(default_factory=list)

    def to_json(self) -> dict:
        """The CLI's contract: documents, pages, lines, skipped [{item, reason}]."""
        return {"documents": self.documents, "pages": self.pages, "lines": self.lines, "skipped": self.skipped}


def import_upload(store: Store, name: str, data: bytes) -> ImportSummary:
    """An uploaded file (zip, PAGE/ALTO XML, Inkscribe PDF, labels file) imported as `import_path` would."""
    from core.settings import get_settings

    work = Path(tempfile.mkdtemp(prefix="upload-", dir=dataset._ensure(get_settings().home / "imports")))
    try:
        path = work / (Path(name).name or "upload")
        path.write_bytes(data)
        return import_path(store, path, name=Path(name).name)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def import_path(store: Store, path: str | Path, name: str | None = None) -> ImportSummary:
    """Import a PAGE/ALTO file, an Inkscribe PDF, a folder or a zip (or any labels format) as confirmed lines in
    new documents."""
    from core.settings import get_settings

    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path}: no such file or folder")
    display = name or path.name
    summary = ImportSummary()
    work = Path(tempfile.mkdtemp(prefix="import-", dir=dataset._ensure(get_settings().home / "imports")))
    try:
        if path.is_dir():
            pages, kind = _collect(path, None, summary.skipped, display, work)
        elif zipfile.is_zipfile(path):
            root = dataset.safe_extract(path, work / "zip", skipped=summary.skipped)
            pages, kind = _collect(root, None, summary.skipped, display, work)
        else:
            base = path.parent.parent if path.parent.name == "page" else path.parent  # Transkribus: <doc>/page/x.xml
            pages, kind = _collect(base, path, summary.skipped, display, work)
        if pages:
            result = dataset.ImportResult(format=kind)
            dataset._write_import(store, pages, display, kind, result)
            summary.documents, summary.pages, summary.lines = len(result.documents), result.pages, result.lines
            summary.document_ids = list(result.documents)
        return summary
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _collect(root: Path, single: Path | None, skipped: list[dict], display: str, work: Path) -> tuple[list, str]:
    """Every importable page under `root` (or in the one file `single`): Inkscribe PDFs, then PAGE/ALTO, else a
    labels format. `work` receives the page images taken out of PDFs."""
    if single is not None:
        if _is_pdf(single):
            return _collect_pdfs(root, [single], skipped, work, shallow=True), "pdf"
        if single.suffix.lower() == ".xml":
            return _collect_xml(root, [single], skipped, display, shallow=True), "xml"
        kind = _labels_kind(single)
        if kind is None:
            raise BadInputError(f"{single.name}: not a PAGE or ALTO XML file, an Inkscribe PDF, a labels file "
                                "(labels.jsonl, Label.txt, rec_gt.txt, metadata.jsonl, CSV) or a zip")
        return _collect_labels(single, kind, skipped), kind
    pdfs = _files(root, "*.[pP][dD][fF]")
    from_pdfs = _collect_pdfs(root, pdfs, skipped, work, shallow=False) if pdfs else []
    xmls = _files(root, "*.xml")
    if xmls:
        return from_pdfs + _collect_xml(root, xmls, skipped, display, shallow=False), "xml"
    try:
        kind, first = dataset._find_labels(root)
    except BadInputError as exc:
        if from_pdfs or skipped:  # e.g. a zip whose only members were refused: the summary names them
            return from_pdfs, "pdf" if pdfs else "none"
        raise BadInputError(f"{display}: found no PAGE or ALTO XML, Inkscribe PDF, labels.jsonl, Label.txt, "
                            "rec_gt.txt, metadata.jsonl or CSV file") from exc
    pages = [p for f in dataset.labels_files(kind, first) for p in _collect_labels(f, kind, skipped)]
    return from_pdfs + pages, kind


def _files(root: Path, pattern: str) -> list[Path]:
    found = [p for p in root.rglob(pattern) if p.is_file() and "__MACOSX" not in p.parts
             and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    return sorted(found, key=lambda p: _natural(str(p.relative_to(root))))


def _natural(s: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def _labels_kind(p: Path) -> str | None:
    n, suffix = p.name, p.suffix.lower()
    return ("csv" if suffix == ".csv" else "ppocr" if n == "Label.txt" else "rec_gt" if n.endswith("rec_gt.txt")
            else "imagefolder" if n == "metadata.jsonl" else "labels.jsonl" if suffix == ".jsonl" else None)


def _collect_labels(path: Path, kind: str, skipped: list[dict]) -> list:
    size = path.stat().st_size
    if size == 0 or size > MAX_LABELS_BYTES:
        skipped.append({"item": path.name, "reason": "the file is empty" if not size else
                        f"the file is {size / 1e6:,.0f} MB; labels files over {MAX_LABELS_BYTES // 2**20} MB are not read"})
        return []
    problems: list[str] = []
    try:
        pages = dataset.parse_labels_file(kind, path, problems)
    except BadInputError as exc:
        skipped.append({"item": path.name, "reason": str(exc)})
        return []
    for p in problems:
        item, _, reason = p.partition(": ")
        skipped.append({"item": item, "reason": reason})
    return pages


# -- Inkscribe's searchable PDFs -------------------------------------------------------------
def _is_pdf(path: Path) -> bool:
    if path.suffix.lower() == ".pdf":
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(5) == b"%PDF-"
    except OSError:
        return False


def _collect_pdfs(root: Path, pdfs: list[Path], skipped: list[dict], work: Path, shallow: bool) -> list:
    """The pages of PDFs Inkscribe wrote: each page's attached PAGE-XML, read as a PAGE file is, over its own image.

    Any other PDF is named in `skipped` (its pages are images to digitize, not labelled lines).
    """
    from core.formats.pagexml import is_page_xml, read_page_xml
    from core.formats.pdf import iter_searchable_pdf
    from core.formats.xmlsafe import namespace, parse_xml_bytes
    from core.settings import get_settings

    out: list[dataset.ImportPage] = []
    for k, pdf in enumerate(pdfs):
        label = pdf.name if shallow else str(pdf.relative_to(root))
        size = pdf.stat().st_size
        if size == 0 or size > MAX_PDF_BYTES:
            skipped.append({"item": label, "reason": "the file is empty" if not size else
                            f"the file is {size / 1e6:,.0f} MB; PDFs over {MAX_PDF_BYTES / 1e9:.0f} GB are not read"})
            continue
        folder = work / f"pdf-{k + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        doc = pdf.stem if shallow else pdf.relative_to(root).with_suffix("").as_posix()  # when PAGE names none
        try:
            for page in iter_searchable_pdf(pdf, get_settings().max_image_pixels):
                item = f"{label} page {page.number}"
                if page.problem:
                    skipped.append({"item": item, "reason": page.problem})
                    continue
                try:
                    xml = parse_xml_bytes(page.page_xml)
                    if not is_page_xml(namespace(xml)):
                        raise BadInputError("its attached page data is not PAGE-XML")
                    parsed = read_page_xml(xml, item)
                except BadInputError as exc:
                    skipped.append({"item": item, "reason": str(exc)})
                    continue
                image = folder / f"page-{page.number:04d}.{page.image_suffix}"
                image.write_bytes(page.image)
                found = _fit_page(parsed, image, skipped, parsed.document or doc)
                if found is not None:
                    out.append(found)
        except BadInputError as exc:
            skipped.append({"item": label, "reason": str(exc)})
    return out


# -- PAGE and ALTO ----------------------------------------------------------------------------
METS_NS = "http://www.loc.gov/METS/"
AUXILIARY_ROOTS = {"trpDocMetadata"}  # Transkribus' metadata.xml; mets.xml (METS) is recognised by its namespace


def _collect_xml(root: Path, xmls: list[Path], skipped: list[dict], display: str, shallow: bool) -> list:
    from core.formats.alto import is_alto, read_alto
    from core.formats.pagexml import is_page_xml, read_page_xml
    from core.formats.xmlsafe import namespace, parse_xml_file

    images = _ImageIndex(root, shallow)
    found: list[tuple[tuple, dataset.ImportPage]] = []
    for x in xmls:
        label = x.name if shallow else str(x.relative_to(root))
        try:
            xml = parse_xml_file(x)
            ns = namespace(xml)
            if is_page_xml(ns):
                parsed = [read_page_xml(xml, label)]
            elif is_alto(ns):
                parsed = read_alto(xml, label)
            elif ns == METS_NS or _local_name(xml) in AUXILIARY_ROOTS:
                continue
            else:
                raise BadInputError(f"unknown namespace {ns or '(none)'!r}: not PAGE-XML (2013/2019) or ALTO (v2-v4)")
        except (BadInputError, OSError) as exc:
            skipped.append({"item": label, "reason": str(exc)})
            continue
        doc = _document_name(x, root, display)
        for n, page in enumerate(parsed, 1):
            item = _to_import_page(page, x, images, skipped, page.document or doc)
            if item is not None:
                found.append(((item.doc, page.page_no or 0, _natural(label), n), item))
    found.sort(key=lambda t: t[0])
    return [item for _, item in found]


def _local_name(el) -> str:
    from lxml import etree

    return etree.QName(el).localname


def _document_name(xml: Path, root: Path, display: str) -> str:
    """The folder names the document (Transkribus keeps PAGE files in <doc>/page/); files at the top, the import."""
    rel = xml.parent.relative_to(root)
    if rel.name == "page":
        rel = rel.parent
    return rel.as_posix() if rel.parts else safe_stem(display)


def _to_import_page(page: ParsedPage, xml: Path, images: _ImageIndex, skipped: list[dict], doc: str):
    """The page with its image found and checked, lines scaled to it, clipped and sorted out; None when skipped."""
    image = images.find(page.image_ref, xml)
    if image is None:
        ref = page.image_ref or f"{xml.stem}.*"
        skipped.append({"item": page.label, "reason": f"its image {ref!r} is missing (not beside the file or in the import)"})
        return None
    return _fit_page(page, image, skipped, doc)


def _fit_page(page: ParsedPage, image: Path, skipped: list[dict], doc: str):
    """`page`'s lines over `image` (checked, scaled to it, clipped); None when the image cannot be read."""
    try:
        width, height = dataset._check_image(image)
    except ValueError as exc:
        skipped.append({"item": page.label, "reason": f"its image {image.name} cannot be read ({exc})"})
        return None
    sx = width / page.width if page.width else 1.0
    sy = height / page.height if page.height else 1.0
    lines = []
    for ln in page.lines:
        pts = _fit_line([(x * sx, y * sy) for x, y in ln.points], width, height, f"{page.label} line {ln.id}", skipped)
        if pts is not None:
            lines.append((pts, ln.text))
    return dataset.ImportPage(image, lines, doc)


def _fit_line(pts: list[tuple[float, float]], width: int, height: int, item: str, skipped: list[dict]):
    """A line's polygon inside the image: clipped (and said so) when it pokes out, None when nothing is left."""
    if len(pts) < 3:
        skipped.append({"item": item, "reason": "the line has fewer than 3 points"})
        return None
    clipped = [(min(max(0.0, x), float(width)), min(max(0.0, y), float(height))) for x, y in pts]
    x0, y0, x1, y1 = bbox(clipped)
    if x1 - x0 < 2 or y1 - y0 < 2:
        skipped.append({"item": item, "reason": f"its coordinates lie outside the {width}×{height} image; line skipped"})
        return None
    if any(abs(a - c) > CLIP_TOLERANCE or abs(b - d) > CLIP_TOLERANCE for (a, b), (c, d) in zip(pts, clipped, strict=True)):
        skipped.append({"item": item, "reason": f"coordinates outside the {width}×{height} image were clipped to it "
                                                "(the line was imported)"})
    return clipped


class _ImageIndex:
    """Finds a page's image: as the file names it (beside it, one folder up as Transkribus keeps it,
    from the import's root), else by file name anywhere in the import, else by the XML file's stem."""

    def __init__(self, root: Path, shallow: bool):
        self.root = root.resolve()
        self.shallow = shallow
        self._by_name: dict[str, list[Path]] | None = None

    def _index(self) -> dict[str, list[Path]]:
        if self._by_name is None:
            files = (list(self.root.iterdir()) if self.shallow else self.root.rglob("*"))
            self._by_name = {}
            for f in files:
                if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file() and "__MACOSX" not in f.parts:
                    self._by_name.setdefault(f.name.lower(), []).append(f)
        return self._by_name

    def find(self, ref: str | None, xml: Path) -> Path | None:
        if ref:
            ref = re.sub(r"^file://", "", ref.strip()).replace("\\", "/")
            rel = PurePosixPath(ref)
            if not rel.is_absolute() and ".." not in rel.parts and "://" not in ref:
                for base in (xml.parent, xml.parent.parent, self.root):
                    p = (base / ref).resolve()
                    if p.is_file() and (self.root in p.parents):
                        return p
            hits = self._index().get(rel.name.lower(), [])
            return min(hits, key=lambda p: (p.parent != xml.parent, len(p.parts))) if hits else None
        for f in sorted(xml.parent.glob(f"{xml.stem}.*")):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                return f
        return None
