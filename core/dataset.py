"""The personal dataset: every line the user confirmed, with a stable held-out share for evaluation.

Training reads it as `labels.jsonl` (and the unconfirmed lines, boxes without texts, as
self-training's unlabelled pool); it also imports other people's labelling formats
(labels.jsonl, PPOCRLabel `Label.txt` / `rec_gt.txt`, `image,text` CSV, as files or a zip) and
exports itself as a zip (Hugging Face imagefolder, PPOCRLabel). Imports check everything
first and write all complete records in one transaction: a bad file never leaves half an import.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import tempfile
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image

from core.atomic import write_atomic
from core.errors import BadInputError
from core.geometry import box_points, crop_line
from core.ingest import load_image, sniff
from core.store import Store, file_sha256
from core.types import Line

HOLDOUT_FRACTION = 0.1
MIN_LINES_FOR_HOLDOUT = 10
MAX_IMPORT_FILES = 50_000
MAX_IMPORT_BYTES = 2_000_000_000


# -- held-out lines -------------------------------------------------------------------------
def _page_key(row) -> str:
    return hashlib.sha1(f"{row['sha256']}:{row['page_no']}".encode()).hexdigest()


def assign_holdout(store: Store, fraction: float = HOLDOUT_FRACTION) -> dict:
    """Hold out whole pages (deterministic by content hash) until ~`fraction` of confirmed lines are held out.

    Assignment is sticky: a held-out page stays held out (lines confirmed on it later join
    it), so scores stay comparable between fine-tunes. Needs confirmed lines on 2+ pages.
    """
    rows = store.page_confirmation()
    pages = [r for r in rows if r["confirmed"]]
    total = sum(r["confirmed"] for r in pages)
    held_pages = {r["page_id"] for r in rows if r["held"]}
    with store.transaction():
        store.hold_out_pages(sorted(held_pages))  # lines added or confirmed later on a held-out page join it
        held = sum(r["confirmed"] for r in pages if r["page_id"] in held_pages)
        target = fraction * total
        if total >= MIN_LINES_FOR_HOLDOUT:
            remaining = sorted((r for r in pages if r["page_id"] not in held_pages), key=_page_key)
            for r in list(remaining):
                if held >= target * 0.75 or len(remaining) <= 1:  # always keep a page to train on
                    break
                # a page may overshoot the target, up to a third of all lines; a small page held
                # first must not block the rest (a 1-line page would otherwise be the whole hold-out)
                if held + r["confirmed"] > max(2 * target, total / 3):
                    continue
                store.hold_out_pages([r["page_id"]])
                held_pages.add(r["page_id"])
                remaining.remove(r)
                held += r["confirmed"]
    return {"confirmed": total, "holdout": held, "holdout_pages": len(held_pages)}


def holdout_lines(store: Store) -> list:
    return [r for r in store.confirmed_lines() if r["holdout"]]


def line_crops(store: Store, rows) -> list[Image.Image | None]:
    """Crops of line rows (with image_path), cut as inference cuts them; one page image open at a time."""
    out: list[Image.Image | None] = []
    cache_path, cache_img = None, None
    for r in rows:
        path = store.home / r["image_path"]
        if path != cache_path:
            cache_img = load_image(path)  # the one loader, as training and evaluation open pages
            cache_path = path
        try:
            out.append(crop_line(cache_img, [tuple(p) for p in json.loads(r["points"])]))
        except ValueError:
            out.append(None)
    return out


# -- stats and export -----------------------------------------------------------------------
def stats(store: Store) -> dict:
    """Lines/words/characters per document: confirmed (train, held out), corrected, new."""
    per = {}
    for r in store.line_overview():
        s = per.setdefault(r["id"], {"document_id": r["id"], "document": r["name"], "lines": 0, "confirmed": 0,
                                     "corrected": 0, "new": 0, "holdout": 0, "words": 0, "characters": 0})
        s["lines"] += 1
        s[r["status"]] += 1
        if r["status"] == "confirmed":
            s["holdout"] += int(r["holdout"])
            s["words"] += len(r["text"].split())
            s["characters"] += len(r["text"])
    docs = list(per.values())
    totals = {k: sum(d[k] for d in docs) for k in ("lines", "confirmed", "corrected", "new", "holdout", "words", "characters")}
    totals["train"] = totals["confirmed"] - totals["holdout"]
    totals["documents"] = sum(1 for d in docs if d["confirmed"])
    return {"documents": docs, "totals": totals}


def snapshot(store: Store, name: str, line_ids: list[int]) -> int:
    """Remember exactly which lines a fine-tune saw (datasets table)."""
    return store.add_dataset(name, line_ids)


def export_labels(store: Store, out: str | Path, part: str = "train", complete_pages: bool = False) -> dict:
    """Write confirmed lines as labels.jsonl (absolute image paths) for the trainers.

    part: "train" (not held out), "holdout", or "all". complete_pages: only pages whose every
    line is confirmed, with all their lines (what a line detector must learn).
    """
    out = Path(out)
    rows = store.confirmed_lines()
    if part == "train":
        rows = [r for r in rows if not r["holdout"]]
    elif part == "holdout":
        rows = [r for r in rows if r["holdout"]]
    if complete_pages:
        complete = store.complete_page_ids()
        rows = [r for r in rows if r["page_id"] in complete]
    by_page: dict[int, list] = defaultdict(list)
    for r in rows:
        by_page[r["page_id"]].append(r)
    _write_labels(out, ({
        "page": str(store.home / lines[0]["image_path"]), "doc": lines[0]["document_name"],
        "split": "eval" if lines[0]["holdout"] and part != "train" else "train",
        "lines": [{"points": json.loads(r["points"]), "text": r["text"]} for r in lines],
    } for lines in by_page.values()))
    names = sorted({r["document_name"] for r in rows})
    return {"path": str(out), "lines": len(rows), "pages": len(by_page), "documents": len(names), "document_names": names,
            "line_ids": [r["id"] for r in rows], "characters": sum(len(r["text"]) for r in rows)}


def _write_labels(out: Path, pages: Iterable[dict]) -> None:
    """A labels.jsonl, one page a line, written whole or not at all."""
    write_atomic(out, lambda fh: fh.writelines((json.dumps(p, ensure_ascii=False) + "\n").encode() for p in pages))


def _pool_rows(store: Store) -> list[tuple]:
    """(row, points) of the unconfirmed lines of pages not held out, with a usable box: the unlabelled pool.

    Held-out pages stay out entirely, so the lines a new model is scored on are never learned from,
    not even as a teacher's guesses.
    """
    rows = ((r, json.loads(r["points"])) for r in store.unconfirmed_lines())
    return [(r, points) for r, points in rows if len(points) >= 3]


def pool_size(store: Store) -> int:
    """How many lines `export_pool` would write (nothing is written): the app's default for self-training."""
    return len(_pool_rows(store))


def export_pool(store: Store, out: str | Path) -> dict:
    """Write the unlabelled pool (see `_pool_rows`) as labels.jsonl, split "pool", every text empty.

    The texts are never written: unconfirmed texts are the old model's guesses, and self-training
    must learn only from its teacher's vetted readings of the boxes.
    """
    out = Path(out)
    by_page: dict[int, list] = defaultdict(list)
    for r, points in _pool_rows(store):
        by_page[r["page_id"]].append((r, points))
    _write_labels(out, ({
        "page": str(store.home / lines[0][0]["image_path"]), "doc": lines[0][0]["document_name"], "split": "pool",
        "lines": [{"points": points, "text": ""} for _, points in lines],
    } for lines in by_page.values()))
    return {"path": str(out), "lines": sum(len(v) for v in by_page.values()), "pages": len(by_page)}


def export_zip(store: Store, fmt: str = "imagefolder", doc_ids: list[int] | None = None) -> bytes:
    """The confirmed dataset (of `doc_ids`, else all) as a zip: "imagefolder" (train/ and test/ crops +
    metadata.jsonl) or "ppocr"."""
    rows = [r for r in store.confirmed_lines() if not doc_ids or r["document_id"] in doc_ids]
    if not rows:
        raise BadInputError("there are no confirmed lines to export yet")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if fmt == "imagefolder":
            meta: dict[str, list[str]] = {"train": [], "test": []}
            for r, crop in zip(rows, line_crops(store, rows), strict=True):
                if crop is None:
                    continue
                part = "test" if r["holdout"] else "train"
                name = f"line-{r['id']:06d}.png"
                zf.writestr(f"{part}/{name}", _png(crop))
                meta[part].append(json.dumps({"file_name": name, "text": r["text"], "document": r["document_name"],
                                              "page": r["page_no"]}, ensure_ascii=False))
            for part, items in meta.items():
                if items:
                    zf.writestr(f"{part}/metadata.jsonl", "\n".join(items) + "\n")
        elif fmt == "ppocr":
            label_rows, rec_rows = [], []
            by_page: dict[int, list] = defaultdict(list)
            for r in rows:
                by_page[r["page_id"]].append(r)
            for lines in by_page.values():
                first = lines[0]
                img_name = f"images/doc{first['document_id']}-p{first['page_no']:04d}.png"
                zf.write(store.home / first["image_path"], img_name)
                label_rows.append(img_name + "\t" + json.dumps(
                    [{"transcription": r["text"], "points": [[round(x), round(y)] for x, y in json.loads(r["points"])],
                      "difficult": False} for r in lines], ensure_ascii=False))
                for r, crop in zip(lines, line_crops(store, lines), strict=True):
                    if crop is not None:
                        crop_name = f"crop_img/line-{r['id']:06d}.png"
                        zf.writestr(crop_name, _png(crop))
                        rec_rows.append(f"{crop_name}\t{r['text']}")
            zf.writestr("Label.txt", "\n".join(label_rows) + "\n")
            zf.writestr("rec_gt.txt", "\n".join(rec_rows) + "\n")
        else:
            raise BadInputError(f"unknown dataset export format {fmt!r} (imagefolder or ppocr)")
    return buf.getvalue()


def _png(img: Image.Image) -> bytes:
    b = io.BytesIO()
    img.save(b, format="PNG")
    return b.getvalue()


# -- import ---------------------------------------------------------------------------------
@dataclass
class ImportPage:
    image: Path
    lines: list[tuple[list[tuple[float, float]], str]]
    doc: str
    crop_only: bool = False


@dataclass
class ImportResult:
    documents: list[int] = field(default_factory=list)
    pages: int = 0
    lines: int = 0
    problems: list[str] = field(default_factory=list)
    format: str = ""


def safe_extract(data: bytes | str | Path, dest: Path, skipped: list[dict] | None = None) -> Path:
    """Extract a zip after checking every member: no absolute paths, no `..`, no links, bounded size.

    By default a bad member refuses the whole zip. With a `skipped` list, bad members (and any
    member over MAX_MEMBER_BYTES) are listed there as {"item", "reason"} and the rest is extracted.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data)
    except zipfile.BadZipFile as exc:
        raise BadInputError("this file is not a readable zip archive") from exc
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_IMPORT_FILES:
            raise BadInputError(f"the zip holds {len(infos)} files; at most {MAX_IMPORT_FILES} are accepted")
        kept = []
        for info in infos:
            problem = _member_problem(info, dest, skipped is not None)
            if problem is None:
                kept.append(info)
            elif skipped is None:
                raise BadInputError(f"refused: the zip member {info.filename!r} {problem}; nothing was imported")
            else:
                skipped.append({"item": info.filename, "reason": f"refused: {problem}"})
        if sum(i.file_size for i in kept) > MAX_IMPORT_BYTES:
            raise BadInputError("the zip unpacks to more than 2 GB; import it in parts")
        dest.mkdir(parents=True, exist_ok=True)
        for info in kept:
            try:
                zf.extract(info, dest)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                raise BadInputError(f"the zip member {info.filename!r} is damaged ({exc}); nothing was imported") from exc
    return dest


MAX_MEMBER_BYTES = 512 * 2**20  # per member, when bad members are skipped rather than refusing the zip


def _member_problem(info: zipfile.ZipInfo, dest: Path, cap: bool) -> str | None:
    """Why a zip member must not be extracted, or None."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in PurePosixPath(name).parts:
        return "points outside the archive (absolute path or '..')"
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        return "is a symbolic link"
    root = dest.resolve()
    target = (dest / info.filename).resolve()
    if root not in target.parents and target != root:
        return "points outside the archive"
    if cap and info.file_size > MAX_MEMBER_BYTES:
        return f"unpacks to {info.file_size / 1e6:,.0f} MB; members over {MAX_MEMBER_BYTES // 2**20} MB are not unpacked"
    return None


def _find_labels(root: Path) -> tuple[str, Path]:
    for pattern, kind in (("labels.jsonl", "labels.jsonl"), ("Label.txt", "ppocr"), ("rec_gt.txt", "rec_gt"),
                          ("metadata.jsonl", "imagefolder"), ("*.csv", "csv"), ("*.jsonl", "labels.jsonl")):
        found = sorted(root.rglob(pattern), key=lambda p: len(p.parts))
        found = [p for p in found if "__MACOSX" not in p.parts]
        if found:
            return kind, found[0]
    raise BadInputError("found no labels.jsonl, Label.txt, rec_gt.txt, metadata.jsonl or .csv file in the archive")


def labels_files(kind: str, first: Path) -> list[Path]:
    """The labels files to read: an imagefolder has one metadata.jsonl per split (train/, test/)."""
    if kind != "imagefolder" or first.parent.name not in ("train", "test", "validation"):
        return [first]
    return sorted(first.parent.parent.glob("*/metadata.jsonl"))


def _within(base: Path, rel: str) -> Path:
    rel = rel.strip().replace("\\", "/")
    if not rel or rel.startswith("/") or ".." in PurePosixPath(rel).parts or (len(rel) > 1 and rel[1] == ":"):
        raise ValueError(f"image path {rel!r} is absolute or leaves the folder")
    p = (base / rel).resolve()
    if base.resolve() not in p.parents:
        raise ValueError(f"image path {rel!r} leaves the folder")
    if not p.is_file():
        # PPOCRLabel writes `folder/img.jpg` relative to the folder's parent
        alt = (base.parent / rel).resolve()
        if alt.is_file() and base.resolve().parent in alt.parents:
            return alt
        raise ValueError(f"image {rel!r} is missing")
    return p


def _check_image(p: Path) -> tuple[int, int]:
    """Decode an imported image once through the page loader, so a bad one is a skipped row, not a failed import."""
    try:
        if sniff(p) != "image":  # a PDF would be rendered at some dpi the labels' boxes know nothing of
            raise BadInputError(f"{p.name}: not an image")
        return load_image(p).size
    except BadInputError as exc:
        raise ValueError(str(exc)) from exc  # "NAME: the image is damaged or not supported" and the like


def _points(raw) -> list[tuple[float, float]]:
    pts = [(float(x), float(y)) for x, y in raw]
    if len(pts) < 3:
        raise ValueError("a line box has fewer than 3 points")
    return pts


def parse_labels_file(kind: str, path: Path, problems: list[str]) -> list[ImportPage]:
    """Every complete record of a labels file; each bad row adds one message to `problems`."""
    base = path.parent
    pages: list[ImportPage] = []
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    if kind == "csv":
        reader = csv.DictReader(io.StringIO(text))
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        if "image" not in fields or "text" not in fields:
            raise BadInputError(f"{path.name}: a CSV import needs a header with the columns image,text")
        reader.fieldnames = fields
        rows = ((n, r.get("image") or "", r.get("text")) for n, r in enumerate(reader, 2))
        for n, img, txt in rows:
            try:
                if txt is None:
                    raise ValueError("the text column is missing")
                p = _within(base, img)
                _check_image(p)
                pages.append(ImportPage(p, [([], txt.strip())], path.stem, crop_only=True))
            except ValueError as exc:
                problems.append(f"{path.name} row {n}: {exc}")
        return pages
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            if kind == "imagefolder":  # Hugging Face imagefolder: {"file_name", "text"} per line crop
                row = json.loads(raw)
                p = _within(base, str(row["file_name"]))
                _check_image(p)
                pages.append(ImportPage(p, [([], str(row.get("text", "")))], str(row.get("document") or path.parent.name),
                                        crop_only=True))
            elif kind == "labels.jsonl":
                row = json.loads(raw)
                p = _within(base, str(row["page"]))
                _check_image(p)
                lines = [(_points(ln["points"]), str(ln.get("text", ""))) for ln in row.get("lines", [])]
                pages.append(ImportPage(p, lines, str(row.get("doc") or p.stem)))
            elif kind == "ppocr":
                img, _, payload = raw.partition("\t")
                if not payload:
                    raise ValueError("expected `image<TAB>[json boxes]`")
                p = _within(base, img)
                _check_image(p)
                boxes = json.loads(payload)
                lines = [(_points(b["points"]), str(b.get("transcription", ""))) for b in boxes
                         if str(b.get("transcription", "")) != "###"]
                pages.append(ImportPage(p, lines, p.parent.name or path.stem))
            elif kind == "rec_gt":
                img, _, txt = raw.partition("\t")
                if not _:
                    raise ValueError("expected `crop_image<TAB>text`")
                p = _within(base, img)
                _check_image(p)
                pages.append(ImportPage(p, [([], txt.strip())], path.stem, crop_only=True))
        except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
            problems.append(f"{path.name} line {n}: {exc}")
    return pages


def import_dataset(store: Store, source: str | Path, name: str | None = None, data: bytes | None = None) -> ImportResult:
    """Import labelled lines (as confirmed) from a zip or a labels file; all complete records or nothing."""
    from core.settings import get_settings

    source = Path(source)
    display = name or source.name
    work = Path(tempfile.mkdtemp(prefix="import-", dir=_ensure(get_settings().home / "imports")))
    try:
        if display.lower().endswith(".zip") or (data is None and zipfile.is_zipfile(source)):
            root = safe_extract(data if data is not None else source, work / "zip")
            kind, labels = _find_labels(root)
        else:
            if data is not None:
                raise BadInputError("upload a zip that holds the labels file and its images")
            kind = ("csv" if source.suffix.lower() == ".csv" else "ppocr" if source.name == "Label.txt"
                    else "rec_gt" if source.name.endswith("rec_gt.txt") else "labels.jsonl")
            labels = source
        result = ImportResult(format=kind)
        pages = [p for f in labels_files(kind, labels) for p in parse_labels_file(kind, f, result.problems)]
        if not pages:
            first = f": {result.problems[0]}" if result.problems else ""
            raise BadInputError(f"{display}: no complete record to import{first}")
        _write_import(store, pages, display, kind, result)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _ensure(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _import_digest(doc_name: str, items: list[ImportPage]) -> str:
    """A content hash for an imported document: which of its pages are held out is then the same every time."""
    h = hashlib.sha256(f"import:{doc_name}".encode())
    for item in items:
        h.update(file_sha256(item.image).encode())
    return h.hexdigest()


def _import_lines(item: ImportPage, rgb: Image.Image) -> list[Line]:
    """An imported page's lines as the store keeps them (a crop-only item's line is the whole image)."""
    return [Line(points=box_points(0, 0, rgb.width, rgb.height) if item.crop_only else list(pts), text=text,
                 confidence=1.0) for pts, text in item.lines]


def _write_import(store: Store, pages: list[ImportPage], display: str, kind: str, result: ImportResult) -> None:
    """One transaction: documents, pages and confirmed lines; page images copied in first, removed on failure."""
    groups: dict[str, list[ImportPage]] = defaultdict(list)
    for p in pages:
        groups[f"{display}: crops" if p.crop_only else f"{display}: {p.doc}"].append(p)
    written: list[Path] = []
    try:
        with store.transaction():
            for doc_name, items in groups.items():
                digest = _import_digest(doc_name, items)
                doc_id = store.create_document(doc_name, digest, f"import-{kind}", len(items), "import", "import",
                                               status="done")
                for page_no, item in enumerate(items, 1):
                    rgb = load_image(item.image)  # upright (EXIF), as the labels' boxes are drawn
                    written.append(store.page_image_path(doc_id, page_no))
                    store.add_page(doc_id, page_no, rgb, _import_lines(item, rgb), "import", line_status="confirmed")
                    result.lines += len(item.lines)
                    result.pages += 1
                result.documents.append(doc_id)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
