"""Worker processes on any platform: start detached, ask whether one is alive, stop it.

Through psutil, because the POSIX ways do harm elsewhere: on Windows `os.kill(pid, 0)`
terminates the process it was meant to probe, there is no /proc to read, and
`start_new_session` means nothing.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import psutil

KILL_WAIT_S = 5.0  # SIGKILL cannot be ignored; this only lets the system take the process down


def detach_options() -> dict:
    """Popen keywords that keep a worker running when the server or its terminal goes away."""
    if psutil.WINDOWS:
        flags = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS  # type: ignore[attr-defined]
        return {"creationflags": flags}
    return {"start_new_session": True}


def start_detached(argv: Sequence[str], log: Path, env: dict[str, str], cwd: str | Path | None = None) -> subprocess.Popen:
    """Start `argv` in its own session/process group, output appended to `log`, no stdin."""
    with open(log, "ab") as out:
        return subprocess.Popen(list(argv), cwd=str(cwd) if cwd else None, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, **detach_options())


def process_alive(pid: int | None, marker: Sequence[str] = ()) -> bool:
    """True when `pid` is a running (not zombie) process whose command line holds every `marker` word.

    The markers catch a pid the system has since given to another program. A process whose
    command line cannot be read yet (still inside exec) or at all (another user's) counts as alive.
    """
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(pid)
            return False
        if marker:
            args = proc.cmdline()
            if args and not all(m in args for m in marker):
                return False
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
    return True


def _reap(pid: int) -> None:
    """Collect a finished child of ours so it stops being a zombie (POSIX only; harmless elsewhere)."""
    if psutil.POSIX:
        try:
            os.waitpid(pid, os.WNOHANG)
        except (ChildProcessError, OSError):
            pass


def terminate(pid: int, grace_s: float = 10.0) -> bool:
    """Stop a process and its children: terminate, wait `grace_s`, then kill. True when all are gone."""
    try:
        proc = psutil.Process(pid)
        family = [*proc.children(recursive=True), proc]
    except psutil.NoSuchProcess:
        return True
    _signal_all(family, psutil.Process.terminate)
    _, alive = psutil.wait_procs(family, timeout=grace_s)
    _signal_all(alive, psutil.Process.kill)
    _, alive = psutil.wait_procs(alive, timeout=KILL_WAIT_S)
    _reap(pid)
    return not alive


def _signal_all(procs: list[psutil.Process], send) -> None:
    for p in procs:
        try:
            send(p)
        except psutil.NoSuchProcess:
            continue
