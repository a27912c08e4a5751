"""core.procs and the jobs that use it: real worker processes, started detached, probed, stopped (psutil)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest
from test_jobs import _png_bytes, _wait
from test_review import page_image

from core import jobs, procs
from core.store import Store

STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"


def test_a_detached_process_is_alive_by_its_markers_and_terminated_even_when_it_ignores_sigterm(tmp_path):
    proc = procs.start_detached([sys.executable, "-c", STUBBORN, "worker", "99"], tmp_path / "log", dict(os.environ))
    try:
        time.sleep(0.5)  # past exec, so its command line is readable
        assert procs.process_alive(proc.pid, ("worker", "99"))
        assert not procs.process_alive(proc.pid, ("worker", "98"))  # a reused pid is not our worker
        if psutil.POSIX:
            assert os.getsid(proc.pid) != os.getsid(0)  # its own session: the server's end does not end it
        assert procs.terminate(proc.pid, grace_s=0.5)
        assert not procs.process_alive(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_a_finished_child_is_not_alive(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 10
    while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE and time.time() < deadline:
        time.sleep(0.05)
    assert not procs.process_alive(proc.pid)  # a zombie is reaped and reported gone
    assert not procs.process_alive(None) and procs.terminate(proc.pid)


def test_windows_workers_get_a_process_group_of_their_own(monkeypatch):
    monkeypatch.setattr(psutil, "WINDOWS", True)
    monkeypatch.setattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x200, raising=False)
    monkeypatch.setattr(subprocess, "DETACHED_PROCESS", 0x8, raising=False)
    assert procs.detach_options() == {"creationflags": 0x208}


def test_probing_a_job_never_signals_its_worker(monkeypatch, inkscribe_home):
    """os.kill(pid, 0) terminates a process on Windows; liveness must not send anything."""
    sent = []
    monkeypatch.setattr(os, "kill", lambda *a: sent.append(a))
    assert jobs.pid_alive(os.getpid()) and not sent


@pytest.mark.slow
def test_a_real_worker_is_seen_alive_then_stopped(inkscribe_home):
    store = Store(inkscribe_home)
    files = [str(jobs.save_upload(f"p{i}.png", _png_bytes(page_image([f"page {i} text"] * 6)[0]))) for i in range(8)]
    job_id = jobs.start_job(store, "digitize", {"files": files, "detector": "classical", "recognizer": "default"})
    job = _wait(store, job_id, ("running", "done", "failed"))
    assert job["status"] == "running", job
    assert jobs.pid_alive(job["pid"], job_id) and not jobs.pid_alive(job["pid"], job_id + 1)
    assert jobs.stop_worker(store, job_id, grace_s=0.0)  # no grace: terminated at once
    assert not jobs.pid_alive(job["pid"], job_id)
    assert jobs.job_status(store, job_id)["status"] == "cancelled"
    assert jobs.current_job(store) is None  # the next job may start
