"""The whole loop in a real browser: upload a PDF, fix a line, import labelled pages, fine-tune, evaluate, export.

Runs `streamlit run app.py` on a free local port with a private INKSCRIBE_HOME and drives Debian's
Chromium with Playwright (never `playwright install`). Every page it shows comes from the CC BY 4.0
`copiste-dun-jour` set of ../shared/data/lines-ccby, so the small screenshot it saves of each main page
(docs/screenshots/<page>.png, overwritten each run) is committed; docs/screenshots/README.md gives the
attribution.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CCBY = REPO.parent / "shared" / "data" / "lines-ccby" / "copiste-dun-jour"  # CC BY 4.0: see its README.md
UPLOAD_PAGES = ("wikitexte_0001_1", "wikitexte_0001_2")  # one copied text on two pages: the uploaded PDF
PDF_NAME = "copiste-wikitexte-0001.pdf"
DATASET_PAGES = ("wikitexte_0003_1", "wikitexte_0004_1", "wikitexte_0008", "wikitexte_0009")  # other texts
SHOTS = REPO / "docs" / "screenshots"
SHOT_MAX_BYTES = 300_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed"),
    pytest.mark.skipif(not (CCBY / "labels.jsonl").exists(), reason=f"{CCBY} is not present"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(inkscribe_home):
    pytest.importorskip("playwright")
    port = _free_port()
    env = {**os.environ, "INKSCRIBE_HOME": str(inkscribe_home), "OMP_NUM_THREADS": "1", "INKSCRIBE_THREADS": "1"}
    log = open(inkscribe_home.parent / "streamlit.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1", "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.25)
        else:
            raise AssertionError("streamlit did not start: " + (inkscribe_home.parent / "streamlit.log").read_text())
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        log.close()
        db = inkscribe_home / "inkscribe.db"
        if db.exists():  # stop workers this test started
            with sqlite3.connect(db) as conn:
                for (pid,) in conn.execute("SELECT pid FROM jobs WHERE status IN ('queued', 'running') AND pid"):
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass


def _labels() -> dict[str, dict]:
    """The set's labelled pages by stem (labels.jsonl: page, doc, split, src, lines of points + text)."""
    rows = (json.loads(x) for x in (CCBY / "labels.jsonl").read_text(encoding="utf-8").splitlines() if x.strip())
    return {Path(r["page"]).stem: r for r in rows}


def _pdf(folder: Path) -> Path:
    """A two-page PDF of scanned handwriting, as a user would upload it; the same bytes every run (fixed dates).

    Images at 200 dpi, the app's default for reading PDFs, so a page pixel is a pixel of the set's image.
    """
    from PIL import Image

    images = [Image.open(CCBY / "pages" / f"{stem}.jpg").convert("RGB") for stem in UPLOAD_PAGES]
    out = folder / PDF_NAME
    epoch = time.gmtime(0)
    images[0].save(out, save_all=True, append_images=images[1:], resolution=200.0, quality=85,
                   title=Path(PDF_NAME).stem, creationDate=epoch, modDate=epoch)
    return out


def _dataset_zip(folder: Path, labels: dict[str, dict]) -> tuple[Path, int]:
    """labels.jsonl + images of 4 labelled pages (no empty line), as a user would export them; and their line count."""
    import zipfile

    rows = [labels[stem] for stem in DATASET_PAGES]
    assert all(line["text"].strip() for r in rows for line in r["lines"])
    out = folder / "copiste-dataset.zip"
    with zipfile.ZipFile(out, "w") as zf:
        labels_info = zipfile.ZipInfo("labels.jsonl", date_time=(1980, 1, 1, 0, 0, 0))  # the same bytes every run
        zf.writestr(labels_info, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        for r in rows:
            zf.write(CCBY / r["page"], r["page"])
    return out, sum(len(r["lines"]) for r in rows)


def _shot(page, name: str) -> None:
    """A small PNG (palette, 1280 px wide) of the page as the user sees it: docs/screenshots/<name>.png, overwritten."""
    from PIL import Image

    page.wait_for_timeout(1500)  # let fragments, reruns and images settle
    page.mouse.move(0, 0)  # no hover tooltip in the picture
    with Image.open(io.BytesIO(page.screenshot(full_page=True))) as img:
        img = img.convert("RGB")
        img.thumbnail((1280, 2400))
        SHOTS.mkdir(parents=True, exist_ok=True)
        out = SHOTS / f"{name}.png"
        # 192 colours: with fewer, median cut folds a thin green (confirmed) box into the page's blues
        img.quantize(colors=192).save(out, optimize=True)
    assert out.stat().st_size < SHOT_MAX_BYTES, (out, out.stat().st_size)


def _count_lines(home: Path) -> int:
    with sqlite3.connect(home / "inkscribe.db") as conn:
        return conn.execute("SELECT COUNT(*) FROM lines").fetchone()[0]


def _line(home: Path, line_id: int) -> dict:
    with sqlite3.connect(home / "inkscribe.db") as conn:
        conn.row_factory = sqlite3.Row
        return dict(conn.execute("SELECT l.*, p.page_no, p.width FROM lines l JOIN pages p ON l.page_id = p.id"
                                 " WHERE l.id = ?", (line_id,)).fetchone())


def _box(points) -> tuple[float, float, float, float]:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def _truth(line: dict, labels: dict[str, dict]) -> str:
    """The labelled text of the uploaded page's line this detected line covers most of (its box inside the label's)."""
    from PIL import Image

    source = labels[UPLOAD_PAGES[line["page_no"] - 1]]
    with Image.open(CCBY / source["page"]) as img:
        scale = img.width / line["width"]  # stored page pixels → label pixels
    x0, y0, x1, y1 = (v * scale for v in _box(json.loads(line["points"])))

    def inside(label) -> float:
        a0, b0, a1, b1 = _box(label["points"])
        return max(0, min(x1, a1) - max(x0, a0)) * max(0, min(y1, b1) - max(y0, b0)) / ((x1 - x0) * (y1 - y0))

    best = max(source["lines"], key=inside)
    assert inside(best) > 0.6 and best["text"].strip(), (line, best)  # the detector found a real labelled line
    return best["text"]


def _go(page, url: str, heading: str) -> None:
    page.goto(url)
    page.get_by_role("heading", name=heading, exact=True).first.wait_for(timeout=90_000)  # a page can be slow while a job ends on a busy 2-core CPU
    page.wait_for_timeout(500)


def test_upload_fix_finetune_export(server, inkscribe_home):
    from playwright.sync_api import expect, sync_playwright

    from core.export import escape_md

    labels = _labels()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 1040}, accept_downloads=True)
        try:
            # Upload: the PDF is saved on arrival, then digitized by a background job with progress.
            _go(page, server, "Upload notes")
            page.locator('input[type="file"]').set_input_files(str(_pdf(inkscribe_home.parent)))
            page.get_by_text(re.compile(r"Ready to digitize: 1 file")).wait_for(timeout=30_000)
            page.reload()  # the upload was saved on arrival: a reload keeps it
            page.get_by_text(re.compile(r"Ready to digitize: 1 file")).wait_for(timeout=30_000)
            page.get_by_role("button", name="Digitize", exact=True).click()
            page.get_by_text(re.compile(r"Digitizing")).first.wait_for(timeout=30_000)
            page.get_by_text(re.compile(r"^Finished")).wait_for(timeout=180_000)
            page.get_by_text(re.compile(r"ready to review")).wait_for(timeout=30_000)
            page.get_by_role("link", name=re.compile("Review and fix lines")).wait_for(timeout=30_000)
            _shot(page, "upload")

            # Review: type the right text (the set's label) into the least confident line; Enter confirms, moves on.
            _go(page, f"{server}/review", "Review and fix")
            page.wait_for_url(re.compile(r"[?&]line=\d+"), timeout=30_000)
            line = _line(inkscribe_home, int(re.search(r"[?&]line=(\d+)", page.url).group(1)))
            fixed = _truth(line, labels)
            assert line["status"] == "new" and line["text"] != fixed  # a real fix, so the export below can tell
            field = page.get_by_label("Text of this line (Enter = confirm & next)")
            expect(field).to_have_value(line["text"])
            field.fill(fixed)
            field.press("Enter")
            page.get_by_text("Confirmed.").wait_for(timeout=30_000)
            expect(page.get_by_label("Text of this line (Enter = confirm & next)")).not_to_have_value(fixed)
            # keyboard flow: the next line's text box has the cursor, so Skip (Tab Tab Tab Enter) needs no mouse
            expect(page.get_by_label("Text of this line (Enter = confirm & next)")).to_be_focused(timeout=10_000)
            # A missing line: the circled page number at the bottom right of page 1 has no box; drag one and add it.
            lines_before = _count_lines(inkscribe_home)
            page.get_by_text(re.compile(r"^Drag on the page to draw a box")).wait_for(timeout=30_000)
            page.wait_for_timeout(1500)  # the chart is redrawn after the confirm
            canvas = page.locator('[data-testid="stVegaLiteChart"]').first
            canvas.wait_for(state="visible", timeout=30_000)
            box = canvas.locator("canvas, svg").first.bounding_box()  # the chart itself: page pixels scaled to it
            page.mouse.move(box["x"] + box["width"] * 0.86, box["y"] + box["height"] * 0.905)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.985, box["y"] + box["height"] * 0.985, steps=8)
            page.mouse.up()
            page.get_by_text(re.compile(r"^Drawn box: left \d+")).wait_for(timeout=30_000)
            page.get_by_role("button", name="Add it as a new line", exact=True).click()
            page.get_by_text(re.compile(r"^Drag on the page to draw a box")).wait_for(timeout=60_000)
            assert _count_lines(inkscribe_home) == lines_before + 1
            with sqlite3.connect(inkscribe_home / "inkscribe.db") as conn:
                points, width, height = conn.execute(
                    "SELECT l.points, p.width, p.height FROM lines l JOIN pages p ON l.page_id = p.id"
                    " ORDER BY l.id DESC LIMIT 1").fetchone()
            x0, y0, x1, y1 = _box(json.loads(points))
            # the box landed where it was drawn (within the chart's few pixels of padding), not above it
            assert abs(x0 / width - 0.86) < 0.04 and abs(y0 / height - 0.905) < 0.03, (x0 / width, y0 / height)
            assert abs(y1 / height - 0.985) < 0.03, y1 / height
            _shot(page, "review")

            # Dataset: import a few labelled pages (a zip), so there are lines to train on and held-out pages.
            _go(page, f"{server}/dataset", "Your dataset")
            zip_path, n_lines = _dataset_zip(inkscribe_home.parent, labels)
            page.locator('input[type="file"]').set_input_files(str(zip_path))
            page.get_by_role("button", name="Import", exact=True).click()
            page.get_by_text(re.compile(rf"Imported {n_lines} lines on 4 pages")).wait_for(timeout=60_000)
            _go(page, f"{server}/dataset", "Your dataset")  # opened again: its tables now hold the imported lines
            confirmed = n_lines + 1  # and the line fixed above
            page.get_by_text(f"{confirmed} of {confirmed} confirmed lines shown").wait_for(timeout=30_000)
            _shot(page, "dataset")

            # Fine-tune: one button; the job panel shows live progress; it finishes in the background.
            _go(page, f"{server}/finetune", "Fine-tune on your handwriting")
            budget = page.get_by_role("spinbutton", name="Time budget (minutes)").first
            budget.fill("1")
            budget.press("Tab")
            page.get_by_role("button", name="Fine-tune", exact=True).click()
            page.get_by_text(re.compile(r"Fine-tuning the recognizer")).first.wait_for(timeout=30_000)
            page.get_by_text(re.compile(r"step \d+ of \d+")).first.wait_for(timeout=180_000)
            _shot(page, "finetune")
            page.reload()  # progress lives in the store, not in the browser session
            page.get_by_text(re.compile(r"Fine-tuning the recognizer")).first.wait_for(timeout=30_000)
            page.get_by_text(re.compile(r"^Finished")).wait_for(timeout=240_000)

            _go(page, f"{server}/models", "Models")
            page.get_by_text(re.compile(r"recognizer-job\d+ \(#\d+\)")).first.wait_for(timeout=30_000)
            _shot(page, "models")
            _go(page, f"{server}/evaluate", "Evaluate")
            page.get_by_role("button", name="Evaluate", exact=True).click()
            page.get_by_text("Per-line differences for").wait_for(timeout=120_000)
            page.get_by_text(re.compile(r"truth:")).first.wait_for(timeout=30_000)
            _shot(page, "evaluate")

            # Export: the uploaded document's Markdown holds the fixed line (previewed on the page, and downloaded).
            _go(page, f"{server}/export", "Export")
            page.get_by_text("Preview Markdown").first.click()  # the first document: the upload
            preview = page.locator('[data-testid="stCode"]').first
            expect(preview).to_contain_text(f"# {escape_md(PDF_NAME)}", timeout=30_000)
            expect(preview).to_contain_text(escape_md(fixed))
            _shot(page, "export")
            with page.expect_download() as dl:  # its own Markdown button (the first one is for all documents)
                page.get_by_role("button", name="Markdown", exact=True).nth(1).click()
            text = Path(dl.value.path()).read_text(encoding="utf-8")
            assert text.startswith(f"# {escape_md(PDF_NAME)}\n") and "<!-- page 2 -->" in text
            assert escape_md(fixed) in text
        finally:
            browser.close()
    db = sqlite3.connect(inkscribe_home / "inkscribe.db")
    jobs = {k: (s, e) for k, s, e in db.execute("SELECT kind, status, error FROM jobs")}
    assert jobs["digitize"][0] == "done" and jobs["train-recognizer"][0] == "done", jobs
    trained, metrics = (json.loads(x) for x in db.execute("SELECT trained_on, metrics FROM models").fetchone())
    assert trained["lines"] > 50 and metrics["holdout_lines"] >= 10 and metrics["base_holdout_cer"] > 0
