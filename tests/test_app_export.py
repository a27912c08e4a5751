"""app_pages/export.py: every format on offer, and no file built until its button is pressed (issue 28)."""

from __future__ import annotations

import io
import zipfile

import pytest
import streamlit as st
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest
from test_review import make_doc

from core import dataset, interchange
from core.settings import REPO_ROOT


@pytest.fixture
def deferred(monkeypatch):
    """The callables the page hands to download buttons, by button label and order."""
    seen: list = []
    real = MediaFileManager.add_deferred

    def add(self, data_callable, *args, **kwargs):
        seen.append(data_callable)
        return real(self, data_callable, *args, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add_deferred", add)
    st.cache_resource.clear()
    yield seen
    st.cache_resource.clear()


@pytest.fixture
def builds(monkeypatch):
    """Every export actually built: interchange.write_export and the dataset zips."""
    made: list[str] = []
    real_write, real_zip = interchange.write_export, dataset.export_zip
    monkeypatch.setattr(interchange, "write_export", lambda pages, fmt, *a, **k: made.append(fmt) or
                        real_write(pages, fmt, *a, **k))
    monkeypatch.setattr(dataset, "export_zip", lambda s, fmt, *a, **k: made.append(fmt) or real_zip(s, fmt, *a, **k))
    return made


def test_export_page_builds_nothing_until_a_button_is_pressed(store, deferred, builds):
    docs = [make_doc(store, "a.pdf", pages=3, lines=3, confirm=True), make_doc(store, "b.pdf", lines=2)]
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("app_pages/export.py").run()
    assert not at.exception, [e.value for e in at.exception]
    buttons = at.get("download_button")
    assert len(buttons) == 6 + 2 + 6 * len(docs)
    assert all(b.proto.deferred_file_id for b in buttons), "every button holds a callable, not the file"
    at.run()  # a rerun builds nothing either
    assert builds == []
    labels = [b.proto.label for b in buttons]
    assert labels[:8] == ["Markdown", "Plain text", "PAGE-XML zip", "ALTO zip", "Searchable PDF", "labels.jsonl zip",
                          "Hugging Face imagefolder zip", "PPOCRLabel zip"]
    pdf_of_b = deferred[len(deferred) - len(buttons):][8 + 6 + 4]  # the PDF button of the second document
    assert pdf_of_b().startswith(b"%PDF-") and builds == ["pdf"]
    alto_all = deferred[len(deferred) - len(buttons):][3]
    with zipfile.ZipFile(io.BytesIO(alto_all())) as zf:
        assert {"a/a.xml", "b/b.xml", "a/a-p0003.png"} <= set(zf.namelist())
    assert builds == ["pdf", "alto"]
