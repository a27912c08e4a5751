"""The personal dataset: every line the user confirmed, with a stable held-out share for evaluation.

Training reads it as `labels.jsonl`; it also imports other people's labelling formats
(labels.jsonl, PPOCRLabel `Label.txt` / `rec_gt.txt`, `image,text` CSV, as files or a zip) and
exports itself as a zip (Hugging Face imagefolder, PPOCRLabel). Imports check everything
first and write all complete records in one transaction: a bad file never leaves half an import.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
import zipfile
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

from core.errors import BadInputError
from core.geometry import bbox, box_points, crop_line
from core.store import Store

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
    rows = store.query(
        "SELECT p.id AS page_id, p.page_no, d.sha256, SUM(l.status = 'confirmed') AS confirmed, MAX(l.holdout) AS held"
        " FROM pages p JOIN documents d ON p.document_id = d.id JOIN lines l ON l.page_id = p.id GROUP BY p.id"
    )
    pages = [r for r in rows if r["confirmed"]]
    total = sum(r["confirmed"] for r in pages)
    held_pages = {r["page_id"] for r in rows if r["held"]}
    with store.transaction() as c:
        for pid in held_pages:  # lines added or confirmed later on a held-out page join it
            c.execute("UPDATE lines SET holdout = 1 WHERE page_id = ? AND holdout = 0", (pid,))
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
                c.execute("UPDATE lines SET holdout = 1 WHERE page_id = ?", (r["page_id"],))
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
            with Image.open(path) as img:
                cache_img = img.convert("RGB")
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
    for r in store.query(
        "SELECT d.id, d.name, l.status, l.holdout, l.text FROM lines l JOIN pages p ON l.page_id = p.id"
        " JOIN documents d ON p.document_id = d.id ORDER BY d.id"
    ):
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
    with store.transaction() as c:
        cur = c.execute("INSERT INTO datasets (name, line_ids, stats, created_at) VALUES (?, ?, ?, ?)",
                        (name, json.dumps(line_ids), json.dumps({"lines": len(line_ids)}), time.time()))
        return int(cur.lastrowid)


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
        incomplete = {r["page_id"] for r in store.query("SELECT page_id FROM lines WHERE status != 'confirmed'")}
        rows = [r for r in rows if r["page_id"] not in incomplete]
    by_page: dict[int, list] = defaultdict(list)
    for r in rows:
        by_page[r["page_id"]].append(r)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for lines in by_page.values():
            first = lines[0]
            split = "eval" if first["holdout"] and part != "train" else "train"
            fh.write(json.dumps({
                "page": str(store.home / first["image_path"]), "doc": first["document_name"], "split": split,
                "lines": [{"points": json.loads(r["points"]), "text": r["text"]} for r in lines],
            }, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    names = sorted({r["document_name"] for r in rows})
    return {"path": str(out), "lines": len(rows), "pages": len(by_page), "documents": len(names), "document_names": names,
            "line_ids": [r["id"] for r in rows], "characters": sum(len(r["text"]) for r in rows)}


def export_zip(store: Store, fmt: str = "imagefolder") -> bytes:
    """The confirmed dataset as a zip: "imagefolder" (train/ and test/ crops + metadata.jsonl) or "ppocr"."""
    rows = store.confirmed_lines()
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


def safe_extract(data: bytes | str | Path, dest: Path) -> Path:
    """Extract a zip after checking every member: no absolute paths, no `..`, no links, bounded size."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data)
    except zipfile.BadZipFile as exc:
        raise BadInputError("this file is not a readable zip archive") from exc
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_IMPORT_FILES:
            raise BadInputError(f"the zip holds {len(infos)} files; at most {MAX_IMPORT_FILES} are accepted")
        if sum(i.file_size for i in infos) > MAX_IMPORT_BYTES:
            raise BadInputError("the zip unpacks to more than 2 GB; import it in parts")
        for info in infos:
            name = info.filename.replace("\\", "/")
            p = PurePosixPath(name)
            if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in p.parts:
                raise BadInputError(f"refused: the zip member {info.filename!r} points outside the archive "
                                    "(absolute path or '..'); nothing was imported")
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise BadInputError(f"refused: the zip member {info.filename!r} is a symbolic link; nothing was imported")
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        for info in infos:
            target = (dest / info.filename).resolve()
            if root not in target.parents and target != root:
                raise BadInputError(f"refused: the zip member {info.filename!r} points outside the archive")
            try:
                zf.extract(info, dest)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                raise BadInputError(f"the zip member {info.filename!r} is damaged ({exc}); nothing was imported") from exc
    return dest


def _find_labels(root: Path) -> tuple[str, Path]:
    for pattern, kind in (("labels.jsonl", "labels.jsonl"), ("Label.txt", "ppocr"), ("rec_gt.txt", "rec_gt"),
                          ("*.csv", "csv"), ("*.jsonl", "labels.jsonl")):
        found = sorted(root.rglob(pattern), key=lambda p: len(p.parts))
        found = [p for p in found if "__MACOSX" not in p.parts]
        if found:
            return kind, found[0]
    raise BadInputError("found no labels.jsonl, Label.txt, rec_gt.txt or .csv file in the archive")


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
    try:
        with Image.open(p) as img:
            img.verify()
        with Image.open(p) as img:
            return img.size
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"image {p.name} is not a readable picture") from exc


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
            if kind == "labels.jsonl":
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
        pages = parse_labels_file(kind, labels, result.problems)
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


def _write_import(store: Store, pages: list[ImportPage], display: str, kind: str, result: ImportResult) -> None:
    """One transaction: documents, pages and confirmed lines; page images copied in first, removed on failure."""
    groups: dict[str, list[ImportPage]] = defaultdict(list)
    for p in pages:
        groups[f"{display}: crops" if p.crop_only else f"{display}: {p.doc}"].append(p)
    written: list[Path] = []
    now = time.time()
    try:
        with store.transaction() as c:
            for doc_name, items in groups.items():
                digest = hashlib.sha256(f"import:{doc_name}:{now}".encode()).hexdigest()
                doc_id = int(c.execute(
                    "INSERT INTO documents (name, sha256, source_kind, page_count, status, detector, recognizer,"
                    " created_at, updated_at) VALUES (?, ?, ?, ?, 'done', 'import', 'import', ?, ?)",
                    (doc_name, digest, f"import-{kind}", len(items), now, now)).lastrowid)
                folder = _ensure(store.images_dir / str(doc_id))
                for page_no, item in enumerate(items, 1):
                    with Image.open(item.image) as img:
                        rgb = img.convert("RGB")
                    final = folder / f"page-{page_no:04d}.png"
                    rgb.save(final, format="PNG", compress_level=1)
                    written.append(final)
                    page_id = int(c.execute(
                        "INSERT INTO pages (document_id, page_no, image_path, width, height) VALUES (?, ?, ?, ?, ?)",
                        (doc_id, page_no, str(final.relative_to(store.home)), rgb.width, rgb.height)).lastrowid)
                    for pos, (pts, text) in enumerate(item.lines):
                        if item.crop_only:
                            pts = box_points(0, 0, rgb.width, rgb.height)
                        x0, y0, x1, y1 = bbox(pts)
                        c.execute(
                            "INSERT INTO lines (page_id, position, points, text, confidence, status, recognizer, updated_at)"
                            " VALUES (?, ?, ?, ?, 1.0, 'confirmed', 'import', ?)",
                            (page_id, pos, json.dumps([[round(x, 1), round(y, 1)] for x, y in pts]), text, now))
                        result.lines += 1
                    result.pages += 1
                result.documents.append(doc_id)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
