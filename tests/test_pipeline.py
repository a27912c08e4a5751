"""The main job's orchestration: resume after an interruption, cancel, nothing half-stored."""

import subprocess
import sys

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
    doc = store.create_document("x.pdf", "sha", "pdf", 3, "d", "r", owner="cli")
    assert store.mark_stale_documents(lambda pid: True) == 0  # its reader (this process) is alive
    assert store.mark_stale_documents(lambda pid: False) == 1
    assert store.document(doc)["status"] == "interrupted"
    assert store.unfinished_document("sha", "cli")["id"] == doc
    assert store.unfinished_document("sha", "job:1") is None


def _stop_after(n):
    seen = []
    return seen, (lambda: len(seen) >= n)


def _sleeper(*args):
    """A live process whose command line holds `args` (as a job's worker's does)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *args])


def test_the_cli_never_resumes_or_deletes_a_document_a_job_is_reading(tmp_path):
    pdf = make_pdf(tmp_path)
    store = Store()
    seen, stop = _stop_after(2)
    with pytest.raises(CancelledError):
        digitize([pdf], engines(), store=store, progress=seen.append, should_stop=stop, owner="job:7")
    (job_doc,) = store.documents()
    worker = _sleeper("worker", "7")
    try:
        with store.transaction() as c:  # as the job's worker leaves it while it reads page 3
            c.execute("UPDATE documents SET status = 'processing', owner_pid = ? WHERE id = ?", (worker.pid, job_doc["id"]))
        seen, stop = _stop_after(1)
        with pytest.raises(CancelledError):  # the CLI's run fails half-way: it removes only what it made
            digitize([pdf], engines(), store=store, progress=seen.append, should_stop=stop, keep_partial=False)
        (doc,) = store.documents()
        assert (doc["id"], doc["status"], doc["pages_done"]) == (job_doc["id"], "processing", 2)
        assert len(store.pages(job_doc["id"])) == 2
    finally:
        worker.kill()
        worker.wait()


def test_a_run_does_not_resume_a_document_another_live_run_is_reading(tmp_path):
    pdf = make_pdf(tmp_path)
    store = Store()
    seen, stop = _stop_after(2)
    with pytest.raises(CancelledError):
        digitize([pdf], engines(), store=store, progress=seen.append, should_stop=stop)
    (first,) = store.documents()
    other = _sleeper()
    try:
        with store.transaction() as c:
            c.execute("UPDATE documents SET status = 'processing', owner_pid = ? WHERE id = ?", (other.pid, first["id"]))
        (result,) = digitize([pdf], engines(), store=store)
        assert result.document_id != first["id"] and len(result.pages) == 4
        assert store.document(first["id"])["status"] == "processing"
    finally:
        other.kill()
        other.wait()
    assert store.mark_stale_documents(lambda pid: False) == 1  # its reader is gone: the next run resumes it


def test_a_resumed_document_that_fails_again_keeps_the_pages_read_before(tmp_path):
    pdf = make_pdf(tmp_path)
    store = Store()
    seen, stop = _stop_after(2)
    with pytest.raises(CancelledError):
        digitize([pdf], engines(), store=store, progress=seen.append, should_stop=stop)
    with pytest.raises(CancelledError):
        digitize([pdf], engines(), store=store, should_stop=lambda: True, keep_partial=False)
    (doc,) = store.documents()
    assert (doc["status"], doc["pages_done"]) == ("failed", 2)
