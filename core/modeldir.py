"""Models are directories with an `inkscribe.json` manifest, written whole or not at all.

A model directory is built under a temporary name beside its destination and renamed into
place, so a crash or a full disk never leaves a half-written model that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from core.errors import ModelError

MANIFEST = "inkscribe.json"


def read_manifest(path: str | Path) -> dict:
    p = Path(path)
    manifest = p / MANIFEST
    if not manifest.is_file():
        raise ModelError(f"{p}: not an Inkscribe model directory (no {MANIFEST})")
    try:
        return json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{p}: its {MANIFEST} is unreadable") from exc


def is_model_dir(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def write_model_dir(dest: str | Path, manifest: dict, fill: Callable[[Path], None]) -> Path:
    """Create `dest` atomically: `fill(tmp)` writes the files, then the manifest, then rename.

    Refuses to overwrite: models are versioned, never replaced.
    """
    dest = Path(dest)
    if dest.exists():
        raise ModelError(f"{dest}: a model already exists there; models are never overwritten")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".tmp-{dest.name}-{os.getpid()}-{int(time.time() * 1000)}"
    try:
        tmp.mkdir()
        fill(tmp)
        manifest = {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), **manifest}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
        _fsync_dir(tmp)
        os.rename(tmp, dest)
    except OSError as exc:  # disk full, permissions: nothing half-written stays, one clear sentence
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelError(f"{dest}: the model could not be saved ({exc.strerror or exc}); nothing was kept") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _fsync_dir(path: Path) -> None:
    for f in path.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())


def clean_partial(parent: str | Path) -> int:
    """Remove leftovers of model writes that crashed; returns how many were removed.

    Safe while other processes write models: a `.tmp-NAME-PID-MS` folder is kept while the
    process that made it is alive, and folders not named that way are left alone.
    """
    n = 0
    for tmp in Path(parent).glob(".tmp-*"):
        if tmp.is_dir() and not _writer_alive(tmp.name):
            shutil.rmtree(tmp, ignore_errors=True)
            n += 1
    return n


def _writer_alive(name: str) -> bool:
    """Whether the process that created `.tmp-NAME-PID-MS` may still be writing it (unknown names: yes).

    A pid since reused by another program keeps the folder until that one ends too: a stale
    folder costs disk space, removing a live writer's would break its save.
    """
    import psutil

    try:
        _, pid_text, ms_text = name.rsplit("-", 2)
        pid, _ms = int(pid_text), int(ms_text)
    except ValueError:
        return True
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def next_version_dir(parent: str | Path, stem: str) -> Path:
    """`parent/stem-v1`, `-v2`, ... the first that does not exist yet."""
    parent = Path(parent)
    n = 1
    while (parent / f"{stem}-v{n}").exists():
        n += 1
    return parent / f"{stem}-v{n}"
