"""Bad inputs through `python -m core digitize`: one clear line, exit 2, store untouched, no output file.

Most cases run the CLI's `main` in this process (same code path, fast); `test_subprocess_*`
run the real `python -m core` to prove the exit code and the absence of a traceback.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from PIL import Image
from robustness_helpers import assert_user_error, make_pdf, orphans, page_image, run_cli, snapshot


def _write(path: Path, data: bytes) -> list[Path]:
    path.write_bytes(data)
    return [path]


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb_png(tmp: Path) -> list[Path]:
    # Says 30000×30000 (900 M pixels, ~2.7 GB as RGB) in a file of a few hundred bytes: only the
    # header is real, which is all a size check may look at.
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 1, 0, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" + b"\xff" * 3750)) + _png_chunk(b"IEND", b""))
    return _write(tmp / "bomb.png", data)


def _bomb_frame_tiff(tmp: Path) -> list[Path]:
    # Frame 1 is an ordinary page, frame 2 far over the (lowered) pixel limit: checking frame 1 alone is not enough.
    p = tmp / "frames.tiff"
    page_image(400, 500).save(p, save_all=True, compression="tiff_deflate",
                              append_images=[Image.new("L", (3000, 3000), 255)])
    return [p]


def _truncated_png(tmp: Path) -> list[Path]:
    data = _png_bytes(page_image(500, 600))
    return _write(tmp / "cut.png", data[: len(data) // 2])


def _truncated_jpeg(tmp: Path) -> list[Path]:
    buf = io.BytesIO()
    page_image(500, 600).save(buf, format="JPEG")
    return _write(tmp / "cut.jpg", buf.getvalue()[: buf.tell() // 2])


def _good_then_truncated(tmp: Path) -> list[Path]:
    good = tmp / "good.png"
    page_image(500, 600).save(good)
    return [good, *_truncated_png(tmp)]


def _gif(tmp: Path) -> list[Path]:
    p = tmp / "page.gif"
    page_image(300, 300).save(p, format="GIF")
    return [p]


def _zip_as_pdf(tmp: Path) -> list[Path]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "hello")
    return _write(tmp / "archive.pdf", buf.getvalue())


def _fifo(tmp: Path) -> list[Path]:
    p = tmp / "pipe.pdf"
    os.mkfifo(p)
    return [p]


def _huge_pages_limit(tmp: Path) -> list[Path]:
    return _write(tmp / "sixty.pdf", make_pdf([(200, 200)] * 60))


CASES = {
    # name: (make inputs, words the one error line must contain, extra environment)
    "missing file": (lambda t: [t / "nope.pdf"], ["no such file"], {}),
    "empty pdf": (lambda t: _write(t / "empty.pdf", b""), ["empty"], {}),
    "empty png": (lambda t: _write(t / "empty.png", b""), ["empty"], {}),
    "directory": (lambda t: [t], ["not a file"], {}),
    "named pipe": (_fifo, ["not a file"], {}),
    "text named .pdf": (lambda t: _write(t / "notes.pdf", b"just some text\n" * 20), ["not a pdf or an image"], {}),
    "html named .pdf": (lambda t: _write(t / "page.pdf", b"<!doctype html><html><body>hi</body></html>"),
                        ["not a pdf or an image"], {}),
    "zip named .pdf": (_zip_as_pdf, ["not a pdf or an image"], {}),
    "gif (unsupported)": (_gif, ["not a pdf or an image"], {}),
    "pdf header then garbage": (lambda t: _write(t / "junk.pdf", b"%PDF-1.7\n" + os.urandom(4000)),
                                ["damaged or unreadable"], {}),
    "truncated pdf (half)": (lambda t: _write(t / "half.pdf", make_pdf([(600, 848)] * 2, image=page_image())[:20000]),
                             ["damaged or unreadable"], {}),
    "truncated pdf (200 bytes)": (lambda t: _write(t / "stub.pdf", make_pdf([(600, 848)])[:200]),
                                  ["damaged or unreadable"], {}),
    "password-protected pdf": (lambda t: _write(t / "locked.pdf", make_pdf([(600, 848)], user_password="secret")),
                               ["password"], {}),
    "zero-page pdf": (lambda t: _write(t / "zero.pdf", make_pdf([])), ["no pages"], {}),
    "pdf bomb: huge page": (lambda t: _write(t / "huge.pdf", make_pdf([(14400, 14400)])), ["too large"], {}),
    "pdf bomb: huge page 2 only": (lambda t: _write(t / "mixed.pdf", make_pdf([(600, 848), (14400, 14400)],
                                                                             share_content=False)),
                                   ["page 2", "too large"], {}),
    "pdf bomb: too many pages": (_huge_pages_limit, ["60 pages", "INKSCRIBE_MAX_PDF_PAGES"],
                                 {"INKSCRIBE_MAX_PDF_PAGES": "50"}),
    "pdf bomb: 3000 pages, default limit": (lambda t: _write(t / "many.pdf", make_pdf([(100, 100)] * 3000)),
                                            ["3000 pages"], {}),
    "image bomb png": (_bomb_png, ["too large"], {}),
    "image over a lowered pixel limit": (lambda t: _write(t / "big.png", _png_bytes(page_image(1000, 1000))),
                                         ["too large"], {"INKSCRIBE_MAX_IMAGE_PIXELS": "500000"}),
    "image bomb in tiff frame 2": (_bomb_frame_tiff, ["frame 2", "too large"],
                                   {"INKSCRIBE_MAX_IMAGE_PIXELS": "1000000"}),
    "png magic, garbage after": (lambda t: _write(t / "bad.png", b"\x89PNG\r\n\x1a\n" + os.urandom(2000)),
                                 ["damaged or not supported"], {}),
    "jpeg magic only": (lambda t: _write(t / "bad.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 50), ["damaged"], {}),
    "truncated png": (_truncated_png, ["damaged or truncated"], {}),
    "truncated jpeg": (_truncated_jpeg, ["damaged or truncated"], {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_leaves_store_and_output_untouched(case, seeded_home, tmp_path, cli, monkeypatch, fake_engines):
    from core.settings import reset_settings

    make, needles, env = CASES[case]
    work = tmp_path / "in"
    work.mkdir()
    inputs = make(work)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    reset_settings()
    before = snapshot(seeded_home)
    out = tmp_path / "out" / "result.md"
    rc, stdout, err = cli("digitize", *inputs, "--detector", "classical", "-o", out)
    assert rc == 2, (rc, err)
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("digitize:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines[0])
    assert stdout == ""
    assert snapshot(seeded_home) == before, "the store changed"
    assert not out.exists() and not list(out.parent.glob("*")) if out.parent.exists() else True


def test_good_file_then_truncated_keeps_only_complete_documents(seeded_home, tmp_path, cli, fake_engines):
    """Inputs are read in order: a file that breaks half-way is removed; earlier finished ones stay whole."""
    inputs = _good_then_truncated(tmp_path)
    before = snapshot(seeded_home)
    rc, _, err = cli("digitize", *inputs, "--detector", "classical", "-o", tmp_path / "o.md")
    assert rc == 2 and "cut.png" in err and "damaged or truncated" in err
    after = snapshot(seeded_home)
    docs = after["tables"]["documents"]
    assert len(docs) == len(before["tables"]["documents"]) + 1
    assert docs[-1][1] == "good.png" and docs[-1][5] == "done"
    assert all(v == 0 for v in orphans(seeded_home).values()), orphans(seeded_home)
    assert not (tmp_path / "o.md").exists()


@pytest.mark.parametrize("where", ["folder", "inside a file", "name too long"])
def test_unwritable_output_fails_before_any_work(where, seeded_home, tmp_path, cli, fake_engines):
    src = tmp_path / "p.png"
    page_image(400, 500).save(src)
    if where == "folder":
        out = tmp_path / "adir"
        out.mkdir()
    elif where == "inside a file":
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "o.md"
    else:
        out = tmp_path / ("n" * 300 + ".md")
    before = snapshot(seeded_home)
    rc, _, err = cli("digitize", src, "--detector", "classical", "-o", out)
    assert rc == 2, err
    assert err.strip().splitlines()[-1].startswith("error: ")
    if where != "name too long":  # that one is only known when writing: the document is kept whole
        assert snapshot(seeded_home) == before


def test_long_output_name_within_limit_is_written(tmp_path, cli, fake_engines):
    """A 250-byte output name is legal; the temp file beside it must not push past the 255-byte limit."""
    src = tmp_path / "p.png"
    page_image(400, 500).save(src)
    out = tmp_path / ("n" * 248 + ".md")
    rc, _, err = cli("digitize", src, "--detector", "classical", "-o", out)
    assert rc == 0, err
    assert "# p.png" in out.read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("spec_kind", ["detector", "recognizer"])
def test_unknown_engine_is_one_line(spec_kind, seeded_home, tmp_path, cli):
    src = tmp_path / "p.png"
    page_image(400, 500).save(src)
    before = snapshot(seeded_home)
    args = ["--detector", "classical"]
    if spec_kind == "detector":
        args = ["--detector", str(tmp_path / "no-such-model")]
    else:
        args += ["--recognizer", str(tmp_path / "no-such-model")]
    rc, _, err = cli("digitize", src, *args)
    assert rc == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert snapshot(seeded_home) == before


@pytest.mark.parametrize("problem", ["wrong kind", "bad manifest", "no weights"])
def test_broken_model_directory_is_one_line(problem, seeded_home, tmp_path, cli):
    model = tmp_path / "model"
    model.mkdir()
    if problem == "wrong kind":
        (model / "inkscribe.json").write_text('{"kind": "detector", "engine": "yolo"}')
    elif problem == "bad manifest":
        (model / "inkscribe.json").write_text("{not json")
    else:
        (model / "inkscribe.json").write_text('{"kind": "recognizer", "engine": "crnn", "name": "x"}')
    src = tmp_path / "p.png"
    page_image(400, 500).save(src)
    before = snapshot(seeded_home)
    rc, _, err = cli("digitize", src, "--detector", "classical", "--recognizer", model)
    from core.recognize.registry import clear_cache

    clear_cache()
    assert rc == 2, (rc, err)
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert snapshot(seeded_home) == before


# -- the real process: exit codes and no traceback -------------------------------------------


@pytest.mark.parametrize("case", ["password-protected pdf", "image bomb png"])
def test_subprocess_bad_input(case, tmp_path):
    make, needles, env = CASES[case]
    work = tmp_path / "in"
    work.mkdir()
    inputs = make(work)
    home = tmp_path / "home"
    out = tmp_path / "out.md"
    proc = run_cli(["digitize", *map(str, inputs), "--detector", "classical", "-o", str(out)], home, **env)
    assert_user_error(proc, *needles)
    assert not out.exists()
    assert not (home / "inkscribe.db").exists() or snapshot(home)["tables"].get("documents", []) == []


def test_failed_run_keeps_the_previous_output_file(seeded_home, tmp_path, cli, fake_engines):
    out = tmp_path / "notes.md"
    out.write_text("yesterday's notes\n")
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4\n" + b"\x00" * 300)
    rc, _, err = cli("digitize", tmp_path / "bad.pdf", "-o", out)
    assert rc == 2, err
    assert out.read_text() == "yesterday's notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pdf", "home", "notes.md"]


@pytest.mark.parametrize("argv", [["evaluate", "--labels", "nope.jsonl"], ["worker", "999"]])
def test_subprocess_other_commands(argv, tmp_path):
    proc = run_cli(argv, tmp_path / "home", cwd=tmp_path)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stderr.strip().splitlines()[-1].startswith("error: "), proc.stderr


@pytest.mark.parametrize("damage", ["garbage", "truncated", "a folder"])
def test_damaged_store_file_is_one_line_and_left_alone(damage, seeded_home, tmp_path, cli, fake_engines):
    db = seeded_home / "inkscribe.db"
    for side in ("-wal", "-shm"):
        Path(str(db) + side).unlink(missing_ok=True)
    if damage == "garbage":
        db.write_bytes(os.urandom(8192))
    elif damage == "truncated":
        db.write_bytes(db.read_bytes()[:1500])
    else:
        db.unlink()
        db.mkdir()
    before = db.read_bytes() if db.is_file() else None
    src = tmp_path / "p.png"
    page_image(400, 500).save(src)
    rc, _, err = cli("digitize", src, "-o", tmp_path / "o.md")
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("digitize")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    if before is not None:
        assert db.read_bytes() == before, "the damaged store was modified"
    assert not (tmp_path / "o.md").exists()


def test_output_that_is_an_input_is_refused(seeded_home, tmp_path, cli, fake_engines, monkeypatch):
    """`digitize notes.pdf -o notes.pdf` would replace the user's PDF with Markdown."""
    src = tmp_path / "notes.pdf"
    src.write_bytes(make_pdf([(324, 432)], image=page_image(900, 1200)))
    original = src.read_bytes()
    before = snapshot(seeded_home)
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli("digitize", src, "-o", "./notes.pdf")
    assert rc == 2 and "also an input" in err, err
    assert src.read_bytes() == original
    assert snapshot(seeded_home) == before
