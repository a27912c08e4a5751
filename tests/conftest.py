"""Shared test set-up: offline hubs, one thread, a private INKSCRIBE_HOME per test."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
NOTES = SHARED / "notes"

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("INKSCRIBE_THREADS", "1")
os.environ.setdefault("INKSCRIBE_TRAIN_THREADS", "1")
# derived files only (the text prior built from the standard library): built once, shared by tests
os.environ.setdefault("INKSCRIBE_CACHE", str(Path(tempfile.gettempdir()) / "inkscribe-test-cache"))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(autouse=True)
def inkscribe_home(tmp_path, monkeypatch):
    """Every test gets an empty store so tests never see each other's (or the user's) data."""
    from core.settings import reset_settings

    home = tmp_path / "home"
    monkeypatch.setenv("INKSCRIBE_HOME", str(home))
    reset_settings()
    yield home
    reset_settings()


@pytest.fixture
def store(inkscribe_home):
    """A store in the test's own INKSCRIBE_HOME, closed afterwards."""
    from core.store import Store

    s = Store(inkscribe_home)
    yield s
    s.close()


@pytest.fixture
def notes_dir() -> Path:
    if not (NOTES / "labels.jsonl").exists():
        pytest.skip("../shared/data/notes is not present")
    return NOTES
