"""The Evaluate page's scoring as a background job: progress per line read, cancel, results the page draws."""

from __future__ import annotations

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest
from test_review import FakeRecognizer, install_fakes, make_doc

from core import evaluate, jobs, review
from core.errors import CancelledError
from core.settings import REPO_ROOT

APP = str(REPO_ROOT / "app.py")


@pytest.fixture(autouse=True)
def no_workers(monkeypatch):
    spawned: list[int] = []
    monkeypatch.setattr(jobs, "spawn_worker", lambda store, job_id: spawned.append(job_id) or 0)
    st.cache_resource.clear()
    yield spawned
    st.cache_resource.clear()


@pytest.fixture
def held_out(store, monkeypatch) -> int:
    """Confirmed lines on 4 pages (one page held out) and two fake models; returns the held-out line count."""
    for n in range(4):
        make_doc(store, f"d{n}.pdf", lines=5, confirm=True)
    for r in store.confirmed_lines():
        store.update_line(r["id"], text="same text")
    install_fakes(monkeypatch, {"good": FakeRecognizer("same text"), "bad": FakeRecognizer("sane tex"),
                                "default": FakeRecognizer("sane tex")})
    monkeypatch.setattr(evaluate, "READ_CHUNK", 2)  # several chunks per model: progress between them
    return review.compare_on_holdout(store, [])["lines"]


def test_compare_on_holdout_reports_lines_read_and_stops(store, held_out):
    seen: list[dict] = []
    res = review.compare_on_holdout(store, ["good", "bad"], progress=seen.append)
    steps = [p["step"] for p in seen if "step" in p]
    assert held_out == res["lines"] >= 3
    assert steps == sorted(steps) and steps[-1] == 2 * held_out
    assert {p["total_steps"] for p in seen if "step" in p} == {2 * held_out}
    assert len(steps) > 2 * 2  # chunks of 2 lines: more than one report per model
    assert [m["cer"] for m in res["models"]] == [0.0, pytest.approx(2 / 9, abs=1e-3)]
    stopped: list[dict] = []
    with pytest.raises(CancelledError):
        review.compare_on_holdout(store, ["good"], progress=stopped.append, should_stop=lambda: len(stopped) > 2)
    assert stopped[-1]["step"] < held_out  # stopped between chunks, before the end


def test_evaluate_job_stores_scores_and_diffs(store, held_out):
    job_id = jobs.start_job(store, "evaluate", {"specs": ["good", "bad"], "labels": ["mine", "base"]}, spawn=False)
    assert jobs.run_job(job_id, store=store) == 0, jobs.job_status(store, job_id)["error"]
    job = jobs.job_status(store, job_id)
    res = job["result"]
    assert job["status"] == "done" and res["lines"] == held_out and "lowest error: mine" in res["note"]
    assert job["progress"]["step"] == job["progress"]["total_steps"] == 2 * held_out
    mine, base = res["models"]
    assert (mine["label"], mine["cer"], mine["exact"]) == ("mine", 0.0, 1.0)
    assert base["label"] == "base" and base["wer"] == 1.0 and len(base["per_line"]) == held_out
    line = base["per_line"][0]
    assert (line["reference"], line["hypothesis"]) == ("same text", "sane tex") and line["document"].startswith("d")
    assert review.last_evaluation(store)["id"] == job_id


def test_cancelled_evaluate_job_keeps_no_result(store, held_out):
    job_id = jobs.start_job(store, "evaluate", {"specs": ["good"]}, spawn=False)
    with store.transaction() as c:
        c.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
    assert jobs.run_job(job_id, store=store) == 0
    assert jobs.job_status(store, job_id)["status"] == "cancelled"
    assert review.last_evaluation(store) is None


def test_evaluate_page_starts_the_job_and_draws_its_result(store, held_out, no_workers):
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("app_pages/evaluate.py").run()
    assert at.multiselect(key="ev-models").value == ["default"]  # a fake here (the app says "default (…)")
    at.button(key="ev-go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    job = jobs.latest_job(store, ("evaluate",))
    assert job is not None and job["status"] == "queued" and no_workers == [job["id"]]
    assert job["params"] == {"specs": ["default"], "labels": ["default"]}
    assert any("Scoring models" in m.value for m in at.markdown)  # the job panel shows the queued job
    at.run()
    assert at.button(key="ev-go").disabled  # one job at a time
    assert jobs.run_job(job["id"], store=store) == 0, jobs.job_status(store, job["id"])["error"]  # the worker's body
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    scores = at.dataframe[0].value
    assert list(scores["model"]) == ["default"] and list(scores["CER"]) == [pytest.approx(2 / 9, abs=1e-3)]
    assert f"Job {job['id']}, finished" in "".join(c.value for c in at.caption)
    html = "".join(str(el.proto) for el in at.get("html"))
    assert "background:#ffd6d6" in html and "truth: sa" in html
