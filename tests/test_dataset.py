"""core.dataset: held-out pages, stats, labels export, safe imports, zip exports."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from PIL import Image
from test_review import make_doc, page_image

from core import dataset
from core.errors import BadInputError
from core.labels import read_labels


def _png(img: Image.Image) -> bytes:
    b = io.BytesIO()
    img.save(b, format="PNG")
    return b.getvalue()


def _zip(files: dict[str, bytes | str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_holdout_is_by_page_deterministic_and_sticky(store):
    assert dataset.assign_holdout(store)["holdout"] == 0  # empty store
    make_doc(store, "a.pdf", pages=1, lines=6, confirm=True)
    assert dataset.assign_holdout(store)["holdout"] == 0  # one page: everything trains
    for n in range(9):
        make_doc(store, f"d{n}.pdf", pages=1, lines=6, confirm=True)
    first = dataset.assign_holdout(store)
    held_pages = {r["page_id"] for r in dataset.holdout_lines(store)}
    assert first["confirmed"] == 60 and 1 <= first["holdout_pages"] <= 2
    assert all(r["holdout"] for r in store.confirmed_lines() if r["page_id"] in held_pages)  # whole pages
    assert dataset.assign_holdout(store) == first  # stable
    # a line confirmed later on a held-out page joins the held-out set
    page_id = next(iter(held_pages))
    new_id = store.add_line(page_id, [(0, 0), (50, 0), (50, 20), (0, 20)], "late", status="confirmed")
    dataset.assign_holdout(store)
    assert store.line(new_id)["holdout"] == 1
    assert {r["page_id"] for r in dataset.holdout_lines(store)} == held_pages


def test_a_small_page_held_first_does_not_leave_the_holdout_at_one_line(store):
    import hashlib

    def key(name: str) -> str:
        return hashlib.sha1(f"sha-{name}:1".encode()).hexdigest()

    for n in range(4):
        make_doc(store, f"big{n}.pdf", pages=1, lines=20, confirm=True)
    small = next(f"one{k}.pdf" for k in range(1000) if key(f"one{k}.pdf") < min(key(f"big{n}.pdf") for n in range(4)))
    make_doc(store, small, pages=1, lines=1, confirm=True)  # its page comes first in hash order
    held = dataset.assign_holdout(store)
    assert held["confirmed"] == 81 and held["holdout"] >= 0.75 * 0.1 * 81 and held["holdout_pages"] == 2


def test_stats_and_export_labels_exclude_holdout(store, tmp_path):
    for n in range(4):
        make_doc(store, f"d{n}.pdf", pages=1, lines=5, confirm=True)
    make_doc(store, "unchecked.pdf", pages=1, lines=3)
    dataset.assign_holdout(store)
    s = dataset.stats(store)
    t = s["totals"]
    assert t["confirmed"] == 20 and t["new"] == 3 and t["holdout"] == 5 and t["train"] == 15
    assert t["words"] == 40 and t["documents"] == 4
    out = dataset.export_labels(store, tmp_path / "labels.jsonl", part="train")
    assert out["lines"] == 15 and out["pages"] == 3
    pages = read_labels(tmp_path / "labels.jsonl", split="train")
    assert sum(len(p.lines) for p in pages) == 15
    held = dataset.export_labels(store, tmp_path / "held.jsonl", part="holdout")
    assert held["lines"] == 5 and not set(held["line_ids"]) & set(out["line_ids"])
    store.update_line(store.confirmed_lines()[0]["id"], status="corrected")
    complete = dataset.export_labels(store, tmp_path / "pages.jsonl", part="all", complete_pages=True)
    assert complete["pages"] == 3


def test_import_labels_jsonl_zip(store):
    img, lines = page_image(["first line", "second line"])
    row = {"page": "pages/p1.png", "doc": "mynotes", "lines": [{"points": ln.points, "text": ln.text} for ln in lines]}
    bad = {"page": "pages/missing.png", "lines": []}
    data = _zip({"set/labels.jsonl": json.dumps(row) + "\n" + json.dumps(bad) + "\nnot json\n",
                 "set/pages/p1.png": _png(img)})
    res = dataset.import_dataset(store, "set.zip", name="set.zip", data=data)
    assert (res.pages, res.lines, res.format) == (1, 2, "labels.jsonl")
    assert len(res.problems) == 2 and "missing" in res.problems[0]
    rows = store.confirmed_lines()
    assert [r["text"] for r in rows] == ["first line", "second line"]
    assert rows[0]["document_name"] == "set.zip: mynotes"


def test_import_ppocr_label_and_rec_gt_and_csv(store):
    img, lines = page_image(["alpha beta"])
    boxes = [{"transcription": "alpha beta", "points": [[round(x), round(y)] for x, y in lines[0].points],
              "difficult": False}, {"transcription": "###", "points": [[0, 0], [5, 0], [5, 5], [0, 5]]}]
    crop = Image.new("RGB", (120, 32), "white")
    data = _zip({"imgs/Label.txt": f"imgs/page.png\t{json.dumps(boxes)}\n", "imgs/page.png": _png(img)})
    res = dataset.import_dataset(store, "ppocr.zip", name="ppocr.zip", data=data)
    assert (res.format, res.lines) == ("ppocr", 1)
    data = _zip({"rec_gt.txt": "crop_img/a.png\tcrop text\ncrop_img/b.png\tmissing one\n", "crop_img/a.png": _png(crop)})
    res = dataset.import_dataset(store, "rec.zip", name="rec.zip", data=data)
    assert (res.format, res.lines, res.pages) == ("rec_gt", 1, 1) and len(res.problems) == 1
    page = store.page(store.confirmed_lines()[-1]["page_id"])
    assert (page.width, page.height) == (120, 32)  # a crop became a page of its own
    data = _zip({"lines.csv": "image,text\nc.png,from csv\n", "c.png": _png(crop)})
    res = dataset.import_dataset(store, "csv.zip", name="csv.zip", data=data)
    assert (res.format, res.lines) == ("csv", 1)
    assert store.confirmed_lines()[-1]["text"] == "from csv"


@pytest.mark.parametrize("member", ["../evil.txt", "/etc/evil.txt", "a/../../evil.txt", "C:/evil.txt"])
def test_import_rejects_zip_slip(store, member):
    data = _zip({member: "x", "rec_gt.txt": "a.png\tx\n"})
    with pytest.raises(BadInputError, match="outside the archive|refused"):
        dataset.import_dataset(store, "evil.zip", name="evil.zip", data=data)
    assert store.documents() == []


def test_import_rejects_paths_leaving_the_folder_and_all_bad(store, tmp_path):
    data = _zip({"rec_gt.txt": "../outside.png\tx\n/abs.png\ty\n"})
    with pytest.raises(BadInputError, match="no complete record"):
        dataset.import_dataset(store, "bad.zip", name="bad.zip", data=data)
    with pytest.raises(BadInputError, match="not a readable zip"):
        dataset.import_dataset(store, "x.zip", name="x.zip", data=b"not a zip")
    with pytest.raises(BadInputError, match="image,text"):
        dataset.import_dataset(store, "h.zip", name="h.zip", data=_zip({"a.csv": "file,label\na,b\n"}))
    assert store.documents() == []


def test_import_is_all_or_nothing(store, monkeypatch):
    img, lines = page_image(["one"])
    rows = "\n".join(json.dumps({"page": f"p{i}.png", "lines": [{"points": lines[0].points, "text": "one"}]})
                     for i in range(3))
    data = _zip({"labels.jsonl": rows, **{f"p{i}.png": _png(img) for i in range(3)}})
    real_open = Image.open
    calls = {"n": 0}

    def flaky_open(path, *a, **k):
        if "p2" in str(path) and calls["n"] > 5:
            raise OSError("disk error")
        calls["n"] += 1
        return real_open(path, *a, **k)

    monkeypatch.setattr(dataset.Image, "open", flaky_open)
    with pytest.raises((OSError, BadInputError)):  # the page loader reports a read error as BadInputError
        dataset.import_dataset(store, "set.zip", name="set.zip", data=data)
    assert store.documents() == [] and store.query("SELECT COUNT(*) FROM lines")[0][0] == 0
    assert not any(store.images_dir.rglob("*.png"))


def test_export_zip_formats_and_roundtrip(store):
    for n in range(4):
        make_doc(store, f"d{n}.pdf", pages=1, lines=3, confirm=True)
    dataset.assign_holdout(store)
    with zipfile.ZipFile(io.BytesIO(dataset.export_zip(store, "imagefolder"))) as zf:
        names = zf.namelist()
        meta = [json.loads(x) for x in zf.read("train/metadata.jsonl").decode().splitlines()]
        assert "test/metadata.jsonl" in names
        assert all(f"train/{m['file_name']}" in names for m in meta)
        assert meta[0]["text"].startswith("line ")
    data = dataset.export_zip(store, "ppocr")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert {"Label.txt", "rec_gt.txt"} <= set(zf.namelist())
    before = len(store.confirmed_lines())
    res = dataset.import_dataset(store, "back.zip", name="back.zip", data=data)
    assert res.lines == before and res.format == "ppocr"
    with pytest.raises(BadInputError):
        dataset.export_zip(store, "nope")


def test_export_zip_empty(store):
    with pytest.raises(BadInputError, match="no confirmed lines"):
        dataset.export_zip(store)


def test_export_pool_writes_the_unconfirmed_lines_of_pages_not_held_out_without_their_texts(store, tmp_path):
    for n in range(4):
        make_doc(store, f"d{n}.pdf", pages=1, lines=5, confirm=True)
    make_doc(store, "unchecked.pdf", pages=1, lines=3, text="guess")
    dataset.assign_holdout(store)
    held_page = dataset.holdout_lines(store)[0]["page_id"]
    store.add_line(held_page, [(0, 0), (50, 0), (50, 20), (0, 20)], "held guess")  # unconfirmed, on a held-out page
    train_line = next(r for r in store.confirmed_lines() if not r["holdout"])
    store.update_line(train_line["id"], text="edited", status="corrected")  # unconfirmed again, on a training page
    out = dataset.export_pool(store, tmp_path / "pool.jsonl")
    assert (out["lines"], out["pages"]) == (4, 2) and dataset.pool_size(store) == 4
    rows = [json.loads(x) for x in (tmp_path / "pool.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows} == {"pool"} and all(r["page"].startswith(str(store.home)) for r in rows)
    assert {r["doc"] for r in rows} == {"unchecked.pdf", train_line["document_name"]}
    assert all(ln["text"] == "" and len(ln["points"]) == 4 for r in rows for ln in r["lines"])  # never a text
    pages = read_labels(tmp_path / "pool.jsonl", split="pool")
    assert sum(len(p.lines) for p in pages) == 4 and all(p.image_path.is_file() for p in pages)
    assert held_page not in {r["page_id"] for r in store.unconfirmed_lines()}
