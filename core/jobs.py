"""Background jobs: detached worker processes that write their progress to the store's jobs table.

The app never runs long work in its own threads (they die with the server and share its CPU);
it inserts a jobs row and starts `python -m core worker JOB_ID` in a new session. The worker
writes progress, a loss/val-CER history and its result to that row, so any page, any browser
tab and a restarted server all see the same state. One job runs at a time: the check and the
insert happen in one transaction. A job whose process died is marked interrupted by
`reconcile_jobs` and can be resumed (training picks up its checkpoint).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

from core import procs
from core.errors import CancelledError, InkscribeError
from core.modeldir import clean_partial
from core.settings import REPO_ROOT, get_settings
from core.store import Store
from core.store_jobs import JobStore

KINDS = ("digitize", "train-recognizer", "train-detector", "retranscribe", "evaluate")
ACTIVE = ("queued", "running")
RESUMABLE = ("interrupted", "failed", "cancelled")
QUEUED_GRACE_S = 60.0  # a queued row without a live process after this long was never started
HISTORY_MAX = 2000


class JobBusyError(InkscribeError):
    """Another job is already queued or running."""


# -- starting, stopping, looking ----------------------------------------------------------
def _row(store: Store, job_id: int):
    row = JobStore(store).get(job_id)
    if row is None:
        raise InkscribeError(f"there is no job {job_id}")
    return row


def job_status(store: Store, job_id: int) -> dict:
    """A job as plain data, JSON fields decoded."""
    r = _row(store, job_id)
    out = dict(r)
    for key in ("params", "progress", "history", "result"):
        out[key] = json.loads(r[key] or ("[]" if key == "history" else "{}"))
    out["cancel_requested"] = bool(r["cancel_requested"])
    return out


def list_jobs(store: Store, limit: int = 20) -> list[dict]:
    return [job_status(store, i) for i in JobStore(store).recent_ids(limit)]


def current_job(store: Store) -> dict | None:
    """The queued or running job, if any (after reconciling dead workers)."""
    reconcile_jobs(store)
    rows = JobStore(store).active()
    return job_status(store, rows[0]["id"]) if rows else None


def latest_job(store: Store, kinds: tuple[str, ...] | None = None, status: str | None = None) -> dict | None:
    job_id = JobStore(store).latest_id(kinds, status)
    return job_status(store, job_id) if job_id is not None else None


def _refuse_when_busy(jobs_table: JobStore) -> None:
    busy = jobs_table.active()
    if busy:
        raise JobBusyError(f"job {busy[0]['id']} ({busy[0]['kind']}) is still running: wait for it or cancel it first")


def start_job(store: Store, kind: str, params: dict | None = None, spawn: bool = True) -> int:
    """Queue a job and start its worker; raises JobBusyError when another job is active.

    The busy check and the insert are one IMMEDIATE transaction, so two clicks (or two tabs)
    can never start two jobs.
    """
    if kind not in KINDS:
        raise InkscribeError(f"unknown job kind {kind!r} (known: {', '.join(KINDS)})")
    reconcile_jobs(store)
    table = JobStore(store)
    with store.transaction():
        _refuse_when_busy(table)
        job_id = table.insert(kind, params or {})
    if spawn:
        try:
            spawn_worker(store, job_id)
        except OSError as exc:
            _finish(store, job_id, "failed", error=f"could not start the worker process: {exc}")
            raise InkscribeError(f"could not start the background worker: {exc}") from exc
    return job_id


def job_dir(job_id: int) -> Path:
    d = get_settings().jobs_dir / str(job_id)
    d.mkdir(parents=True, exist_ok=True)
    return d


def log_path(job_id: int) -> Path:
    get_settings().jobs_dir.mkdir(parents=True, exist_ok=True)
    return get_settings().jobs_dir / f"{job_id}.log"


def spawn_worker(store: Store, job_id: int) -> int:
    """Start `python -m core worker JOB_ID` detached from the server (own session).

    One torch thread, except that training jobs take `train_threads` (both cores of a small
    machine: one job runs at a time, the server mostly idles, and waits are passive, so a
    line read by the server while training runs slows both a little, not tenfold).
    """
    settings = get_settings()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "INKSCRIBE_THREADS": "1", "INKSCRIBE_HOME": str(settings.home),
           "OMP_WAIT_POLICY": "PASSIVE", "PYTHONUNBUFFERED": "1"}
    proc = procs.start_detached([sys.executable, "-m", "core", "worker", str(job_id)], log_path(job_id), env,
                                cwd=REPO_ROOT)
    _children.append(proc)
    JobStore(store).set_pid_if_unset(job_id, proc.pid)
    return proc.pid


_children: list[subprocess.Popen] = []  # workers this process started, reaped once they end (no zombies)


def _reap_children() -> None:
    for proc in list(_children):
        if proc.poll() is not None:
            _children.remove(proc)


def cancel_job(store: Store, job_id: int) -> None:
    """Ask a job to stop at its next check; a job with no live worker is marked cancelled at once."""
    job = job_status(store, job_id)
    if job["status"] not in ACTIVE:
        return
    JobStore(store).request_cancel(job_id)
    if not job["pid"] or not pid_alive(job["pid"], job_id):
        _finish(store, job_id, "cancelled", error="cancelled before its worker started")


def resume_job(store: Store, job_id: int, spawn: bool = True) -> int:
    """Run an interrupted, failed or cancelled job again in place (training resumes from its checkpoint)."""
    reconcile_jobs(store)
    table = JobStore(store)
    with store.transaction():
        row = _row(store, job_id)
        if row["status"] not in RESUMABLE:
            raise InkscribeError(f"job {job_id} is {row['status']}; only interrupted, failed or cancelled jobs resume")
        _refuse_when_busy(table)
        table.requeue(job_id)
    if spawn:
        spawn_worker(store, job_id)
    return job_id


def pid_alive(pid: int | None, job_id: int | None = None) -> bool:
    """True when `pid` is a live (not zombie) process, and, given a job id, that job's worker."""
    return procs.process_alive(pid, ("worker", str(job_id)) if job_id is not None else ())


def stop_worker(store: Store, job_id: int, grace_s: float = 10.0) -> bool:
    """Cancel a job and, if its worker has not stopped within `grace_s`, terminate it (and its children).

    For a worker that no longer answers; a cooperative cancel keeps the best weights so far.
    Returns True when no process of the job is left.
    """
    cancel_job(store, job_id)
    pid = job_status(store, job_id)["pid"]
    deadline = time.monotonic() + grace_s
    while pid_alive(pid, job_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    gone = not pid_alive(pid, job_id) or procs.terminate(pid, grace_s)
    if gone and job_status(store, job_id)["status"] in ACTIVE:
        _finish(store, job_id, "cancelled", error="stopped on request: its worker did not answer and was terminated")
    return gone


def reconcile_jobs(store: Store) -> list[int]:
    """Mark queued/running jobs whose worker is gone as interrupted; returns their ids."""
    _reap_children()
    changed = []
    now = time.time()
    table = JobStore(store)
    for r in table.active():
        if r["pid"]:
            if pid_alive(r["pid"], r["id"]):
                continue
            reason = f"its worker (pid {r['pid']}) stopped without finishing: a crash, a kill or a server restart"
        elif now - r["created_at"] > QUEUED_GRACE_S:
            reason = "its worker never started"
        else:
            continue
        if table.mark_interrupted(r["id"], r["status"], reason):
            changed.append(r["id"])
    store.mark_stale_documents(procs.process_alive)  # a reader (job or CLI) that died leaves one 'processing'
    return changed


def _finish(store: Store, job_id: int, status: str, error: str | None = None, result: dict | None = None) -> None:
    JobStore(store).finish(job_id, status, error, result)


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "estimating…"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {(seconds % 3600) // 60:02d} min"


# -- inside the worker ----------------------------------------------------------------------
class JobContext:
    """What a running job uses to report progress and to learn it should stop."""

    def __init__(self, store: Store, job_id: int, history: list | None = None):
        self.store = store
        self.job_id = job_id
        self.started = time.time()
        self.history: list[dict] = list(history or [])
        self.t0 = (self.history[-1].get("t", 0.0) if self.history else 0.0)  # resumed jobs continue the clock
        self.state: dict = {}
        self._last_write = 0.0
        self._last_check = 0.0
        self._stop = False

    def progress(self, info: dict) -> None:
        info = {k: v for k, v in info.items() if v is not None}
        self.state.update(info)
        elapsed = time.time() - self.started
        step, total = self.state.get("step"), self.state.get("total_steps")
        if "eta_s" not in info and step and total:
            self.state["eta_s"] = elapsed / step * max(0, total - step)
        self.state["fraction"] = min(1.0, step / total) if step is not None and total else self.state.get("fraction")
        self.state["elapsed_s"] = elapsed
        history_point = any(k in info for k in ("loss", "val_cer"))
        if history_point:
            point = {"t": round(self.t0 + elapsed, 2)}
            for k in ("step", "epoch", "loss", "val_cer"):
                if k in info and isinstance(info[k], int | float):
                    point[k] = round(float(info[k]), 5)
            self.history.append(point)
            if len(self.history) > HISTORY_MAX:
                self.history = self.history[::2]
        if history_point and "val_cer" in info or time.time() - self._last_write >= 0.5:
            self.flush()

    def flush(self) -> None:
        self._last_write = time.time()
        JobStore(self.store).write_progress(self.job_id, self.state, self.history)

    def message(self, text: str) -> None:
        self.state["message"] = text
        self.flush()

    def should_stop(self) -> bool:
        if self._stop:
            return True
        if time.time() - self._last_check >= 0.5:
            self._last_check = time.time()
            self._stop = JobStore(self.store).cancel_requested(self.job_id)
        return self._stop

    def check(self) -> None:
        if self.should_stop():
            raise CancelledError("stopped on request")


def run_job(job_id: int, store: Store | None = None) -> int:
    """The worker's body: claim the row, run the job, record done/failed/cancelled. Returns an exit code."""
    from core.settings import configure_process

    configure_process(threads=1)
    clean_partial(get_settings().models_dir)  # a crashed earlier save's temp folder (never a live writer's)
    own_store = store is None
    store = store or Store()
    try:
        table = JobStore(store)
        with store.transaction():
            row = table.get(job_id)
            if row is None:
                print(f"error: there is no job {job_id}", file=sys.stderr)
                return 2
            if row["status"] != "queued":
                print(f"error: job {job_id} is {row['status']}, not queued", file=sys.stderr)
                return 2
            table.claim(job_id, os.getpid())
        job = job_status(store, job_id)
        ctx = JobContext(store, job_id, job["history"])
        ctx.state = dict(job["progress"])
        print(f"job {job_id} ({job['kind']}) started, pid {os.getpid()}", flush=True)
        try:
            result = RUNNERS[job["kind"]](store, job_id, job["params"], ctx)
        except CancelledError as exc:
            ctx.flush()
            _finish(store, job_id, "cancelled", error=str(exc))
            print(f"job {job_id} cancelled", flush=True)
            return 0
        except InkscribeError as exc:
            ctx.flush()
            _finish(store, job_id, "failed", error=str(exc))
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return 2
        except Exception as exc:  # a bug: the row says what, the log has the traceback
            traceback.print_exc()
            ctx.flush()
            _finish(store, job_id, "failed", error=f"{type(exc).__name__}: {exc} (details in the job log)")
            return 1
        ctx.state["fraction"] = 1.0
        ctx.state["eta_s"] = 0
        ctx.flush()
        _finish(store, job_id, "done", result=result)
        print(f"job {job_id} done: {json.dumps(result)[:500]}", flush=True)
        return 0
    finally:
        if own_store:
            store.close()


# -- uploads --------------------------------------------------------------------------------
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")
MAX_NAME_BYTES = 150


def save_upload(name: str, data: bytes) -> Path:
    """Persist an uploaded file at once (a reload clears the uploader); same content → same file."""
    folder = get_settings().home / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()
    safe = _SAFE_NAME.sub("_", Path(name).name).strip(" .") or "upload"
    if len(safe.encode()) > MAX_NAME_BYTES:  # keep the suffix; file systems allow 255 bytes per name
        stem, dot, suffix = safe.rpartition(".")
        suffix = suffix[:10] if dot else ""
        safe = (stem if dot else safe)[: MAX_NAME_BYTES - len(suffix) - 1] + (f".{suffix}" if suffix else "")
    final = folder / f"{digest[:12]}-{safe}"
    if not final.exists():
        tmp = folder / f".{final.name}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, final)
    return final


def upload_display_name(path: str | Path) -> str:
    name = Path(path).name
    return name.split("-", 1)[1] if re.match(r"^[0-9a-f]{12}-", name) else name


def pending_uploads(store: Store) -> list[Path]:
    """Saved uploads no document was made from yet (e.g. the page was reloaded before Digitize)."""
    from core.store import file_sha256

    folder = get_settings().home / "uploads"
    if not folder.is_dir():
        return []
    known = store.document_hashes()
    prefixes = {k[:12] for k in known}
    out = []
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name.startswith("."):
            continue
        m = re.match(r"^([0-9a-f]{12})-", p.name)  # save_upload names files by content hash: no re-hashing
        if (m.group(1) not in prefixes) if m else (file_sha256(p) not in known):
            out.append(p)
    return out


# -- the kinds of job -----------------------------------------------------------------------
def _run_digitize(store: Store, job_id: int, params: dict, ctx: JobContext) -> dict:
    from core.pipeline import Engines, digitize
    from core.store import file_sha256

    files = [Path(f) for f in params.get("files", [])]
    names = params.get("names") or [upload_display_name(f) for f in files]
    if not files:
        raise InkscribeError("nothing to digitize: no files were given")
    # A resumed job skips files that already became complete documents.
    done = store.document_hashes("done")
    todo = [(f, n) for f, n in zip(files, names, strict=True) if file_sha256(f) not in done]
    ctx.message(f"loading models ({params.get('detector', 'default')}, {params.get('recognizer', 'default')})")
    engines = Engines.load(params.get("detector") or "default", params.get("recognizer") or "default")
    docs = []
    if todo:
        results = digitize([f for f, _ in todo], engines, store=store, progress=ctx.progress, should_stop=ctx.should_stop,
                           keep_partial=True, names=[n for _, n in todo], owner=f"job:{job_id}")
        docs = [d.document_id for d in results]
    pages = sum(len(store.pages(d)) for d in docs if d is not None)
    note = f"{len(docs)} document(s), {pages} page(s) ready to review."
    return {"documents": docs, "files": len(files), "skipped": len(files) - len(todo), "note": note}


def _run_retranscribe(store: Store, job_id: int, params: dict, ctx: JobContext) -> dict:
    from core.review import reread_page

    doc_id = int(params["document_id"])
    spec = params.get("recognizer") or "default"
    pages = store.pages(doc_id)
    if not pages:
        raise InkscribeError(f"document {doc_id} has no pages to re-read")
    ctx.message(f"loading {spec}")
    redetect = bool(params.get("redetect"))
    engines = None
    if redetect:
        from core.pipeline import Engines

        engines = Engines.load(params.get("detector") or "default", spec)
    changed = kept = 0
    for i, page in enumerate(pages, 1):
        ctx.check()
        r = reread_page(store, page.id, spec, redetect=redetect, engines=engines)
        changed += r["changed"]
        kept += r["kept"]
        ctx.progress({"step": i, "total_steps": len(pages), "message": f"page {page.page_no}: {r['changed']} lines re-read"})
    store.set_document_recognizer(doc_id, spec)
    return {"document": doc_id, "recognizer": spec, "lines_reread": changed, "lines_kept": kept}


def _run_train_recognizer(store: Store, job_id: int, params: dict, ctx: JobContext) -> dict:
    from core.finetune import finetune_recognizer

    out = Path(params.get("out") or get_settings().models_dir / f"recognizer-job{job_id}")
    options = {k: params[k] for k in ("val_fraction", "limit_lines", "seed") if params.get(k) is not None}
    result = finetune_recognizer(store, job_dir(job_id), out, base=params.get("base") or "default",
                                 max_minutes=float(params.get("max_minutes", 15)), name=params.get("name"),
                                 progress=ctx.progress, should_stop=ctx.should_stop,
                                 threads=get_settings().train_threads, options=options, origin=f"job {job_id}",
                                 self_train=params.get("self_train"))  # None: the default rule decides
    return {**result, "job_id": job_id}


def _run_train_detector(store: Store, job_id: int, params: dict, ctx: JobContext) -> dict:
    from core import dataset
    from core.train_detector import train_detector

    jd = job_dir(job_id)
    labels = jd / "pages.jsonl"
    summary = dataset.export_labels(store, labels, part="all", complete_pages=True)
    if summary["pages"] == 0:
        raise InkscribeError("no page has every line confirmed yet: the detector learns from fully checked pages")
    base = params.get("base") or "default"
    out = Path(params.get("out") or get_settings().models_dir / f"detector-job{job_id}")
    ctx.message(f"training the line finder on {summary['pages']} fully confirmed pages")
    if out.exists():
        model_dir = out
    else:
        model_dir = Path(train_detector(labels, split="train", base=base, max_minutes=float(params.get("max_minutes", 15)),
                                        out=out, progress=ctx.progress, should_stop=ctx.should_stop, resume=True,
                                        threads=get_settings().train_threads))
    from core.modeldir import read_manifest

    manifest = read_manifest(model_dir)
    trained_on = {"pages": summary["pages"], "lines": summary["lines"], "documents": summary["document_names"],
                  "base": base, "job_id": job_id}
    model_id = store.register_model("detector", params.get("name") or model_dir.name, model_dir,
                                    engine=manifest.get("engine"), base=base, trained_on=trained_on,
                                    metrics=manifest.get("metrics", {}), activate=bool(params.get("activate")))
    return {"model_id": model_id, "model_dir": str(model_dir), "pages_used": summary["pages"]}


def _run_evaluate(store: Store, job_id: int, params: dict, ctx: JobContext) -> dict:
    """Score recognizers on the held-out confirmed lines (the Evaluate page), per-line diffs kept."""
    from core.review import compare_on_holdout

    specs = [str(s) for s in params.get("specs") or []]
    if not specs:
        raise InkscribeError("choose at least one model to evaluate")
    labels = params.get("labels") or specs
    if len(labels) != len(specs):
        labels = specs
    ctx.message(f"scoring {len(specs)} model(s) on the held-out lines")
    res = compare_on_holdout(store, specs, keep_lines=True, progress=ctx.progress, should_stop=ctx.should_stop)
    if not res["lines"]:
        raise InkscribeError("there are no held-out lines to score on yet: confirm lines on 3 or more pages")
    for label, model in zip(labels, res["models"], strict=True):
        model["label"] = str(label)
    best = min(res["models"], key=lambda m: m["cer"])
    return {**res, "note": f"{res['lines']} held-out lines read; lowest error: {best['label']} ({best['cer']:.1%} CER)."}


RUNNERS = {
    "digitize": _run_digitize,
    "retranscribe": _run_retranscribe,
    "train-recognizer": _run_train_recognizer,
    "train-detector": _run_train_detector,
    "evaluate": _run_evaluate,
}
