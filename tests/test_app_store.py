"""The app's resources: store connections do not pile up run after run; crashed model saves get cleaned."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import psutil
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest
from test_review import make_doc

from app_pages.ui import SessionStores
from core import jobs
from core.modeldir import clean_partial, write_model_dir
from core.settings import REPO_ROOT
from core.store import Store

APP = str(REPO_ROOT / "app.py")
PAGES = ("review", "dataset", "models", "evaluate", "finetune", "export", "upload")


@pytest.fixture(autouse=True)
def no_workers(monkeypatch):
    monkeypatch.setattr(jobs, "spawn_worker", lambda store, job_id: 0)
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()  # closes the session's connections (on_release)


def _db_files(home) -> int:
    """Open file descriptors of this process on the store's SQLite files (db, -wal, -shm)."""
    return sum(1 for f in psutil.Process().open_files() if f.path.startswith(str(home / "inkscribe.db")))


def test_page_runs_and_fragments_do_not_leak_connections(inkscribe_home):
    _seed(inkscribe_home)
    at = AppTest.from_file(APP, default_timeout=60).run()  # app.py, the sidebar fragment and a page
    for page in PAGES:
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    after_one_round = _db_files(inkscribe_home)
    assert after_one_round > 0
    for _ in range(3):
        for page in PAGES:
            at.switch_page(f"app_pages/{page}.py").run()
            at.run()  # a rerun of the same page (what a widget or a timed fragment does)
    assert not at.exception, [e.value for e in at.exception]
    assert _db_files(inkscribe_home) <= after_one_round


def _seed(home) -> None:
    """A document and a queued job, so the pages draw their full content and their job panels."""
    store = Store(home)
    make_doc(store, lines=3, confirm=True)
    jobs.start_job(store, "retranscribe", {"document_id": store.documents()[0]["id"]}, spawn=False)
    store.close()


def test_session_stores_one_connection_per_live_thread(inkscribe_home):
    """Overlapping runs (fastReruns) get their own connection; a finished run's goes to the next run."""
    stores = SessionStores(str(inkscribe_home))
    main = stores.get()
    assert stores.get() is main  # the same thread, the same connection
    got: dict[str, Store] = {}
    release = threading.Event()

    def run(name: str, wait: bool) -> None:
        got[name] = stores.get()
        if wait:
            release.wait(10)

    overlapping = threading.Thread(target=run, args=("overlap", True))
    overlapping.start()
    while "overlap" not in got:
        pass
    assert got["overlap"] is not main  # both threads are alive: never one connection for two threads
    release.set()
    overlapping.join()
    later = threading.Thread(target=run, args=("later", False))
    later.start()
    later.join()
    assert got["later"] is got["overlap"]  # handed on, not reopened
    assert stores.open_count() == 2
    stores.close()
    assert stores.open_count() == 0
    with pytest.raises(Exception, match="closed"):
        main.query("SELECT 1")


def test_session_stores_close_connections_of_finished_runs(inkscribe_home):
    stores = SessionStores(str(inkscribe_home))
    barrier = threading.Barrier(3)
    got: list[Store] = []

    def run() -> None:
        got.append(stores.get())
        barrier.wait(10)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    barrier.wait(10)
    for t in threads:
        t.join()
    assert stores.open_count() == 2
    newest = stores.get()  # this thread: takes the newest finished run's store, closes the other
    assert newest in got and stores.open_count() == 1
    closed = next(s for s in got if s is not newest)
    with pytest.raises(Exception, match="closed"):
        closed.query("SELECT 1")
    stores.close()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_clean_partial_removes_only_dead_writers_leftovers(tmp_path):
    dead = tmp_path / f".tmp-recognizer-v1-{_dead_pid()}-1"
    live = tmp_path / f".tmp-recognizer-v2-{os.getpid()}-1"
    odd = tmp_path / ".tmp-not-ours"
    for d in (dead, live, odd):
        d.mkdir()
        (d / "weights.bin").write_bytes(b"\0" * 10)
    model = write_model_dir(tmp_path / "recognizer-v3", {"kind": "recognizer"}, lambda p: None)
    assert clean_partial(tmp_path) == 1
    assert not dead.exists() and live.exists() and odd.exists() and model.exists()


def test_models_page_cleans_crashed_saves(inkscribe_home):
    models = inkscribe_home / "models"
    dead = models / f".tmp-recognizer-job3-{_dead_pid()}-1700000000000"
    live = models / f".tmp-recognizer-job4-{os.getpid()}-1700000000000"
    for d in (dead, live):
        d.mkdir(parents=True)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("app_pages/models.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not dead.exists() and live.exists()
