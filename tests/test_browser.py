"""The whole loop in a real browser: upload a PDF, fix a line, fine-tune, download Markdown with the fix.

Runs `streamlit run app.py` on a free local port with a private INKSCRIBE_HOME and drives Debian's
Chromium with Playwright (never `playwright install`). Saves a small screenshot of every page to
docs/screenshots/ (git-ignored: they show a page of ../shared/data/notes, which stays out of the repo).
"""

from __future__ import annotations

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
NOTES = REPO.parent / "shared" / "data" / "notes"
PDF = NOTES / "pdfs" / "aI_calendar_plan.pdf"  # one page
SHOTS = REPO / "docs" / "screenshots"
FIXED = "INKSCRIBE FIXED LINE 42"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed"),
    pytest.mark.skipif(not PDF.exists() or not (NOTES / "labels.jsonl").exists(), reason=f"{NOTES} is not present"),
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


def _notes_zip(folder: Path) -> Path:
    """labels.jsonl + images of 4 short labelled pages of the notes (evaluation split), as a user would export them."""
    import zipfile

    rows = [json.loads(x) for x in (NOTES / "labels.jsonl").read_text().splitlines() if x.strip()]
    rows = sorted((r for r in rows if r.get("split") == "eval" and len(r["lines"]) >= 15), key=lambda r: len(r["lines"]))[:4]
    out = folder / "notes-dataset.zip"
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("labels.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        for r in rows:
            zf.write(NOTES / r["page"], r["page"])
    return out


def _shot(page, name: str) -> None:
    """A small PNG (palette, ≤1000 px wide) of the page as the user sees it."""
    from PIL import Image

    page.wait_for_timeout(1200)  # let fragments and reruns settle
    SHOTS.mkdir(parents=True, exist_ok=True)
    raw = SHOTS / f".{name}.raw.png"
    page.screenshot(path=str(raw), full_page=True)
    with Image.open(raw) as img:
        img = img.convert("RGB")
        img.thumbnail((1000, 2200))
        img.quantize(colors=64).save(SHOTS / f"{name}.png", optimize=True)
    raw.unlink()


def _count_lines(home: Path) -> int:
    with sqlite3.connect(home / "inkscribe.db") as conn:
        return conn.execute("SELECT COUNT(*) FROM lines").fetchone()[0]


def _go(page, url: str, heading: str) -> None:
    page.goto(url)
    page.get_by_role("heading", name=heading, exact=True).first.wait_for(timeout=30_000)
    page.wait_for_timeout(500)


def test_upload_fix_finetune_export(server, inkscribe_home):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 1300}, accept_downloads=True)
        try:
            # Upload: the PDF is saved on arrival, then digitized by a background job with progress.
            _go(page, server, "Upload notes")
            page.locator('input[type="file"]').set_input_files(str(PDF))
            page.get_by_text(re.compile(r"Ready to digitize: 1 file")).wait_for(timeout=30_000)
            page.reload()  # the upload was saved on arrival: a reload keeps it
            page.get_by_text(re.compile(r"Ready to digitize: 1 file")).wait_for(timeout=30_000)
            page.get_by_role("button", name="Digitize", exact=True).click()
            page.get_by_text(re.compile(r"Digitizing")).first.wait_for(timeout=30_000)
            page.get_by_text(re.compile(r"^Finished")).wait_for(timeout=180_000)
            page.get_by_text(re.compile(r"ready to review")).wait_for(timeout=30_000)
            page.get_by_role("link", name=re.compile("Review and fix lines")).wait_for(timeout=30_000)
            _shot(page, "upload")

            # Review: type the right text into the least confident line, Enter confirms and moves on.
            _go(page, f"{server}/review", "Review and fix")
            field = page.get_by_label("Text of this line (Enter = confirm & next)")
            field.fill(FIXED)
            field.press("Enter")
            page.get_by_text("Confirmed.").wait_for(timeout=30_000)
            expect(page.get_by_label("Text of this line (Enter = confirm & next)")).not_to_have_value(FIXED)
            # keyboard flow: the next line's text box has the cursor, so Skip (Tab Tab Tab Enter) needs no mouse
            expect(page.get_by_label("Text of this line (Enter = confirm & next)")).to_be_focused(timeout=10_000)
            # A missing line: drag a box on the page view, then add it as a new line.
            lines_before = _count_lines(inkscribe_home)
            page.get_by_text(re.compile(r"^Drag on the page to draw a box")).wait_for(timeout=30_000)
            page.wait_for_timeout(1500)  # the chart is redrawn after the confirm
            canvas = page.locator('[data-testid="stVegaLiteChart"]').first
            canvas.wait_for(state="visible", timeout=30_000)
            box = canvas.bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.9)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.93, steps=8)
            page.mouse.up()
            page.get_by_text(re.compile(r"^Drawn box: left \d+")).wait_for(timeout=30_000)
            page.get_by_role("button", name="Add it as a new line", exact=True).click()
            page.get_by_text(re.compile(r"^Drag on the page to draw a box")).wait_for(timeout=60_000)
            assert _count_lines(inkscribe_home) == lines_before + 1
            _shot(page, "review")

            # Dataset: import a few labelled pages of the writer's notes (a zip), so there are held-out pages.
            _go(page, f"{server}/dataset", "Your dataset")
            page.locator('input[type="file"]').set_input_files(str(_notes_zip(inkscribe_home.parent)))
            page.get_by_role("button", name="Import", exact=True).click()
            page.get_by_text(re.compile(r"Imported \d+ lines on 4 pages")).wait_for(timeout=60_000)
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

            # Export: the document's Markdown holds the fixed line.
            _go(page, f"{server}/export", "Export")
            _shot(page, "export")
            with page.expect_download() as dl:
                page.get_by_role("button", name="Markdown", exact=True).first.click()
            text = Path(dl.value.path()).read_text(encoding="utf-8")
            assert FIXED in text
            assert text.startswith("# aI\\_calendar\\_plan.pdf")
        finally:
            browser.close()
    db = sqlite3.connect(inkscribe_home / "inkscribe.db")
    jobs = {k: (s, e) for k, s, e in db.execute("SELECT kind, status, error FROM jobs")}
    assert jobs["digitize"][0] == "done" and jobs["train-recognizer"][0] == "done", jobs
    trained, metrics = (json.loads(x) for x in db.execute("SELECT trained_on, metrics FROM models").fetchone())
    assert trained["lines"] > 50 and metrics["holdout_lines"] >= 10 and metrics["base_holdout_cer"] > 0
