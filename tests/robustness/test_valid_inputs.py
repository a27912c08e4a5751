"""Awkward but valid inputs must WORK: every image mode, EXIF rotation, odd names, encrypted-but-open PDFs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from robustness_helpers import make_pdf, orphans, page_image, snapshot

W, H = 900, 1200


def _save(img: Image.Image, path: Path, **kw) -> list[Path]:
    img.save(path, **kw)
    return [path]


def _rgba(tmp: Path) -> list[Path]:
    base = page_image(W, H)
    alpha = Image.eval(base.convert("L"), lambda v: 0 if v > 250 else 255)  # transparent paper, opaque ink
    rgba = base.copy()
    rgba.putalpha(alpha)
    return _save(rgba, tmp / "alpha.png")


def _la(tmp: Path) -> list[Path]:
    g = page_image(W, H).convert("L")
    la = Image.merge("LA", [g, Image.eval(g, lambda v: 0 if v > 250 else 255)])
    return _save(la, tmp / "la.png")


def _sixteen_bit(tmp: Path) -> list[Path]:
    arr = np.asarray(page_image(W, H).convert("L"), dtype=np.uint16) * 257
    return _save(Image.fromarray(arr), tmp / "gray16.png")


def _exif_rotated(tmp: Path) -> list[Path]:
    upright = page_image(W, H)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a phone writes: pixels sideways + a tag
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    return _save(stored, tmp / "phone.jpg", exif=exif.tobytes(), quality=85)


def _palette_transparent(tmp: Path) -> list[Path]:
    p = page_image(W, H).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    return _save(p, tmp / "pal_t.png", transparency=0)


def _multipage_tiff(tmp: Path) -> list[Path]:
    p = tmp / "two.tiff"
    page_image(W, H).save(p, save_all=True, append_images=[page_image(W, H, lines=3)], compression="tiff_deflate")
    return [p]


VALID = {
    # name: (make, expected (width, height) of every stored page, expected page count)
    "cmyk jpeg": (lambda t: _save(page_image(W, H).convert("CMYK"), t / "cmyk.jpg"), (W, H), 1),
    "cmyk tiff": (lambda t: _save(page_image(W, H).convert("CMYK"), t / "cmyk.tiff"), (W, H), 1),
    "16-bit grayscale png": (_sixteen_bit, (W, H), 1),
    "32-bit int tiff": (lambda t: _save(page_image(W, H).convert("I"), t / "int32.tiff"), (W, H), 1),
    "rgba png": (_rgba, (W, H), 1),
    "la png": (_la, (W, H), 1),
    "palette png": (lambda t: _save(page_image(W, H).convert("P"), t / "pal.png"), (W, H), 1),
    "palette png with transparency": (_palette_transparent, (W, H), 1),
    "1-bit png": (lambda t: _save(page_image(W, H).convert("1"), t / "bw.png"), (W, H), 1),
    "grayscale jpeg": (lambda t: _save(page_image(W, H).convert("L"), t / "gray.jpg"), (W, H), 1),
    "progressive jpeg": (lambda t: _save(page_image(W, H), t / "prog.jpg", progressive=True), (W, H), 1),
    "exif-rotated jpeg": (_exif_rotated, (W, H), 1),
    "webp": (lambda t: _save(page_image(W, H), t / "page.webp"), (W, H), 1),
    "bmp": (lambda t: _save(page_image(W, H), t / "page.bmp"), (W, H), 1),
    "two-page tiff": (_multipage_tiff, (W, H), 2),
    "png named .pdf": (lambda t: _save(page_image(W, H), t / "actually-a-png.pdf", format="PNG"), (W, H), 1),
    "encrypted pdf, no user password": (
        lambda t: [_write(t / "restricted.pdf", make_pdf([(W * 72 / 200, H * 72 / 200)], image=page_image(W, H),
                                                          user_password=""))], (W, H), 1),
    "unicode file name": (lambda t: _save(page_image(W, H), t / "Notizen – Übung 3 ✍ 日本語.png"), (W, H), 1),
    "very long file name": (lambda t: _save(page_image(W, H), t / ("long-" + "ü" * 110 + ".png")), (W, H), 1),
    "file name starting with a dash": (lambda t: [_write(t / "-f.pdf", make_pdf([(W * 72 / 200, H * 72 / 200)],
                                                                                image=page_image(W, H)))], (W, H), 1),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", list(VALID))
def test_valid_input_is_digitized_and_stored(case, tmp_path, cli, fake_engines, inkscribe_home):
    from core.store import Store

    make, size, n_pages = VALID[case]
    work = tmp_path / "in"
    work.mkdir()
    inputs = make(work)
    out = tmp_path / "out.json"
    rc, _, err = cli("digitize", "--detector", "classical", "-o", out, "--", *inputs)
    assert rc == 0, err
    assert "Traceback" not in err
    result = json.loads(out.read_text())
    assert len(result["pages"]) == n_pages
    store = Store()
    try:
        (doc,) = store.documents()
        assert doc["name"] == inputs[0].name and doc["status"] == "done"
        pages = store.pages(doc["id"])
        assert len(pages) == n_pages
        for page in pages:
            assert (page.width, page.height) == size
            with Image.open(page.image_path) as img:
                assert img.mode == "RGB" and img.size == size
                if case in ("rgba png", "la png", "palette png with transparency"):
                    assert img.getpixel((5, 5)) == (255, 255, 255), "transparent paper must become white, not black"
        assert len(store.document_lines(doc["id"])) >= 3, "the strokes on the page were not found"
    finally:
        store.close()
    assert all(v == 0 for v in orphans(inkscribe_home).values())


def test_exif_rotation_is_applied_before_detection(tmp_path):
    """The stored page is upright: lines run across it, not down."""
    from core.ingest import load_image

    (path,) = _exif_rotated(tmp_path)
    with Image.open(path) as raw:
        assert raw.size == (H, W)
    img = load_image(path)
    assert img.size == (W, H)
    assert np.asarray(img.convert("L"))[80:98, 60:700].mean() < 200  # the first stroke row is horizontal


def test_same_file_twice_makes_two_complete_documents(tmp_path, cli, fake_engines, inkscribe_home):
    src = tmp_path / "p.png"
    page_image(W, H).save(src)
    rc, _, err = cli("digitize", "--detector", "classical", "-o", tmp_path / "o.md", src, src)
    assert rc == 0, err
    snap = snapshot(inkscribe_home)
    assert [d[5] for d in snap["tables"]["documents"]] == ["done", "done"]
    assert len(snap["files"]) == 2


def test_relative_name_starting_with_a_dash_is_a_file_not_an_option(tmp_path, cli, fake_engines, monkeypatch):
    """`digitize -- -f.pdf`: poppler must get a path, not the option `-f`."""
    _write(tmp_path / "-f.pdf", make_pdf([(W * 72 / 200, H * 72 / 200)], image=page_image(W, H)))
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli("digitize", "--detector", "classical", "-o", "o.md", "--", "-f.pdf")
    assert rc == 0, err
    assert "page 1" in (tmp_path / "o.md").read_text()
