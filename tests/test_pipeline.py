"""The main job's orchestration: resume after an interruption, cancel, nothing half-stored."""

import pytest
from PIL import Image

from core.detect import BaseDetector
from core.errors import CancelledError
from core.geometry import box_points
from core.pipeline import Engines, digitize
from core.recognize import BaseRecognizer, Recognition
from core.store import Store
from core.types import Line


class OneLineDetector(BaseDetector):
    name = "one-line"

    def _predict(self, images):
        return [[Line(points=box_points(10, 10, 90, 30))] for _ in images]


class CountingRecognizer(BaseRecognizer):
    name = "counting"

    def __init__(self):
        self.calls = 0

    def _predict(self, crops):
        self.calls += len(crops)
        return [Recognition("text", 0.9) for _ in crops]


def engines():
    return Engines(OneLineDetector(), CountingRecognizer(), "one-line", "counting")


def make_pdf(tmp_path, pages=4):
    pdf = tmp_path / "doc.pdf"
    imgs = [Image.new("RGB", (100, 60), "white") for _ in range(pages)]
    imgs[0].save(pdf, save_all=True, append_images=imgs[1:], resolution=50)
    return pdf


def test_an_interrupted_document_is_resumed_not_duplicated(tmp_path):
    pdf = make_pdf(tmp_path)
    store = Store()
    seen = []

    def stop_after_two():
        return len(seen) >= 2

    with pytest.raises(CancelledError):
        digitize([pdf], engines(), store=store, progress=seen.append, should_stop=stop_after_two)
    (doc,) = store.documents()
    assert (doc["status"], doc["pages_done"]) == ("failed", 2)

    again = engines()
    digitize([pdf], again, store=store)
    (doc,) = store.documents()
    assert (doc["status"], doc["pages_done"]) == ("done", 4)
    assert again.recognizer.calls == 2  # only the two pages that were missing were read


def test_keep_partial_false_removes_the_half_done_document(tmp_path):
    pdf = make_pdf(tmp_path)
    store = Store()
    with pytest.raises(CancelledError):
        digitize([pdf], engines(), store=store, should_stop=lambda: True, keep_partial=False)
    assert store.documents() == []


def test_stale_processing_documents_are_marked_interrupted():
    store = Store()
    doc = store.create_document("x.pdf", "sha", "pdf", 3, "d", "r")
    assert store.mark_stale_documents(older_than_s=0) == 1
    assert store.document(doc)["status"] == "interrupted"
    assert store.unfinished_document("sha") == doc
