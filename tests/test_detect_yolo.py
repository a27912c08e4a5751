"""YOLO detector end to end, offline: tiny scratch training, model dir, load, detect, never overwrite."""

from __future__ import annotations

import json
import random
import shutil

import pytest

from core.detect import SHIPPED_DETECTOR, load_detector
from core.errors import CancelledError, ModelError
from core.modeldir import is_model_dir, read_manifest, write_model_dir
from core.synth import make_page
from core.types import Line


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A private INKSCRIBE_HOME so training work dirs and the ultralytics config stay in tmp."""
    import os

    from core.settings import reset_settings

    path = tmp_path_factory.mktemp("home")
    old = {k: os.environ.get(k) for k in ("INKSCRIBE_HOME", "YOLO_CONFIG_DIR")}
    os.environ["INKSCRIBE_HOME"] = str(path)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(path / "ultralytics"))
    reset_settings()
    yield path
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    reset_settings()


def write_synth_labels(d, n: int):
    """`n` small synthetic pages in the labels.jsonl format."""
    (d / "pages").mkdir()
    rows = []
    for i in range(n):
        page = make_page(random.Random(100 + i), width=480)
        page.image.save(d / "pages" / f"p{i}.jpg")
        rows.append({"page": f"pages/p{i}.jpg", "doc": f"d{i}", "split": "train",
                     "lines": [{"points": [list(p) for p in b], "text": ""} for b in page.boxes]})
    (d / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d / "labels.jsonl"


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    return write_synth_labels(tmp_path_factory.mktemp("labels"), 3)


@pytest.fixture(scope="module")
def tiny_model(home, labels, tmp_path_factory):
    from core.train_detector import train_detector

    out = tmp_path_factory.mktemp("models") / "detector-v1"
    seen = []
    path = train_detector(labels, base="yolo11n.yaml", max_minutes=0.05, out=out, progress=seen.append, imgsz=160)
    return path, seen


def test_ensure_offline_font(home):
    from core.detect.yolo import ensure_ultralytics_offline

    cfg = ensure_ultralytics_offline()
    assert (cfg / "Ultralytics" / "Arial.ttf").stat().st_size > 10_000


def test_train_writes_model_dir(tiny_model):
    path, seen = tiny_model
    assert is_model_dir(path)
    manifest = read_manifest(path)
    assert manifest["kind"] == "detector" and manifest["engine"] == "yolo"
    assert manifest["imgsz"] == 160 and manifest["trained_on"]["pages"] == 3
    assert (path / "weights.pt").stat().st_size > 100_000
    assert any("epoch" in p for p in seen)
    assert not list(path.parent.glob(".tmp-*"))


def test_load_and_detect_keeps_threads(tiny_model):
    import torch

    path, _ = tiny_model
    detector = load_detector(str(path))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        pages = [make_page(7, width=480).image, make_page(8, width=400).image.convert("L")]
        out = detector.detect(pages)
        assert torch.get_num_threads() == 2  # ultralytics' set_num_threads(1) was undone
    finally:
        torch.set_num_threads(before)
    assert len(out) == 2
    for lines in out:
        assert all(isinstance(ln, Line) and len(ln.points) == 4 for ln in lines)
        assert all(0.0 <= ln.det_confidence <= 1.0 for ln in lines)


def test_never_overwrites(tiny_model, labels):
    from core.train_detector import train_detector

    path, _ = tiny_model
    before = (path / "weights.pt").stat().st_mtime_ns
    with pytest.raises(ModelError):
        train_detector(labels, base="yolo11n.yaml", max_minutes=0.05, out=path, imgsz=160)
    assert (path / "weights.pt").stat().st_mtime_ns == before


def test_training_takes_the_train_threads_setting_unless_told(home, labels, tmp_path, monkeypatch):
    """The CLI passes no thread count: it must train as the app's job does, not on ultralytics' one core."""
    import core.train_detector as td
    from core.settings import reset_settings

    asked = []

    def fake_run(*args, threads=None, **kwargs):
        asked.append(threads)
        raise CancelledError("stop before training")

    with monkeypatch.context() as m:
        m.setattr(td, "run_yolo", fake_run)
        m.setenv("INKSCRIBE_TRAIN_THREADS", "3")
        reset_settings()
        for n, given in enumerate((None, 1)):
            with pytest.raises(CancelledError):
                td.train_detector(labels, base="yolo11n.yaml", max_minutes=0.05, out=tmp_path / f"d{n}",
                                  imgsz=160, threads=given)
    reset_settings()
    assert asked == [3, 1]


def test_cancel_writes_nothing(home, labels, tmp_path):
    from core.train_detector import train_detector

    out = tmp_path / "detector-v9"
    with pytest.raises(CancelledError):
        train_detector(labels, base="yolo11n.yaml", max_minutes=1, out=out, imgsz=160, should_stop=lambda: True)
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))


def test_missing_weights_is_a_model_error(tmp_path):
    from core.modeldir import write_model_dir

    path = write_model_dir(tmp_path / "det", {"kind": "detector", "engine": "yolo"}, lambda tmp: None)
    with pytest.raises(ModelError):
        load_detector(str(path))


@pytest.mark.skipif(not is_model_dir(SHIPPED_DETECTOR), reason="no shipped detector in this checkout")
def test_shipped_detector_finds_lines():
    from core.metrics import detection_counts

    detector = load_detector("default")
    assert detector.name == "detector-yolo"
    pages = [make_page(random.Random(seed), width=1400) for seed in (1, 2, 3, 4, 5, 2024)]
    found = truth = 0
    for page, lines in zip(pages, detector.detect([p.image for p in pages]), strict=True):
        counts = detection_counts(page.boxes, [ln.points for ln in lines])
        found, truth = found + counts["tp"], truth + counts["truth"]
    assert found >= 0.6 * truth  # 0.74 measured; a broken squeeze or box mapping finds almost none


@pytest.fixture(scope="module")
def squeezed_model(tiny_model, tmp_path_factory):
    """The tiny model declared as one that reads pages narrowed to half their width."""
    import shutil

    from core.modeldir import write_model_dir

    path, _ = tiny_model
    manifest = {**read_manifest(path), "squeeze_x": 2.0, "name": "detector-squeezed"}
    out = tmp_path_factory.mktemp("squeezed") / "detector-squeezed"
    return write_model_dir(out, manifest, lambda tmp: shutil.copyfile(path / "weights.pt", tmp / "weights.pt"))


def test_squeezed_detector_maps_boxes_back_to_the_page(tiny_model, squeezed_model):
    from core.geometry import squeeze_width

    page = make_page(random.Random(11), width=480).image
    plain = load_detector(str(tiny_model[0]))
    squeezed = load_detector(str(squeezed_model))
    plain.conf = squeezed.conf = 0.001  # an untrained model: keep every box so there is something to compare
    on_narrow = plain.detect([squeeze_width(page, 2.0)])[0]
    on_page = squeezed.detect([page])[0]
    assert on_narrow and len(on_page) == len(on_narrow)
    scale = page.width / round(page.width / 2.0)
    for a, b in zip(on_narrow, on_page, strict=True):  # abs=scale: both are clipped to their own page's edge
        assert b.points[0][0] == pytest.approx(a.points[0][0] * scale, abs=scale)
        assert b.points[1][0] == pytest.approx(a.points[1][0] * scale, abs=scale)
        assert b.points[2][1] == pytest.approx(a.points[2][1], abs=1e-3)


def test_fine_tuning_a_squeezed_detector_keeps_its_squeeze(home, labels, squeezed_model, tmp_path):
    from core.train_detector import train_detector

    out = train_detector(labels, base=str(squeezed_model), max_minutes=0.05, out=tmp_path / "detector-v2", imgsz=160)
    assert read_manifest(out)["squeeze_x"] == 2.0


def test_pages_to_yolo_writes_narrowed_images(labels, tmp_path):
    from PIL import Image

    from core.labels import read_labels
    from core.train_detector import pages_to_yolo

    pages = read_labels(labels)
    paths = pages_to_yolo(pages, tmp_path, squeeze_x=2.0)
    for page, path in zip(pages, paths, strict=True):
        with Image.open(page.image_path) as src, Image.open(path) as dst:
            assert dst.size == (round(src.width / 2), src.height)
        rows = (tmp_path / "labels" / f"{path.stem}.txt").read_text().split("\n")
        assert len([r for r in rows if r]) == len(page.lines)  # normalised boxes: the same rows


def test_fine_tune_trains_at_the_base_training_size_and_reads_as_the_base(home, labels, squeezed_model, tmp_path):
    """A base read larger than it was trained (imgsz/squeeze chosen afterwards) is fine-tuned at its training size."""
    from core.train_detector import train_detector

    base = tmp_path / "detector-read-larger"
    manifest = {**read_manifest(squeezed_model), "name": base.name, "imgsz": 224, "train_imgsz": 160,
                "squeeze_x": 2.5, "train_squeeze_x": 2.0}
    write_model_dir(base, manifest, lambda tmp: shutil.copyfile(squeezed_model / "weights.pt", tmp / "weights.pt"))
    out = read_manifest(train_detector(labels, base=str(base), max_minutes=0.05, out=tmp_path / "detector-v2"))
    assert (out["train_imgsz"], out["recipe"]["imgsz"], out["imgsz"]) == (160, 160, 224)
    assert (out["train_squeeze_x"], out["squeeze_x"]) == (2.0, 2.5)


def test_fine_tuning_keeps_the_base_small_read(home, labels, squeezed_model, tmp_path):
    """Regression: a fine-tune's manifest dropped the base's second, larger read (the one that finds
    bullets and single characters), so fine-tuned detectors silently stopped finding them."""
    from core.train_detector import train_detector

    small = {"squeeze_x": 2.5, "imgsz": 224, "conf": 0.35, "max_width_share": 0.094, "overlap": 0.3}
    base = tmp_path / "detector-with-small-read"
    write_model_dir(base, {**read_manifest(squeezed_model), "name": base.name, "small_read": small},
                    lambda tmp: shutil.copyfile(squeezed_model / "weights.pt", tmp / "weights.pt"))
    out = read_manifest(train_detector(labels, base=str(base), max_minutes=0.05, out=tmp_path / "detector-v2",
                                       imgsz=160))
    assert out["small_read"] == small
    assert load_detector(str(tmp_path / "detector-v2")).small_read == small


def test_the_caller_can_replace_or_drop_the_carried_small_read():
    from core.train_detector import carried_small_read

    base = {"small_read": {"imgsz": 1120, "conf": 0.35}}
    assert carried_small_read(base) == base["small_read"] and carried_small_read(base) is not base["small_read"]
    assert carried_small_read(base, small_read=False) is None
    assert carried_small_read(base, small_read={"imgsz": 960}) == {"imgsz": 960}
    assert carried_small_read({}) is None  # a base without one (or from scratch) gives none


def test_detector_trains_and_reads_on_the_resolved_device(tiny_model):
    """No GPU here: 'auto' trains on the CPU (as ultralytics' trainer reports it) without mixed precision."""
    from core.device import present_devices

    if present_devices() != ["cpu"]:
        pytest.skip("describes a machine with only a CPU")
    path, _ = tiny_model
    assert read_manifest(path)["device"] == {"trainer": "cpu", "mixed_precision": "no"}
    assert load_detector(str(path)).device == "cpu"


def test_held_out_pages_are_few_and_stable():
    from core.train_detector import held_out_pages

    assert held_out_pages(list(range(4))) == (list(range(4)), [])  # too few to spare one
    train, held = held_out_pages(list(range(20)))
    assert len(held) == 2 and sorted(train + held) == list(range(20))
    assert held_out_pages(list(range(20))) == (train, held)  # a resumed job splits the same way


def test_fine_tune_chooses_its_reading_on_held_out_pages(home, squeezed_model, tmp_path):
    from core.train_detector import READING_CONFS, train_detector

    labels6 = write_synth_labels(tmp_path, 6)
    out = read_manifest(train_detector(labels6, base=str(squeezed_model), max_minutes=0.05,
                                       out=tmp_path / "detector-v2", imgsz=160))
    chosen = out["reading_chosen"]
    assert (out["trained_on"]["pages"], out["trained_on"]["held_out_pages"], chosen["chosen_on_pages"]) == (5, 1, 1)
    assert (out["imgsz"], out["conf"]) == (chosen["imgsz"], chosen["conf"])
    assert {r["conf"] for r in chosen["tried"]} >= set(READING_CONFS)
    assert chosen["f1"] == max(r["f1"] for r in chosen["tried"]) >= chosen["base_reading_f1"]
    assert out["metrics"] == {"held_out_f1": chosen["f1"], "held_out_pages": 1}  # shown on the Models page
    assert set(out["box_margins"]) == {"left", "top", "right", "bottom"}  # fit on the same held-out page
    assert out["box_margins_fit"]["pages"] == 1


def test_box_margins_move_each_side_by_a_share_of_the_height():
    import numpy as np

    from core.detect.yolo import apply_margins

    boxes = np.array([[10.0, 100.0, 210.0, 120.0]])  # 20 px tall
    moved = apply_margins(boxes, {"left": 0.5, "top": 0.25, "right": -0.5, "bottom": 1.0})
    assert moved.tolist() == [[0.0, 95.0, 200.0, 140.0]]
    assert apply_margins(boxes, {}) is boxes


def test_small_boxes_of_a_second_read_fill_gaps_only():
    import numpy as np

    from core.detect.yolo import add_small_boxes

    first = (np.array([[0.0, 0.0, 500.0, 30.0]]), np.array([0.9]))
    second = (np.array([[10.0, 2.0, 40.0, 28.0],      # inside the first read's line: dropped
                        [10.0, 50.0, 40.0, 80.0],     # a bullet the first read missed: added
                        [0.0, 100.0, 400.0, 130.0]]),  # a long line: the first read's job, dropped
              np.array([0.8, 0.7, 0.9]))
    boxes, confs = add_small_boxes(first, second, max_width=100, overlap=0.3)
    assert boxes.tolist() == [[0.0, 0.0, 500.0, 30.0], [10.0, 50.0, 40.0, 80.0]]
    assert confs.tolist() == pytest.approx([0.9, 0.7])


def test_fit_box_margins_measures_how_labels_sit_around_detected_boxes(labels):
    from core.evaluate import fit_box_margins
    from core.geometry import bbox, box_points
    from core.labels import read_labels

    pages = read_labels(labels)

    class ShrunkBoxes:
        """Every labelled box, 10 % of its height lower at the top and 20 % higher at the bottom."""
        margins: dict = {"top": 9.0}

        def __init__(self):
            self.pages = iter(pages)

        def detect(self, images):
            assert self.margins == {}  # fit on the raw boxes, whatever the detector had
            out = []
            for ln in next(self.pages).lines:
                x0, y0, x1, y1 = bbox(ln.points)
                h = y1 - y0
                out.append(Line(points=box_points(x0, y0 + 0.1 * h, x1, y1 - 0.2 * h)))
            return [out]

    detector = ShrunkBoxes()
    fit = fit_box_margins(detector, pages)
    assert fit["matched_lines"] == sum(len(p.lines) for p in pages)
    assert fit["margins"]["left"] == fit["margins"]["right"] == 0.0
    assert fit["margins"]["top"] == pytest.approx(0.1 / 0.7, abs=0.01)
    assert fit["margins"]["bottom"] == pytest.approx(0.2 / 0.7, abs=0.01)
    assert detector.margins == {"top": 9.0}  # put back


def test_margins_and_a_second_read_are_applied_by_the_engine(tiny_model, tmp_path):
    from core.geometry import bbox

    path, _ = tiny_model
    page = make_page(random.Random(12), width=480).image

    def variant(name: str, **extra):
        write_model_dir(tmp_path / name, {**read_manifest(path), **extra},
                        lambda tmp: shutil.copyfile(path / "weights.pt", tmp / "weights.pt"))
        detector = load_detector(str(tmp_path / name))
        detector.conf = 0.001  # an untrained model: keep every box so there is something to compare
        return [bbox(ln.points) for ln in detector.detect([page])[0]]

    plain = variant("plain")
    grown = variant("grown", box_margins={"top": 0.5})
    expected = {(round(x0), round(max(0.0, y0 - 0.5 * (y1 - y0))), round(x1), round(y1)) for x0, y0, x1, y1 in plain}
    assert plain and grown and all(tuple(round(v) for v in b) in expected for b in grown)
    # a second read of the same size that never counts as overlapping: every box comes twice
    twice = variant("twice", small_read={"squeeze_x": 1.0, "imgsz": read_manifest(path)["imgsz"], "conf": 0.001,
                                         "max_width_share": 1.0, "overlap": 1.01})
    assert len(twice) == 2 * len(plain)


def test_a_p2_detector_grown_from_yolo11n_reads_its_three_levels_unchanged(home, tmp_path):
    """The transfer maps each old level to the same level of the new head (a wrong mapping, or a
    layer left at random, changes these outputs) and adds a stride-4 level at twice the grid."""
    import torch

    from core.detect.yolo import import_yolo
    from core.train_detector import p2_detector_from

    shipped = SHIPPED_DETECTOR / "weights.pt"
    grown = p2_detector_from(shipped, tmp_path / "p2.pt")
    assert grown["new_tensors"] > 0
    yolo = import_yolo()
    old, new = (yolo(str(p), task="detect").model.float().eval() for p in (shipped, tmp_path / "p2.pt"))
    assert new.stride.tolist() == [4, 8, 16, 32]
    page = torch.rand(1, 3, 128, 96)
    with torch.inference_mode():
        before, after = old(page)[1], new(page)[1]
    assert [f.shape[-2:] for f in after["feats"]][:2] == [(32, 24), (16, 12)]
    fine = 32 * 24  # the P2 level's anchors come first
    for key in ("boxes", "scores"):  # the head's raw outputs for every anchor of P3-P5
        assert after[key].shape[-1] == before[key].shape[-1] + fine
        assert torch.allclose(before[key], after[key][..., fine:], atol=1e-4)
