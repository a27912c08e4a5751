"""The main job: ingest → detect → recognize → layout → store, one page at a time.

The CLI, the app's upload job and the benchmarks all call `digitize`; it checks every input
before it writes anything, and stores each page as one complete record as soon as it is read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from core import procs
from core.detect import Detector, load_detector, resolve_detector_spec
from core.errors import CancelledError
from core.geometry import bbox, crop_line
from core.ingest import SourceInfo, inspect_source, iter_pages
from core.layout import order_lines
from core.recognize import Recognizer, load_recognizer, resolve_recognizer_spec
from core.store import Store, file_sha256
from core.types import Line, PageResult


@dataclass
class Engines:
    detector: Detector
    recognizer: Recognizer
    detector_spec: str
    recognizer_spec: str

    @classmethod
    def load(cls, detector: str | None = "default", recognizer: str | None = "default") -> Engines:
        return cls(load_detector(detector), load_recognizer(recognizer),
                   resolve_detector_spec(detector), resolve_recognizer_spec(recognizer))


@dataclass
class DocumentResult:
    source: Path
    pages: list[PageResult] = field(default_factory=list)
    document_id: int | None = None


def page_warnings(image: Image.Image, lines: Sequence[Line]) -> list[str]:
    """What a user should know about a page the engines could not read well."""
    warnings = []
    if not lines:
        warnings.append("no text lines found on this page (blank, a drawing, or rotated?)")
    if min(image.size) < 300:
        warnings.append(f"the page is small ({image.width}×{image.height} px): text may be unreadable")
    if lines:
        tall = sum(1 for ln in lines if (lambda b: (b[3] - b[1]) > (b[2] - b[0]) * 1.5)(bbox(ln.points)))
        if tall > len(lines) / 2:
            warnings.append("most lines are taller than wide: the page may be rotated")
    return warnings


def read_page(image: Image.Image, engines: Engines, source: str = "", page_no: int = 1) -> PageResult:
    """Detect, crop, recognize and order the lines of one page."""
    lines = recognize_lines(image, engines.detector.detect([image])[0], engines.recognizer)
    ordered = order_lines(lines)
    return PageResult(source, page_no, image.width, image.height, ordered, page_warnings(image, ordered))


def recognize_lines(image: Image.Image, lines: Sequence[Line], recognizer: Recognizer) -> list[Line]:
    """Re-read given boxes with a recognizer (re-transcribe, a fixed box)."""
    crops = []
    for ln in lines:
        try:
            crops.append(crop_line(image, ln.points))
        except ValueError:
            crops.append(None)
    for ln, rec in zip(lines, recognizer.recognize(crops), strict=True):
        ln.text, ln.confidence = rec.text, rec.confidence
    return list(lines)


ProgressFn = Callable[[dict], None]


def _resumable(store: Store, sha: str, owner: str) -> int | None:
    """`owner`'s unfinished document of this file, unless a live process (another run) is still reading it."""
    row = store.unfinished_document(sha, owner)
    if row is None:
        return None
    reading = row["status"] == "processing" and row["owner_pid"] != os.getpid()
    marker = ("worker", owner.removeprefix("job:")) if owner.startswith("job:") else ()
    if reading and procs.process_alive(row["owner_pid"], marker):
        return None
    return int(row["id"])


def digitize(
    inputs: Sequence[str | Path],
    engines: Engines,
    store: Store | None = None,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    keep_partial: bool = True,
    names: Sequence[str] | None = None,
    resume: bool = True,
    owner: str = "cli",
) -> list[DocumentResult]:
    """Read every page of every input; with a store, keep each page as it is read.

    All inputs are inspected first, so a bad file fails before any work or write. With
    `keep_partial=False` a document this run created and could not finish is removed again.
    With `resume`, a file whose earlier run by the same `owner` ('cli', 'job:ID') was
    interrupted continues in its document, reading only the pages not stored yet; a document
    another owner, or a live process, is reading is never touched.
    """
    infos: list[SourceInfo] = [inspect_source(p) for p in inputs]
    total = sum(i.pages for i in infos)
    done = 0
    results = []
    for n, info in enumerate(infos):
        name = names[n] if names else info.path.name
        doc = DocumentResult(info.path)
        stored_pages: set[int] = set()
        created = False
        if store is not None:
            sha = file_sha256(info.path)
            unfinished = _resumable(store, sha, owner) if resume else None
            if unfinished is not None:  # our own interrupted run of this very file: carry on where it stopped
                doc.document_id = unfinished
                stored_pages = {p.page_no for p in store.pages(unfinished)}
                store.claim_document(unfinished)
            else:
                doc.document_id = store.create_document(name, sha, info.kind, info.pages, engines.detector_spec,
                                                        engines.recognizer_spec, owner=owner)
                created = True
        try:
            for page in iter_pages(info.path, info, skip=stored_pages):
                if should_stop and should_stop():
                    raise CancelledError("stopped on request")
                if page.image is None:  # stored by an earlier, interrupted run
                    done += 1
                    continue
                result = read_page(page.image, engines, name, page.index)
                if store is not None and doc.document_id is not None:
                    store.add_page(doc.document_id, page.index, page.image, result.lines,
                                   engines.recognizer_spec, result.warnings)
                doc.pages.append(result)
                done += 1
                if progress:
                    progress({"step": done, "total_steps": total, "document": name, "page": page.index,
                              "pages_in_document": info.pages, "message": f"{name}: page {page.index}/{info.pages}"})
        except BaseException:
            if store is not None and doc.document_id is not None:
                if keep_partial or not created:  # pages an earlier run stored are the user's: keep them
                    store.set_document_status(doc.document_id, "failed")
                else:
                    store.delete_document(doc.document_id)
            raise
        if store is not None and doc.document_id is not None:
            store.set_document_status(doc.document_id, "done")
        results.append(doc)
    return results
