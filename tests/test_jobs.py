"""core.jobs: one job at a time, detached workers, progress, cancel, crash → interrupted → resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest
from test_review import FakeRecognizer, install_fakes, make_doc, page_image

from core import jobs
from core.errors import CancelledError, InkscribeError
from core.modeldir import write_model_dir
from core.store import Store


def _wait(store: Store, job_id: int, statuses: tuple[str, ...], timeout: float = 90.0) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        job = jobs.job_status(store, job_id)
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} stayed {jobs.job_status(store, job_id)['status']}; log: "
                         f"{jobs.log_path(job_id).read_text() if jobs.log_path(job_id).exists() else ''}")


def test_one_job_at_a_time_even_when_racing(store, inkscribe_home):
    results = []

    def click():
        s = Store(inkscribe_home)
        try:
            results.append(jobs.start_job(s, "train-recognizer", {"max_minutes": 1}, spawn=False))
        except jobs.JobBusyError as exc:
            results.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=click) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    started = [r for r in results if isinstance(r, int)]
    assert len(started) == 1 and len(results) == 6
    assert "still running" in str(next(r for r in results if not isinstance(r, int)))
    with pytest.raises(InkscribeError, match="unknown job kind"):
        jobs.start_job(store, "nope", spawn=False)


def test_progress_history_eta_and_cancel(store):
    job_id = jobs.start_job(store, "train-recognizer", {}, spawn=False)
    ctx = jobs.JobContext(store, job_id)
    ctx.progress({"step": 5, "total_steps": 10, "loss": 1.5})
    ctx.progress({"step": 10, "total_steps": 10, "val_cer": 0.3, "eta_s": 0})
    job = jobs.job_status(store, job_id)
    assert job["progress"]["fraction"] == 1.0 and job["progress"]["val_cer"] == 0.3
    assert [h.get("loss") for h in job["history"]] == [1.5, None] and job["history"][1]["val_cer"] == 0.3
    assert not ctx.should_stop()
    with store.transaction() as c:
        c.execute("UPDATE jobs SET status = 'running', pid = ? WHERE id = ?", (os.getpid(), job_id))
    jobs.cancel_job(store, job_id)
    ctx._last_check = 0
    assert ctx.should_stop()
    with pytest.raises(CancelledError):
        ctx.check()
    assert jobs.eta_text(None) == "estimating…" and jobs.eta_text(75) == "1 min 15 s"


def test_dead_worker_is_interrupted_and_resumable(store):
    job_id = jobs.start_job(store, "digitize", {"files": []}, spawn=False)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with store.transaction() as c:
        c.execute("UPDATE jobs SET status = 'running', pid = ? WHERE id = ?", (proc.pid, job_id))
    assert jobs.reconcile_jobs(store) == [job_id]
    job = jobs.job_status(store, job_id)
    assert job["status"] == "interrupted" and "stopped without finishing" in job["error"]
    assert jobs.current_job(store) is None
    jobs.resume_job(store, job_id, spawn=False)
    assert jobs.job_status(store, job_id)["status"] == "queued"
    with pytest.raises(InkscribeError, match="only interrupted"):
        jobs.resume_job(store, job_id, spawn=False)
    # a queued job whose worker never started is given up after a grace period
    with store.transaction() as c:
        c.execute("UPDATE jobs SET created_at = created_at - 3600 WHERE id = ?", (job_id,))
    assert jobs.reconcile_jobs(store) == [job_id]
    assert "never started" in jobs.job_status(store, job_id)["error"]


def test_run_job_failure_is_recorded(store):
    job_id = jobs.start_job(store, "digitize", {"files": []}, spawn=False)
    assert jobs.run_job(job_id, store=store) == 2
    job = jobs.job_status(store, job_id)
    assert job["status"] == "failed" and "nothing to digitize" in job["error"]
    assert jobs.run_job(job_id, store=store) == 2  # not queued any more


def test_save_upload_and_pending(store, inkscribe_home):
    p = jobs.save_upload("../../my notes?.png", b"abc")
    assert p.parent == inkscribe_home / "uploads" and p.name.endswith("my notes_.png")
    assert jobs.save_upload("my notes?.png", b"abc") == p  # same content, same file
    assert jobs.upload_display_name(p) == "my notes_.png"
    assert jobs.pending_uploads(store) == [p]


def test_digitize_job_in_process(store, monkeypatch, tmp_path):
    install_fakes(monkeypatch, {"fake": FakeRecognizer("text")})
    img, _ = page_image(["one line here", "another line"])
    src = jobs.save_upload("page.png", _png_bytes(img))
    job_id = jobs.start_job(store, "digitize", {"files": [str(src)], "detector": "classical", "recognizer": "fake"},
                            spawn=False)
    assert jobs.run_job(job_id, store=store) == 0
    job = jobs.job_status(store, job_id)
    assert job["status"] == "done" and job["progress"]["fraction"] == 1.0
    docs = store.documents()
    assert [d["name"] for d in docs] == ["page.png"] and docs[0]["status"] == "done" and docs[0]["line_count"] >= 1
    assert jobs.pending_uploads(store) == []
    # retranscribe leaves checked lines alone
    lines = store.document_lines(docs[0]["id"])
    store.update_line(lines[0]["id"], text="mine", status="confirmed")
    install_fakes(monkeypatch, {"fake": FakeRecognizer("text"), "fake2": FakeRecognizer("again")})
    rt = jobs.start_job(store, "retranscribe", {"document_id": docs[0]["id"], "recognizer": "fake2"}, spawn=False)
    assert jobs.run_job(rt, store=store) == 0
    texts = [r["text"] for r in store.document_lines(docs[0]["id"])]
    assert texts[0] == "mine" and all(t == "again" for t in texts[1:])


def _png_bytes(img) -> bytes:
    import io

    b = io.BytesIO()
    img.save(b, format="PNG")
    return b.getvalue()


def _fake_trainer(monkeypatch, calls: list):
    """A stand-in for core.train_recognizer that writes a real model directory quickly."""

    def train_recognizer(labels, split="train", base="default", max_minutes=15, out=None, progress=None,
                         should_stop=None, resume=True, **kw):
        rows = [json.loads(x) for x in Path(labels).read_text().splitlines()]
        calls.append({"lines": sum(len(r["lines"]) for r in rows), "base": base, "out": out, **kw})
        for step in range(1, 4):
            progress({"step": step, "total_steps": 3, "loss": 1.0 / step, "epoch": 0})
        progress({"step": 3, "val_cer": 0.1})
        return write_model_dir(out, {"kind": "recognizer", "engine": "crnn", "name": Path(out).name,
                                     "metrics": {"val_cer": 0.1}}, lambda tmp: None)

    monkeypatch.setitem(sys.modules, "core.train_recognizer", types.SimpleNamespace(train_recognizer=train_recognizer))


def test_train_recognizer_job_registers_evaluates_activates(store, monkeypatch, inkscribe_home):
    from core.settings import reset_settings

    calls: list = []
    _fake_trainer(monkeypatch, calls)
    monkeypatch.setenv("INKSCRIBE_TRAIN_THREADS", "3")
    reset_settings()
    for n in range(5):
        make_doc(store, f"d{n}.pdf", pages=1, lines=4, confirm=True, text="same")
    for r in store.confirmed_lines():
        store.update_line(r["id"], text="same words")
    models_dir = inkscribe_home / "models"
    fakes = {"default": FakeRecognizer("wrong"), str(models_dir / "recognizer-job1"): FakeRecognizer("same words"),
             str(models_dir / "recognizer-job2"): FakeRecognizer("same wordz")}
    install_fakes(monkeypatch, fakes)
    job_id = jobs.start_job(store, "train-recognizer", {"base": "default", "max_minutes": 0.1, "limit_lines": 50},
                            spawn=False)
    assert jobs.run_job(job_id, store=store) == 0, jobs.job_status(store, job_id)["error"]
    job = jobs.job_status(store, job_id)
    res = job["result"]
    assert res["activated"] and res["new_holdout"]["cer"] == 0.0 and res["base_holdout"]["cer"] > 0.5
    assert calls[0]["lines"] == res["lines_used"] < 20 and calls[0]["limit_lines"] == 50  # held-out lines excluded
    assert calls[0]["threads"] == 3  # a training job takes its own thread setting, not the worker's one
    assert [h["loss"] for h in job["history"] if "loss" in h] == [1.0, 0.5, 0.33333]
    model = store.active_model("recognizer")
    trained, metrics = json.loads(model["trained_on"]), json.loads(model["metrics"])
    assert trained["lines"] == res["lines_used"] and len(trained["documents"]) >= 3
    assert metrics["holdout_cer"] == 0.0 and metrics["val_cer"] == 0.1 and metrics["forecast_cer"] is None
    assert store.query("SELECT COUNT(*) FROM datasets")[0][0] == 1
    # a second fine-tune that is worse keeps the first active
    job2 = jobs.start_job(store, "train-recognizer", {"base": model["path"], "max_minutes": 0.1}, spawn=False)
    fakes[model["path"]] = fakes[str(models_dir / "recognizer-job1")]
    assert jobs.run_job(job2, store=store) == 0, jobs.job_status(store, job2)["error"]
    assert not jobs.job_status(store, job2)["result"]["activated"]
    assert store.active_model("recognizer")["id"] == model["id"]


def test_train_recognizer_job_without_lines_fails_clearly(store, monkeypatch):
    _fake_trainer(monkeypatch, [])
    job_id = jobs.start_job(store, "train-recognizer", {}, spawn=False)
    assert jobs.run_job(job_id, store=store) == 2
    assert "no confirmed lines" in jobs.job_status(store, job_id)["error"]


def test_detached_worker_killed_then_resumed(store, inkscribe_home):
    """A real worker process: killed mid-job it shows as interrupted; resumed it finishes."""
    img, _ = page_image(["a line of text", "and another one"])
    src = jobs.save_upload("page.png", _png_bytes(img))
    params = {"files": [str(src)], "detector": "classical", "recognizer": "default"}
    job_id = jobs.start_job(store, "digitize", params)
    job = _wait(store, job_id, ("running", "done", "failed"))
    assert job["status"] == "running", job
    os.killpg(job["pid"], signal.SIGKILL)
    deadline = time.time() + 10
    while jobs.pid_alive(job["pid"], job_id) and time.time() < deadline:
        time.sleep(0.1)
    assert jobs.reconcile_jobs(store) == [job_id]
    assert jobs.job_status(store, job_id)["status"] == "interrupted"
    jobs.resume_job(store, job_id)
    try:
        jobs.start_job(store, "digitize", params, spawn=False)
        raise AssertionError(f"a second job started: {jobs.list_jobs(store)} {jobs.log_path(job_id).read_text()}")
    except jobs.JobBusyError:
        pass
    job = _wait(store, job_id, ("done", "failed"))
    assert job["status"] == "done", job["error"]
    assert [d["status"] for d in store.documents() if d["status"] == "done"] == ["done"]
    assert "started" in jobs.log_path(job_id).read_text()


def test_train_detector_job_uses_fully_confirmed_pages(store, monkeypatch):
    seen = {}

    def train_detector(labels, split="train", base="default", max_minutes=15, out=None, progress=None,
                       should_stop=None, resume=True, threads=None):
        seen["pages"] = [json.loads(x) for x in Path(labels).read_text().splitlines()]
        seen["threads"] = threads
        progress({"step": 1, "total_steps": 1, "loss": 0.5})
        return write_model_dir(out, {"kind": "detector", "engine": "yolo", "name": Path(out).name,
                                     "metrics": {"f1": 0.9}}, lambda tmp: None)

    monkeypatch.setitem(sys.modules, "core.train_detector", types.SimpleNamespace(train_detector=train_detector))
    job_id = jobs.start_job(store, "train-detector", {}, spawn=False)
    assert jobs.run_job(job_id, store=store) == 2
    assert "no page has every line confirmed" in jobs.job_status(store, job_id)["error"]
    make_doc(store, "full.pdf", lines=3, confirm=True)
    make_doc(store, "partial.pdf", lines=3)
    job_id = jobs.start_job(store, "train-detector", {"activate": True}, spawn=False)
    assert jobs.run_job(job_id, store=store) == 0, jobs.job_status(store, job_id)["error"]
    assert len(seen["pages"]) == 1 and len(seen["pages"][0]["lines"]) == 3
    assert seen["threads"] == 1  # the training job's own thread setting (INKSCRIBE_TRAIN_THREADS=1 in tests)
    model = store.active_model("detector")
    assert json.loads(model["trained_on"])["pages"] == 1 and json.loads(model["metrics"])["f1"] == 0.9


def test_worker_that_cannot_start_fails_the_job(store, monkeypatch):
    def no_fork(*a, **k):
        raise OSError("out of processes")

    monkeypatch.setattr(jobs.subprocess, "Popen", no_fork)
    with pytest.raises(InkscribeError, match="could not start"):
        jobs.start_job(store, "digitize", {"files": []})
    job = jobs.latest_job(store)
    assert job["status"] == "failed" and "out of processes" in job["error"]
    assert jobs.current_job(store) is None  # not blocking the next job


def test_detached_worker_cancel(store):
    files = [str(jobs.save_upload(f"p{i}.png", _png_bytes(page_image([f"page {i} text"])[0]))) for i in range(3)]
    job_id = jobs.start_job(store, "digitize", {"files": files, "detector": "classical", "recognizer": "default"})
    assert _wait(store, job_id, ("running", "done", "failed"))["status"] == "running"
    jobs.cancel_job(store, job_id)
    job = _wait(store, job_id, ("cancelled", "done", "failed"))
    assert job["status"] == "cancelled", job
    assert len(store.documents()) < 3
