"""Fixtures for the robustness tests: in-process CLI runs, fake engines, a seeded store."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


class FakeRecognizer:
    """Reads nothing, instantly: these tests are about inputs and storage, not reading."""

    name = "fake"

    def recognize(self, crops):
        from core.recognize import Recognition

        return [Recognition("" if c is None else f"w{c.width}", 0.5) for c in crops]


@pytest.fixture
def fake_engines(monkeypatch):
    """`Engines.load` → classical detector + fake recognizer, in this process."""
    from core.detect.classical import ClassicalDetector
    from core.pipeline import Engines

    def load(cls, detector="default", recognizer="default"):
        return cls(ClassicalDetector(), FakeRecognizer(), "classical", "fake")

    monkeypatch.setattr(Engines, "load", classmethod(load))


@pytest.fixture
def cli(capsys):
    """Run `python -m core ARGS` in this process: (exit code, stdout, stderr)."""
    from core.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return rc, out, err

    return run


@pytest.fixture
def seeded_home(inkscribe_home):
    """A store that already holds one complete document (so 'unchanged' means something)."""
    from robustness_helpers import seed_store

    seed_store(inkscribe_home)
    return inkscribe_home


@pytest.fixture
def pristine_pil_open(monkeypatch):
    """Pillow's own Image.open for this test.

    `import ultralytics` replaces PIL.Image.open for the whole process with a wrapper that turns
    "not an image" into ModuleNotFoundError (pi_heif) — see docs/RELIABILITY.md. Tests of our own
    handling run against Pillow's function; `test_ultralytics_image_open_patch` covers the interaction.
    """
    from PIL import Image

    patches = sys.modules.get("ultralytics.utils.patches")
    if patches is not None and hasattr(patches, "_image_open"):
        monkeypatch.setattr(Image, "open", patches._image_open)
