"""Every page of the app through Streamlit's AppTest (same process: fakes and a private store apply)."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest
from test_review import FakeRecognizer, install_fakes, make_doc, page_image

from core import dataset, jobs
from core.modeldir import write_model_dir
from core.settings import REPO_ROOT

APP = str(REPO_ROOT / "app.py")


@pytest.fixture(autouse=True)
def no_workers(monkeypatch):
    """Jobs are queued but not spawned; tests run them in-process with run_job when they need a result."""
    spawned = []
    monkeypatch.setattr(jobs, "spawn_worker", lambda store, job_id: spawned.append(job_id) or 0)
    st.cache_resource.clear()
    yield spawned
    st.cache_resource.clear()


def _open(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _png(img) -> bytes:
    b = io.BytesIO()
    img.save(b, format="PNG")
    return b.getvalue()


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [m.value for m in at.caption] + [m.value for m in at.info]
    parts += [m.value for m in at.success] + [m.value for m in at.error] + [m.value for m in at.warning]
    return "\n".join(str(p) for p in parts)


def test_empty_states_on_every_page():
    for page in ("upload", "review", "dataset", "finetune", "models", "evaluate", "export"):
        at = _open(page if page != "upload" else None)
        assert at.info, f"{page} has no empty-state hint"
        assert not at.error
    at = _open()
    assert "No job running" in _texts(at) or any("No job running" in c.value for c in at.sidebar.caption)


def test_upload_persists_files_and_starts_digitize_job(store, monkeypatch, no_workers, inkscribe_home):
    install_fakes(monkeypatch, {"default": FakeRecognizer("read text")})
    img, _ = page_image(["hello there", "second line"])
    at = _open()
    at.file_uploader(key="uploader-0").set_value([("page one.png", _png(img), "image/png"),
                                                 ("broken.png", b"not an image", "image/png")]).run()
    assert not at.exception
    assert any("broken.png" in e.value for e in at.error)
    assert len(list((inkscribe_home / "uploads").iterdir())) == 1  # saved on arrival; the broken one refused
    assert "Ready to digitize: 1 file" in [s.value for s in at.subheader][0]
    at.selectbox(key="up-detector").set_value("classical")
    at.button(key="digitize").click().run()
    assert not at.exception
    job = jobs.latest_job(store)
    assert job["kind"] == "digitize" and job["params"]["detector"] == "classical" and no_workers == [job["id"]]
    assert job["params"]["names"] == ["page one.png"]
    at.run()
    assert any("Digitizing" in m.value for m in at.markdown)
    assert jobs.run_job(job["id"], store=store) == 0, jobs.job_status(store, job["id"])["error"]
    at = _open()
    assert not at.subheader or "Ready" not in at.subheader[0].value
    docs = at.dataframe[0].value
    assert list(docs["document"]) == ["page one.png"] and docs["lines"][0] >= 1


def test_review_edit_confirm_next_and_conflict(store):
    doc = make_doc(store, lines=3)
    page = store.pages(doc)[0]
    rows = store.lines(page.id)
    at = _open("review")
    field = next(t for t in at.text_input if t.key.startswith(f"text-{rows[0]['id']}-"))  # least confident first
    field.set_value("the fixed line")
    at.button(key="confirm").click().run()
    assert not at.exception and "Confirmed." in [s.value for s in at.success]
    assert store.line(rows[0]["id"])["text"] == "the fixed line"
    assert store.line(rows[0]["id"])["status"] == "confirmed"
    field = next(t for t in at.text_input if t.key.startswith("text-"))
    assert field.key.startswith(f"text-{rows[1]['id']}-")  # moved on to the next line
    # another tab changes this line meanwhile: this tab's save is refused and says so
    store.update_line(rows[1]["id"], text="changed elsewhere")
    field.set_value("my version")
    at.button(key="confirm").click().run()
    assert any("changed elsewhere" in e.value for e in at.error)
    assert store.line(rows[1]["id"])["text"] == "changed elsewhere"
    # save as corrected keeps the line and marks it
    field = next(t for t in at.text_input if t.key.startswith(f"text-{rows[1]['id']}-"))
    field.set_value("corrected text")
    at.button(key="save").click().run()
    assert store.line(rows[1]["id"])["status"] == "corrected"
    history = [e["field"] for e in store.edits(rows[1]["id"])]
    assert history.count("text") == 2


def test_review_current_line_is_in_the_url(store):
    doc = make_doc(store, lines=3)
    rows = store.lines(store.pages(doc)[0].id)
    at = _open("review")
    first = at.query_params["line"]
    at.button(key="skip").click().run()
    moved = at.query_params["line"]
    assert moved != first and int(moved[0] if isinstance(moved, list) else moved) in {r["id"] for r in rows}
    # a reload (fresh session, same URL) opens the same line
    again = AppTest.from_file(APP, default_timeout=60)
    again.query_params["line"] = moved
    again.run()
    again.switch_page("app_pages/review.py").run()
    assert not again.exception
    field = next(t for t in again.text_input if t.key.startswith("text-"))
    assert field.key.startswith(f"text-{moved[0] if isinstance(moved, list) else moved}-")


def test_review_reading_order_skip_boxes_and_reread(store, monkeypatch):
    install_fakes(monkeypatch, {"default": FakeRecognizer("re-read")})
    doc = make_doc(store, lines=3)
    page = store.pages(doc)[0]
    rows = store.lines(page.id)
    at = _open("review")
    at.radio(key="order").set_value("reading").run()
    at.button(key="skip").click().run()
    assert next(t for t in at.text_input if t.key.startswith("text-")).key.startswith(f"text-{rows[1]['id']}-")
    at.button(key="split").click().run()
    assert not at.exception and len(store.lines(page.id)) == 4
    at.button(key="merge").click().run()
    assert not at.exception and len(store.lines(page.id)) == 3
    at.button(key="reread-line").click().run()
    assert not at.exception
    assert store.line(rows[1]["id"])["text"] == "re-read"
    at.number_input(key="add-y0").set_value(page.height - 30)
    at.number_input(key="add-y1").set_value(page.height - 2)
    at.text_input(key="add-text").set_value("a new line")
    at.button(key="add-box").click().run()
    assert not at.exception and store.lines(page.id)[-1]["text"] == "a new line"
    at.button(key="delete-line").click().run()
    assert not at.exception and len(store.lines(page.id)) == 3


def test_page_error_is_a_message_not_a_traceback(store, monkeypatch):
    from core import review

    make_doc(store)

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(review, "review_queue", boom)
    at = _open()
    at.switch_page("app_pages/review.py").run()
    assert not at.exception
    assert any("Something went wrong: boom" in e.value for e in at.error)


def test_dataset_page_stats_import_export(store):
    for n in range(4):
        make_doc(store, f"d{n}.pdf", lines=3, confirm=True)
    at = _open("dataset")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Confirmed lines"] == "12" and metrics["Held out (for scoring)"] == "3"
    at.text_input(key="ds-filter").set_value("line 1.2").run()
    assert len(at.dataframe[1].value) == 4
    crop = page_image(["x"])[0]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("lines.csv", "image,text\na.png,imported line\nmissing.png,gone\n")
        zf.writestr("a.png", _png(crop))
    at.file_uploader(key="ds-import").set_value(("set.zip", buf.getvalue(), "application/zip")).run()
    at.button(key="ds-import-go").click().run()
    assert not at.exception
    assert any("Imported 1 lines" in s.value for s in at.success) and any("1 bad rows" in w.value for w in at.warning)
    assert store.confirmed_lines()[-1]["text"] == "imported line"
    at.button(key="ds-export").click().run()
    assert not at.exception and at.session_state["ds-zip"][0] == "imagefolder"
    bad = io.BytesIO()
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../evil.csv", "image,text\n")
    at.file_uploader(key="ds-import").set_value(("evil.zip", bad.getvalue(), "application/zip")).run()
    at.button(key="ds-import-go").click().run()
    assert any("outside the archive" in e.value for e in at.error)


def test_finetune_starts_one_job_and_shows_progress(store, no_workers):
    make_doc(store, lines=4, confirm=True)
    at = _open("finetune")
    at.number_input(key="ft-minutes").set_value(0.1)
    at.number_input(key="ft-limit").set_value(100)
    next(b for b in at.button if b.label == "Fine-tune").click().run()
    assert not at.exception
    job = jobs.latest_job(store)
    assert job["kind"] == "train-recognizer" and job["params"] == {"base": "default", "max_minutes": 0.1,
                                                                    "limit_lines": 100, "self_train": False}
    ctx = jobs.JobContext(store, job["id"])
    with store.transaction() as c:
        c.execute("UPDATE jobs SET status = 'running' WHERE id = ?", (job["id"],))
    ctx.progress({"step": 5, "total_steps": 20, "loss": 2.0, "eta_s": 30})
    ctx.progress({"step": 10, "total_steps": 20, "loss": 1.0, "val_cer": 0.4, "eta_s": 15})
    at.run()
    assert not at.exception
    assert next(b for b in at.button if b.label == "Fine-tune").disabled  # no second job while one runs
    assert any("time left: 15 s" in c.value for c in at.caption)
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")
    at.button(key=f"cancel-{job['id']}").click().run()
    assert jobs.job_status(store, job["id"])["cancel_requested"]


def test_finetune_resume_button_after_interruption(store, no_workers):
    make_doc(store, lines=4, confirm=True)
    job_id = jobs.start_job(store, "train-recognizer", {"max_minutes": 0.1})
    with store.transaction() as c:
        c.execute("UPDATE jobs SET status = 'interrupted', error = 'its worker (pid 1) stopped' WHERE id = ?", (job_id,))
    at = _open("finetune")
    assert any("Interrupted" in e.value for e in at.error)
    at.button(key=f"resume-{job_id}").click().run()
    assert jobs.job_status(store, job_id)["status"] == "queued" and no_workers == [job_id, job_id]


def _model(store, inkscribe_home, name: str) -> int:
    path = write_model_dir(inkscribe_home / "models" / name, {"kind": "recognizer", "engine": "crnn", "name": name},
                           lambda tmp: None)
    return store.register_model("recognizer", name, path, engine="crnn", base="default",
                                trained_on={"lines": 42, "documents": ["a"]},
                                metrics={"holdout_cer": 0.2, "base_holdout_cer": 0.5, "lines_used": 42})


def test_models_page_activate_rename_rollback_delete_retranscribe(store, inkscribe_home, no_workers):
    make_doc(store)
    mid = _model(store, inkscribe_home, "mine-v1")
    at = _open("models")
    table = at.dataframe[0].value
    assert table["trained on"][0] == "42 lines, 1 docs" and table["held-out CER"][0] == 0.2
    at.button(key=f"activate-{mid}").click().run()
    assert store.active_model("recognizer")["id"] == mid
    assert "mine-v1" in at.sidebar.markdown[1].value
    at.text_input(key=f"name-{mid}").set_value("my hand").run()
    at.button(key=f"rename-{mid}").click().run()
    assert store.model(mid)["name"] == "my hand"
    at.button(key="rollback-recognizer").click().run()
    assert store.active_model("recognizer") is None
    at.button(key="rt-go").click().run()
    job = jobs.latest_job(store)
    assert job["kind"] == "retranscribe" and job["params"]["document_id"] == store.documents()[0]["id"]
    at.checkbox(key=f"sure-{mid}").check().run()
    at.button(key=f"delete-{mid}").click().run()
    assert store.model(mid) is None and not (inkscribe_home / "models" / "mine-v1").exists()


def test_evaluate_page_compares_and_shows_diffs_and_curve(store, monkeypatch, inkscribe_home):
    for n in range(4):
        make_doc(store, f"d{n}.pdf", lines=3, confirm=True, text="same")
    for r in store.confirmed_lines():
        store.update_line(r["id"], text="same text")
    mid = _model(store, inkscribe_home, "mine-v1")
    store.activate_model("recognizer", mid)
    install_fakes(monkeypatch, {"default": FakeRecognizer("sane tex"), store.model(mid)["path"]: FakeRecognizer("same text")})
    at = _open("evaluate")
    # `default` is one of this test's fakes, so its label names nothing more (the app says "default (ppocrv5)")
    assert at.multiselect(key="ev-models").value == ["default", "mine-v1 (active)"]
    at.button(key="ev-go").click().run()
    assert not at.exception
    job = jobs.latest_job(store)  # scoring is a background job now, not a spinner in the server
    assert job["kind"] == "evaluate" and job["status"] == "queued"
    assert all("exact match" not in d.value.columns for d in at.dataframe)  # no scores before the job ran
    assert job["params"]["labels"] == ["default", "mine-v1 (active)"]
    assert any("Scoring models" in m.value for m in at.markdown)  # the job panel shows it
    assert jobs.run_job(job["id"], store=store) == 0, jobs.job_status(store, job["id"])["error"]
    at.run()
    assert not at.exception
    scores = at.dataframe[0].value
    assert list(scores["CER"]) == [pytest.approx(2 / 9, abs=1e-3), 0.0]
    html = "".join(str(el.proto) for el in at.get("html"))
    assert "background:#ffd6d6" in html and "truth: sa" in html
    assert "mine-v1" in at.dataframe[1].value["model"].tolist()  # learning curve table


def test_export_page_markdown_holds_fixed_text(store):
    doc = make_doc(store, lines=2)
    line = store.lines(store.pages(doc)[0].id)[0]
    store.update_line(line["id"], text="my fixed words", status="confirmed")
    at = _open("export")
    assert not at.exception
    assert len(at.get("download_button")) == 14  # 6 formats for all and for the one document, 2 dataset zips
    at.toggle(key=f"preview-{doc}").set_value(True).run()
    assert any("my fixed words" in c.value for c in at.code)
    from core.interchange import export_bytes

    with zipfile.ZipFile(io.BytesIO(export_bytes(store, "page-xml", [doc]))) as zf:
        assert sorted(zf.namelist()) == ["notes-p0001.png", "notes-p0001.xml"]
        assert "my fixed words" in zf.read("notes-p0001.xml").decode()


def test_upload_discard_and_several_files(store, inkscribe_home):
    imgs = [_png(page_image([f"page {i}"])[0]) for i in range(3)]
    at = _open()
    at.file_uploader(key="uploader-0").set_value([(f"p{i}.png", b, "image/png") for i, b in enumerate(imgs)]).run()
    assert "Ready to digitize: 3 files" in at.subheader[0].value
    at = _open()  # a reload: the uploader is empty, the files are still there
    assert "Ready to digitize: 3 files" in at.subheader[0].value
    at.button(key="discard").click().run()
    assert not list((inkscribe_home / "uploads").iterdir())
    assert any("Drop your notes" in i.value for i in at.info)


def test_upload_page_deletes_a_document_only_when_confirmed(store, inkscribe_home):
    keep = make_doc(store, "keep.pdf", confirm=True)
    gone = make_doc(store, "gone.pdf", pages=2, confirm=True)
    store.update_line(store.document_lines(gone)[0]["id"], text="fixed by hand")
    images = [p.image_path for p in store.pages(gone)]
    at = _open()
    at.selectbox(key="del-doc").select(f"gone.pdf (#{gone})").run()
    assert at.button(key="del-go").disabled  # not without the confirmation
    confirmed = next(d["confirmed_count"] for d in store.documents() if d["id"] == gone)
    assert confirmed >= 7 and f"its {confirmed} confirmed lines go" in _texts(at)
    at.checkbox(key="del-sure").check().run()
    at.button(key="del-go").click().run()
    assert not at.exception
    assert [d["id"] for d in store.documents()] == [keep]
    assert not any(p.exists() for p in images) and all(p.image_path.exists() for p in store.pages(keep))
    assert not store.query("SELECT * FROM edits WHERE line_id NOT IN (SELECT id FROM lines)")
    assert at.checkbox(key="del-sure").value is False


def test_sidebar_shows_running_job(store, no_workers):
    job_id = jobs.start_job(store, "digitize", {"files": []})
    with store.transaction() as c:
        c.execute("UPDATE jobs SET progress = ? WHERE id = ?", (json.dumps({"message": "notes.pdf: page 2/5",
                                                                           "fraction": 0.4}), job_id))
    at = _open()
    assert any("Running:" in m.value for m in at.sidebar.markdown)
    assert dataset.stats(store)["totals"]["lines"] == 0


def test_a_job_that_does_not_stop_can_be_stopped_now(store, no_workers):
    """Cancel asks the worker to stop at a safe point; "Stop it now" ends a worker that does not answer."""
    import subprocess
    import sys
    import time

    make_doc(store, lines=4, confirm=True)
    job_id = jobs.start_job(store, "train-recognizer", {"max_minutes": 0.1})
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                                 "signal.SIG_IGN); time.sleep(120)", "worker", str(job_id)])
    try:
        time.sleep(0.5)
        with store.transaction() as c:
            c.execute("UPDATE jobs SET status = 'running', pid = ? WHERE id = ?", (stubborn.pid, job_id))
        at = _open("finetune")
        at.button(key=f"cancel-{job_id}").click().run()
        at.button(key=f"stop-{job_id}").click().run()
        assert not at.exception
        assert stubborn.poll() is not None  # ended although it ignores SIGTERM
        assert jobs.job_status(store, job_id)["status"] == "cancelled"
    finally:
        stubborn.kill()
        stubborn.wait()
