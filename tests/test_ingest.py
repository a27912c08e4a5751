import io

import pytest
from PIL import Image

from core.errors import BadInputError
from core.ingest import inspect_source, iter_pages, load_image, to_rgb


def save(img, path, **kw):
    img.save(path, **kw)
    return path


def test_png_and_multi_frame_tiff(tmp_path):
    png = save(Image.new("RGB", (50, 40), "white"), tmp_path / "a.png")
    assert inspect_source(png).pages == 1 and load_image(png).size == (50, 40)
    frames = [Image.new("RGB", (30, 20), c) for c in ("red", "blue")]
    tif = tmp_path / "b.tif"
    frames[0].save(tif, save_all=True, append_images=frames[1:])
    pages = list(iter_pages(tif))
    assert [p.index for p in pages] == [1, 2] and pages[1].image.getpixel((0, 0)) == (0, 0, 255)


def test_pdf_pages_render_one_at_a_time(tmp_path):
    pdf = tmp_path / "doc.pdf"
    pages = [Image.new("RGB", (300, 400), "white") for _ in range(3)]
    pages[0].save(pdf, save_all=True, append_images=pages[1:], resolution=100)
    info = inspect_source(pdf)
    assert info.kind == "pdf" and info.pages == 3
    rendered = list(iter_pages(pdf))
    assert len(rendered) == 3 and rendered[0].image.mode == "RGB"
    assert rendered[0].image.width == pytest.approx(300 / 100 * 200, abs=2)


def test_type_is_sniffed_not_taken_from_the_name(tmp_path):
    fake = tmp_path / "notes.pdf"
    fake.write_text("hello, I am text")
    with pytest.raises(BadInputError, match="not a PDF or an image"):
        inspect_source(fake)
    png_named_pdf = tmp_path / "scan.pdf"
    Image.new("RGB", (10, 10)).save(png_named_pdf, format="PNG")
    assert inspect_source(png_named_pdf).kind == "image"


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty"), (b"%PDF-1.4\n garbage", "damaged"), (b"\x89PNG\r\n\x1a\n broken", "damaged")],
)
def test_bad_files_raise_one_clear_message(tmp_path, content, message):
    p = tmp_path / "bad.bin"
    p.write_bytes(content)
    with pytest.raises(BadInputError, match=message):
        list(iter_pages(p))


def test_missing_file(tmp_path):
    with pytest.raises(BadInputError, match="no such file"):
        inspect_source(tmp_path / "nope.pdf")


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("INKSCRIBE_MAX_IMAGE_PIXELS", "10000")
    from core.settings import reset_settings

    reset_settings()
    big = save(Image.new("L", (200, 200)), tmp_path / "big.png")
    with pytest.raises(BadInputError, match="too large"):
        inspect_source(big)


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "RGBA", "LA", "P", "L", "1"])
def test_every_mode_becomes_rgb(mode):
    img = Image.new(mode, (8, 8))
    assert to_rgb(img).mode == "RGB"


def test_alpha_is_flattened_on_white():
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert to_rgb(img).getpixel((0, 0)) == (255, 255, 255)


def test_exif_rotation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    p = tmp_path / "r.jpg"
    p.write_bytes(buf.getvalue())
    assert load_image(p).size == (20, 40)
