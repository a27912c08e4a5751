"""End to end through the CLI, as a user runs it: a real PDF of the notes, offline."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args, home, timeout=600):
    env = {**os.environ, "INKSCRIBE_HOME": str(home), "HF_HUB_OFFLINE": "1", "INKSCRIBE_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_digitize_real_pdf_to_json_and_markdown(notes_dir, tmp_path, inkscribe_home):
    pdf = notes_dir / "pdfs" / "assembly_hw.pdf"
    out_json = tmp_path / "out.json"
    r = run_cli("digitize", str(pdf), "-o", str(out_json), "--format", "json", home=inkscribe_home)
    assert r.returncode == 0, r.stderr
    data = json.loads(out_json.read_text())
    assert len(data["pages"]) == 3
    page = data["pages"][0]
    assert page["source"] == "assembly_hw.pdf" and page["page"] == 1
    assert (page["width"], page["height"]) == (1667, 2356)
    assert len(page["lines"]) >= 10
    line = page["lines"][0]
    assert set(line) == {"points", "text", "confidence"} and 0.0 <= line["confidence"] <= 1.0
    ys = [min(p[1] for p in ln["points"]) for ln in page["lines"]]
    assert ys[0] <= sorted(ys)[2], "reading order starts at the top of the page"
    assert sum(len(ln["text"]) for ln in page["lines"]) > 50
    assert "%|" in r.stderr  # a progress bar on stderr

    # Every digitized document is kept in the store for review and fine-tuning.
    from core.store import Store

    store = Store(inkscribe_home)
    docs = store.documents()
    assert [(d["name"], d["status"], d["pages_done"]) for d in docs] == [("assembly_hw.pdf", "done", 3)]

    out_md = tmp_path / "out.md"
    r = run_cli("digitize", str(pdf), "-o", str(out_md), "--detector", "classical", "--no-store", home=inkscribe_home)
    assert r.returncode == 0, r.stderr
    md = out_md.read_text()
    assert md.startswith("# assembly\\_hw.pdf") and "<!-- page 3 -->" in md
    assert len(Store(inkscribe_home).documents()) == 1  # --no-store kept nothing


def test_help_explains_every_flag(inkscribe_home):
    r = run_cli("digitize", "--help", home=inkscribe_home)
    assert r.returncode == 0
    for flag in ("--output", "--format", "--detector", "--recognizer", "--no-store"):
        assert flag in r.stdout


@pytest.mark.parametrize("content", [None, b"", b"not a pdf at all", b"%PDF-1.4\n%%EOF garbage"])
def test_bad_input_is_one_clear_line_and_changes_nothing(tmp_path, inkscribe_home, content):
    src = tmp_path / "notes.pdf"
    if content is not None:
        src.write_bytes(content)
    out = tmp_path / "out.md"
    r = run_cli("digitize", str(src), "-o", str(out), "--detector", "classical", home=inkscribe_home)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: ")
    assert not out.exists()
    assert not (inkscribe_home / "inkscribe.db").exists()


def test_unknown_model_names_are_user_errors(tmp_path, inkscribe_home):
    from PIL import Image

    img = tmp_path / "p.png"
    Image.new("RGB", (100, 100), "white").save(img)
    r = run_cli("detect", str(img), "--detector", "no-such-thing", home=inkscribe_home)
    assert r.returncode == 2 and "unknown detector" in r.stderr and "Traceback" not in r.stderr
