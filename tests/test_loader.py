"""One page loader: training, evaluation, review and dataset crops see the same pixels of a phone photo.

A phone JPEG stores its pixels sideways plus an EXIF orientation tag; labels are drawn on the
upright page. Every stage must open it through `core.ingest.load_image` (EXIF applied), or the
boxes cut the wrong part of the page in some stages and not in others.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image
from test_review import page_image

from core import dataset, review
from core.evaluate import load_line_set
from core.geometry import crop_line
from core.ingest import load_image

TEXTS = ["first line here", "second line", "third one"]


@pytest.fixture
def phone_page(tmp_path):
    """A folder with `page.jpg` (stored sideways, EXIF orientation 6) and `labels.jsonl` (upright boxes)."""
    upright, lines = page_image(TEXTS)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the sensor's pixels are the upright page turned left
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "page.jpg", quality=95, exif=exif)
    row = {"page": "page.jpg", "doc": "phone", "split": "train",
           "lines": [{"points": [list(p) for p in ln.points], "text": ln.text} for ln in lines]}
    (tmp_path / "labels.jsonl").write_text(json.dumps(row) + "\n")
    return tmp_path


def _pixels(images) -> list[np.ndarray]:
    return [np.asarray(im.convert("RGB")) for im in images]


def _training_crops(labels) -> list:
    from core.train_recognizer import load_samples

    split = load_samples(labels, "train", val_fraction=0.0, limit_lines=None, seed=0)
    return [s.crop for s in split.train]


def _zip_of(folder) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in ("labels.jsonl", "page.jpg"):
            zf.write(folder / name, name)
    return buf.getvalue()


def test_the_photo_is_stored_sideways(phone_page):
    """The fixture really needs the EXIF tag: opened raw, the page is turned and the boxes miss the text."""
    with Image.open(phone_page / "page.jpg") as raw:
        assert raw.getexif()[0x0112] == 6
        raw_rgb = raw.convert("RGB")
    upright = load_image(phone_page / "page.jpg")
    assert upright.size == raw_rgb.size[::-1]


def test_training_and_evaluation_cut_the_same_pixels(phone_page):
    labels = phone_page / "labels.jsonl"
    train = _pixels(_training_crops(labels))
    evaluation = _pixels(load_line_set(labels, split="train")[0])
    assert len(train) == len(evaluation) == len(TEXTS)
    for a, b in zip(train, evaluation, strict=True):
        assert a.shape == b.shape and np.array_equal(a, b)


def test_imported_photo_gives_review_and_dataset_crops_training_sees(phone_page, store):
    res = dataset.import_dataset(store, "phone.zip", name="phone.zip", data=_zip_of(phone_page))
    assert res.lines == len(TEXTS) and not res.problems
    rows = sorted(store.confirmed_lines(), key=lambda r: r["position"])
    train = _pixels(_training_crops(phone_page / "labels.jsonl"))
    from_dataset = _pixels(dataset.line_crops(store, rows))
    from_review = _pixels(review.line_crop(store, r) for r in rows)
    for a, b, c in zip(train, from_dataset, from_review, strict=True):
        assert a.shape == b.shape == c.shape
        # the store keeps the upright page as PNG (lossless): the crops match training's exactly
        assert np.array_equal(a, b) and np.array_equal(a, c)
    page = store.page(rows[0]["page_id"])
    assert np.array_equal(np.asarray(review.page_image(store, page.id)), np.asarray(load_image(phone_page / "page.jpg")))


def test_crops_of_the_raw_photo_would_differ(phone_page):
    """What the old `Image.open().convert()` paths cut: not the line training learns from."""
    labels = phone_page / "labels.jsonl"
    with Image.open(phone_page / "page.jpg") as raw:
        raw_rgb = raw.convert("RGB")
    points = json.loads(labels.read_text())["lines"][0]["points"]
    raw_crop = np.asarray(crop_line(raw_rgb, [tuple(p) for p in points]))
    train = np.asarray(_training_crops(labels)[0])
    assert raw_crop.shape != train.shape or not np.array_equal(raw_crop, train)


def test_import_skips_a_pdf_named_in_the_labels(tmp_path, store):
    """The loader renders PDFs; an import row must name an image (its boxes are in image pixels)."""
    upright, lines = page_image(["only line"])
    upright.save(tmp_path / "ok.png")
    (tmp_path / "doc.png").write_bytes(b"%PDF-1.4\n%fake\n")
    rows = [{"page": name, "lines": [{"points": [list(p) for p in lines[0].points], "text": "only line"}]}
            for name in ("ok.png", "doc.png")]
    (tmp_path / "labels.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    res = dataset.import_dataset(store, tmp_path / "labels.jsonl")
    assert res.lines == 1 and len(res.problems) == 1 and "doc.png" in res.problems[0]
