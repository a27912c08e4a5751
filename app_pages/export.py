"""Export: every document or one, in any format; a file is built only when its button is pressed.

Each download button gets a callable (Streamlit runs it on the press, in a thread of its own),
so opening or rerunning the page reads no page image and builds no file.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from app_pages.ui import get_store
from core.formats import safe_stem
from core.interchange import MIME, SUFFIX, export_bytes
from core.store import Store

DOCUMENT_FORMATS = {"md": "Markdown", "txt": "Plain text", "page-xml": "PAGE-XML zip", "alto": "ALTO zip",
                    "pdf": "Searchable PDF", "labels": "labels.jsonl zip"}
DATASET_FORMATS = {"imagefolder": "Hugging Face imagefolder zip", "ppocr": "PPOCRLabel zip"}
HELP = {"md": "headings per file, page markers, lists and margin notes",
        "txt": "one line of text per handwritten line",
        "page-xml": "PAGE 2019 files with baselines, confidences and reading order, and the page images "
                    "(Transkribus, eScriptorium, OCR-D)",
        "alto": "ALTO 4 with boxes, polygons, baselines and word confidences, and the page images",
        "pdf": "your pages with the text under them: search and copy in any PDF viewer",
        "labels": "labels.jsonl with page images: what `inkscribe train --labels` reads",
        "imagefolder": "confirmed line crops with metadata.jsonl (Hugging Face datasets)",
        "ppocr": "confirmed lines as PPOCRLabel Label.txt / rec_gt.txt with images"}


def builder(home, fmt: str, doc_ids: list[int] | None) -> Callable[[], bytes]:
    """Build the file on the press, with a connection of its own (the callable runs in another thread)."""
    def build() -> bytes:
        s = Store(home)
        try:
            return export_bytes(s, fmt, doc_ids, archive=fmt == "alto")
        finally:
            s.close()
    return build


def _file_name(stem: str, fmt: str) -> str:
    tag = "" if fmt in ("md", "txt", "pdf") else f"-{fmt}"
    return f"{stem}{tag}{SUFFIX[fmt] if fmt != 'alto' else '.zip'}"


def _buttons(home, formats: dict[str, str], doc_ids: list[int] | None, stem: str, key: str) -> None:
    cols = st.columns(len(formats))
    for col, (fmt, label) in zip(cols, formats.items(), strict=True):
        name = _file_name(stem, fmt)
        col.download_button(label, builder(home, fmt, doc_ids), file_name=name, mime=MIME[name[name.rfind("."):]],
                            key=f"dl-{fmt}-{key}", help=HELP[fmt], on_click="ignore")


store = get_store()
st.title("Export")
docs = [d for d in store.documents() if d["pages_done"]]
if not docs:
    st.info("Nothing to export yet: upload notes on the **Upload** page.")
    st.stop()

st.subheader("All documents")
st.caption("A file is made when you press its button; large PDFs or zips take a moment. What each format keeps: "
           "docs/FORMATS.md.")
_buttons(store.home, DOCUMENT_FORMATS, None, "inkscribe-notes", "all")
if sum(d["confirmed_count"] for d in docs):
    st.caption("Your confirmed lines as a training set:")
    _buttons(store.home, DATASET_FORMATS, None, "inkscribe-dataset", "all")

st.subheader("One document")
for d in docs:
    with st.container(border=True):
        st.markdown(f"**{d['name']}** · {d['pages_done']} page(s) · {d['confirmed_count']}/{d['line_count']} lines "
                    "confirmed")
        _buttons(store.home, DOCUMENT_FORMATS, [d["id"]], safe_stem(d["name"]) or "notes", str(d["id"]))
        if st.toggle("Preview Markdown", key=f"preview-{d['id']}"):
            from core.export import to_markdown
            from core.store import page_results

            st.code(to_markdown(page_results(store, d["id"])), language="markdown")
