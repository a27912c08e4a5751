"""Load benchmark: digitize PDFs of 10/50/200 pages (flat memory?) and time the review page's store queries.

Usage (one thread; everything is written under --work, never into the repo):
    OMP_NUM_THREADS=1 .venv/bin/python bench/load.py --sizes 10 50 200 --recognizer fake
    OMP_NUM_THREADS=1 .venv/bin/python bench/load.py --sizes 10 --recognizer default
    OMP_NUM_THREADS=1 .venv/bin/python bench/load.py --queries-only

Each PDF size runs in its own child process (a fresh INKSCRIBE_HOME), so its peak RSS
(`ru_maxrss`) is its own. The page is the first page of a notes PDF from ../shared/data/notes/pdfs
when present (rendered at 200 dpi), else a synthetic page of the same size. `--recognizer fake`
returns a constant per line (measures ingest + detect + layout + store: the part that scales with
pages); `default` is the shipped recognizer.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devdata import NOTES_PDFS

REPO = Path(__file__).resolve().parent.parent


def rss_mb() -> float:
    """Current resident set size in MB (psutil when installed, else /proc)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def page_image():
    """One real notes page (first page of the first notes PDF) or a synthetic one of the same size."""
    from PIL import Image, ImageDraw

    pdfs = sorted(NOTES_PDFS.glob("*.pdf")) if NOTES_PDFS.is_dir() else []
    if pdfs:
        from pdf2image import convert_from_path

        return convert_from_path(str(pdfs[0]), dpi=200, first_page=1, last_page=1)[0].convert("RGB"), pdfs[0].name
    img = Image.new("RGB", (1667, 2356), "white")
    d = ImageDraw.Draw(img)
    for r in range(28):
        y, x = 120 + r * 78, 100
        while x < 1500:
            w = 30 + (x * 7 + r * 13) % 90
            d.rectangle([x, y, x + w, y + 28], fill=(20, 30, 120))
            x += w + 22
    return img, "synthetic"


def build_pdf(path: Path, pages: int) -> tuple[Path, str]:
    img, origin = page_image()
    img.save(path, format="PDF", resolution=200.0, save_all=True, append_images=(img for _ in range(pages - 1)))
    return path, origin


class FakeRecognizer:
    name = "fake"

    def recognize(self, crops):
        from core.recognize import Recognition

        return [Recognition("x", 0.5) for _ in crops]


def child(pdf: Path, recognizer: str, detector: str) -> dict:
    """Digitize one PDF into a fresh store; report time per page and memory along the way."""
    from core.settings import configure_process

    configure_process(threads=1)
    from core.detect import load_detector
    from core.pipeline import Engines, digitize
    from core.store import Store

    t0 = time.perf_counter()
    if recognizer == "fake":
        engines = Engines(load_detector(detector), FakeRecognizer(), detector, "fake")
    else:
        engines = Engines.load(detector, recognizer)
    load_s = time.perf_counter() - t0
    rss_loaded = rss_mb()
    samples: list[tuple[int, float, float]] = []
    start = time.perf_counter()

    def progress(info: dict) -> None:
        samples.append((info["step"], time.perf_counter() - start, rss_mb()))

    store = Store()
    (doc,) = digitize([pdf], engines, store=store, progress=progress, keep_partial=False)
    total = time.perf_counter() - start
    lines = len(store.document_lines(doc.document_id))
    store.close()
    rss = [s[2] for s in samples]
    per_page = [b[1] - a[1] for a, b in zip([(0, 0.0, 0.0), *samples[:-1]], samples, strict=True)]
    return {
        "pages": len(samples), "lines": lines, "engine_load_s": round(load_s, 2), "total_s": round(total, 1),
        "s_per_page": round(total / max(1, len(samples)), 3),
        "s_per_page_median": round(statistics.median(per_page), 3) if per_page else None,
        "rss_after_load_mb": round(rss_loaded, 1),
        "rss_after_page1_mb": round(rss[0], 1) if rss else None,
        "rss_after_last_page_mb": round(rss[-1], 1) if rss else None,
        "rss_max_sampled_mb": round(max(rss), 1) if rss else None,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def run_sizes(sizes: list[int], recognizer: str, detector: str, work: Path) -> list[dict]:
    out = []
    for n in sizes:
        pdf, origin = build_pdf(work / f"load-{n}.pdf", n)
        home = Path(tempfile.mkdtemp(prefix=f"home-{n}-", dir=work))
        env = {**os.environ, "INKSCRIBE_HOME": str(home), "OMP_NUM_THREADS": "1", "INKSCRIBE_THREADS": "1",
               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(pdf), "--recognizer", recognizer,
               "--detector", detector]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
        if res.returncode != 0:
            raise SystemExit(f"size {n} failed:\n{res.stderr[-3000:]}")
        row = {"size": n, "page_source": origin, "pdf_mb": round(pdf.stat().st_size / 2**20, 1),
               "recognizer": recognizer, "detector": detector, **json.loads(res.stdout.strip().splitlines()[-1])}
        print(json.dumps(row), flush=True)
        out.append(row)
        pdf.unlink()
    return out


def _time(fn, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return round(best * 1000, 2)


def run_queries(work: Path, lines_per_doc: int = 2000, other_docs: int = 24, pages: int = 40) -> dict:
    """A 2,000-line document (40 pages × 50 lines) in a store of 25 such documents (50,000 lines)."""
    from PIL import Image

    from core.review import next_to_fix, review_queue
    from core.store import Store
    from core.types import Line

    home = Path(tempfile.mkdtemp(prefix="queries-", dir=work))
    store = Store(home)
    img = Image.new("RGB", (200, 280), "white")
    per_page = lines_per_doc // pages
    t0 = time.perf_counter()
    doc_ids = []
    for d in range(other_docs + 1):
        doc = store.create_document(f"doc-{d}.pdf", f"{d:064d}", "pdf", pages, "classical", "fake")
        for p in range(1, pages + 1):
            lines = [Line([(10, 30 * i), (900, 30 * i), (900, 30 * i + 25), (10, 30 * i + 25)], f"text {d} {p} {i}",
                          confidence=(i % 10) / 10) for i in range(per_page)]
            store.add_page(doc, p, img, lines, "fake")
        store.set_document_status(doc, "done")
        doc_ids.append(doc)
    build_s = time.perf_counter() - t0
    with store.transaction() as c:  # half the lines confirmed, as after a review session
        c.execute("UPDATE lines SET status = 'confirmed' WHERE id % 2 = 0")
    doc = doc_ids[0]
    page_ids = [p.id for p in store.pages(doc)]
    some_line = store.lines(page_ids[0])[0]["id"]
    res = {
        "store_lines": store.query("SELECT COUNT(*) AS n FROM lines")[0]["n"],
        "doc_lines": len(store.document_lines(doc)),
        "build_s": round(build_s, 1),
        "ms_lines_of_one_page": _time(lambda: [store.lines(pid) for pid in page_ids]) / len(page_ids),
        "ms_document_lines_2000": _time(lambda: store.document_lines(doc)),
        "ms_confirmed_lines_doc": _time(lambda: store.confirmed_lines(doc)),
        "ms_confirmed_lines_all": _time(lambda: store.confirmed_lines()),
        "ms_documents_list": _time(lambda: store.documents()),
        "ms_pages_of_doc": _time(lambda: store.pages(doc)),
        "ms_review_queue_page": _time(lambda: review_queue(store, page_ids[0])),
        "ms_next_to_fix_doc": _time(lambda: next_to_fix(store, 20, doc)),
        "ms_update_line": _time(lambda: store.update_line(some_line, text=f"edit {time.time()}")),
    }
    res["ms_lines_of_one_page"] = round(res["ms_lines_of_one_page"], 3)
    store.close()
    print(json.dumps(res), flush=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[10, 50, 200])
    ap.add_argument("--recognizer", default="fake", help="'fake' (no reading) or any recognizer spec, e.g. default")
    ap.add_argument("--detector", default="classical")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "inkscribe-load"), help="scratch folder (PDFs and stores)")
    ap.add_argument("--queries-only", action="store_true")
    ap.add_argument("--no-queries", action="store_true")
    ap.add_argument("--out", help="also write all results as JSON here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child), args.recognizer, args.detector)))
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    if not args.queries_only:
        results["digitize"] = run_sizes(args.sizes, args.recognizer, args.detector, work)
    if not args.no_queries:
        results["queries"] = run_queries(work)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
