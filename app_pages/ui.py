"""Small shared pieces of the app's pages: the store, model menus, the job panel, the sidebar.

Only drawing lives here; every decision is in core (jobs, dataset, review, store).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import streamlit as st

from core import jobs
from core.errors import InkscribeError, ModelError
from core.settings import get_settings
from core.store import Store

TRAIN_KINDS = ("train-recognizer", "train-detector")
JOB_TITLES = {"digitize": "Digitizing", "train-recognizer": "Fine-tuning the recognizer",
              "train-detector": "Fine-tuning the line finder", "retranscribe": "Re-transcribing",
              "evaluate": "Scoring models on held-out lines"}


class SessionStores:
    """One browser session's store connections: one per live script thread, handed on to its next run.

    Streamlit 1.67 runs every script run (and a timed fragment run) in a new thread and, with
    fastReruns, starts a run before the stopped one has ended; one SQLite connection shared by
    both would interleave their transactions. So a thread gets its own connection, a finished
    thread's connection goes to the next thread (no connection per run), and the rest are closed.
    """

    def __init__(self, home: str):
        self.home = home
        self._lock = threading.Lock()
        self._by_thread: dict[threading.Thread, Store] = {}

    def get(self) -> Store:
        me = threading.current_thread()
        with self._lock:
            if me in self._by_thread:
                return self._by_thread[me]
            dead = [t for t in self._by_thread if not t.is_alive()]
            # the newest finished run's store: its widget callbacks, running now in this thread, still use it
            store = self._by_thread.pop(dead.pop()) if dead else Store(self.home)
            for t in dead:
                self._by_thread.pop(t).close()
            self._by_thread[me] = store
            return store

    def open_count(self) -> int:
        with self._lock:
            return len(self._by_thread)

    def close(self) -> None:
        """Close every connection (the session ended or the cache was cleared)."""
        with self._lock:
            stores, self._by_thread = list(self._by_thread.values()), {}
        for store in stores:
            store.close()


@st.cache_resource(scope="session", max_entries=1, on_release=SessionStores.close, show_spinner=False)
def _session_stores(home: str) -> SessionStores:
    clean_model_leftovers()  # a new session is a safe moment: guarded against live writers anyway
    return SessionStores(home)


def get_store() -> Store:
    """This script thread's store (SQLite WAL lets the workers write meanwhile); closed with the session."""
    return _session_stores(str(get_settings().home)).get()


def clean_model_leftovers() -> int:
    """Remove half-written model folders of writers that died (a live writer's are kept)."""
    from core.modeldir import clean_partial

    folder = get_settings().models_dir
    return clean_partial(folder) if folder.is_dir() else 0


@st.cache_resource(show_spinner="Loading the recognizer…", max_entries=4)
def cached_recognizer(spec: str):
    """Loaded recognizers, one per resolved spec, shared by every session of this server."""
    from core.recognize import load_recognizer

    return load_recognizer(spec)


def recognizer_options(store: Store) -> dict[str, str]:
    """label → spec, the active model first (what a new reading should use by default)."""
    opts: dict[str, str] = {}
    active = store.active_model("recognizer")
    if active is not None and Path(active["path"]).exists():
        opts[f"{active['name']} (active)"] = active["path"]
    label = default_recognizer_label()
    opts[label] = "default"
    from core.recognize.registry import BUILTIN

    for name in sorted(set(BUILTIN.values())):  # the other offline bases
        if label != f"default ({name})":
            opts[f"{name} (offline base)"] = name
    for m in store.models("recognizer"):
        if (active is None or m["id"] != active["id"]) and Path(m["path"]).exists():
            opts[f"{m['name']} (#{m['id']})"] = m["path"]
    return opts


def default_recognizer_label() -> str:
    """'default (recognizer-handwriting)': what `default` reads with here (a setting can point it elsewhere)."""
    from core.recognize.registry import resolve

    try:
        resolved = resolve("default")
    except ModelError:  # a configured default that is gone: loading it will say so
        return "default"
    name = Path(resolved).name if Path(resolved).is_absolute() else resolved
    return "default" if name == "default" else f"default ({name})"


def detector_options(store: Store) -> dict[str, str]:
    from core.detect import available_detectors

    opts: dict[str, str] = {}
    active = store.active_model("detector")
    if active is not None and Path(active["path"]).exists():
        opts[f"{active['name']} (active)"] = active["path"]
    for name in available_detectors():
        opts["default (best shipped)" if name == "default" else name] = name
    for m in store.models("detector"):
        if (active is None or m["id"] != active["id"]) and Path(m["path"]).exists():
            opts[f"{m['name']} (#{m['id']})"] = m["path"]
    return opts


def model_label(store: Store, kind: str) -> str:
    row = store.active_model(kind)
    if row is not None and Path(row["path"]).exists():
        return row["name"]
    return default_recognizer_label() if kind == "recognizer" else "default"


def show_error(exc: Exception) -> None:
    st.error(str(exc) if isinstance(exc, InkscribeError) else f"Something went wrong: {exc}")


# -- the job panel --------------------------------------------------------------------------
def _history_frame(history: list[dict]) -> pd.DataFrame | None:
    rows = [h for h in history if "loss" in h or "val_cer" in h]
    if not rows:
        return None
    df = pd.DataFrame(rows)
    x = "step" if "step" in df else "t"
    cols = [c for c in ("loss", "val_cer") if c in df]
    return df.set_index(x)[cols]


def render_job(store: Store, job: dict) -> None:
    """Status, progress bar, ETA, loss/val-CER chart and the cancel/resume buttons of one job."""
    title = JOB_TITLES.get(job["kind"], job["kind"])
    prog = job["progress"]
    status = job["status"]
    st.markdown(f"**{title}** — job {job['id']} · {status}")
    if status in jobs.ACTIVE:
        frac = prog.get("fraction")
        text = prog.get("message") or ("waiting for the worker to start…" if status == "queued" else "working…")
        st.progress(float(frac) if frac is not None else 0.0, text=text)
        bits = []
        if prog.get("step") is not None and prog.get("total_steps"):
            bits.append(f"step {prog['step']} of {prog['total_steps']}")
        if prog.get("epoch") is not None:
            bits.append(f"epoch {prog['epoch']}")
        if prog.get("loss") is not None:
            bits.append(f"loss {float(prog['loss']):.3f}")
        if prog.get("val_cer") is not None:
            bits.append(f"validation CER {float(prog['val_cer']):.1%}")
        bits.append(f"time left: {jobs.eta_text(prog.get('eta_s'))}")
        st.caption(" · ".join(bits))
        if job["cancel_requested"]:
            st.info("Stopping at the next safe point…")
            if st.button("Stop it now", key=f"stop-{job['id']}",
                         help="Ends the worker process at once (a fine-tune keeps its last checkpoint to resume from)"):
                jobs.stop_worker(store, job["id"], grace_s=5.0)
                st.rerun()
        elif st.button("Cancel", key=f"cancel-{job['id']}"):
            jobs.cancel_job(store, job["id"])
            st.rerun()
    elif status == "done":
        note = job["result"].get("note")
        st.success(f"Finished. {note}" if note else "Finished.")
    elif status == "cancelled":
        st.warning(f"Cancelled ({job.get('error') or 'on request'}).")
    elif status in ("failed", "interrupted"):
        st.error(f"{'Failed' if status == 'failed' else 'Interrupted'}: {job.get('error') or 'no reason recorded'}")
    if status in jobs.RESUMABLE:
        label = "Resume (continues from the last checkpoint)" if job["kind"] in TRAIN_KINDS else "Run again"
        if st.button(label, key=f"resume-{job['id']}"):
            try:
                jobs.resume_job(store, job["id"])
                st.rerun()
            except InkscribeError as exc:
                st.error(str(exc))
    frame = _history_frame(job["history"])
    if frame is not None:
        st.line_chart(frame, height=220)


def job_panel(kinds: tuple[str, ...], key: str) -> None:
    """The latest job of these kinds, refreshed every second while any job runs (a fragment)."""
    store = get_store()
    busy = jobs.current_job(store) is not None

    @st.fragment(run_every=1.0 if busy else None)
    def _panel() -> None:
        try:
            store = get_store()
            jobs.reconcile_jobs(store)
            job = jobs.latest_job(store, kinds)
            if job is None:
                return
            render_job(store, job)
        except InkscribeError as exc:
            st.error(str(exc))
            return
        except Exception as exc:  # a fragment rerun is outside app.py's guard
            show_error(exc)
            return
        # When a job ends, redraw the whole page once so its results show up.
        seen = st.session_state.get(f"jobstate-{key}")
        st.session_state[f"jobstate-{key}"] = (job["id"], job["status"])
        if seen and seen[0] == job["id"] and seen[1] in jobs.ACTIVE and job["status"] not in jobs.ACTIVE:
            st.rerun(scope="app")

    _panel()


def sidebar(store: Store) -> None:
    with st.sidebar:
        st.markdown("### Active models")
        st.markdown(f"Recognizer: **{model_label(store, 'recognizer')}**  \nLine finder: **{model_label(store, 'detector')}**")
        _sidebar_job()


@st.fragment(run_every=2.0)
def _sidebar_job() -> None:
    try:
        store = get_store()
        job = jobs.current_job(store)
    except Exception as exc:  # a fragment rerun is outside app.py's guard
        show_error(exc)
        return
    if job is None:
        st.caption("No job running.")
        return
    prog = job["progress"]
    frac = prog.get("fraction")
    st.markdown(f"**Running:** {JOB_TITLES.get(job['kind'], job['kind'])} (job {job['id']})")
    st.progress(float(frac) if frac is not None else 0.0, text=prog.get("message") or job["status"])
    st.caption(f"time left: {jobs.eta_text(prog.get('eta_s'))}")
