"""Export: Markdown per document or for everything, plain text, PAGE-XML."""

from __future__ import annotations

import re

import streamlit as st

from app_pages.ui import get_store
from core.export import page_xml_zip, to_markdown, to_text
from core.store import page_results

store = get_store()
st.title("Export")
docs = [d for d in store.documents() if d["pages_done"]]
if not docs:
    st.info("Nothing to export yet: upload notes on the **Upload** page.")
    st.stop()


def _stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.rsplit(".", 1)[0]) or "notes"


all_pages = [p for d in docs for p in page_results(store, d["id"])]
st.subheader("All documents")
a1, a2, a3 = st.columns(3)
a1.download_button("Markdown (all)", to_markdown(all_pages, title="Notes"), "inkscribe-notes.md", "text/markdown",
                   key="md-all")
a2.download_button("Plain text (all)", to_text(all_pages), "inkscribe-notes.txt", "text/plain", key="txt-all")
a3.download_button("PAGE-XML zip (all)", page_xml_zip(all_pages), "inkscribe-page-xml.zip", "application/zip",
                   key="xml-all")

st.subheader("One document")
for d in docs:
    pages = page_results(store, d["id"])
    with st.container(border=True):
        st.markdown(f"**{d['name']}** · {len(pages)} page(s) · {d['confirmed_count']}/{d['line_count']} lines confirmed")
        c1, c2, c3 = st.columns(3)
        stem = _stem(d["name"])
        c1.download_button("Markdown", to_markdown(pages), f"{stem}.md", "text/markdown", key=f"md-{d['id']}")
        c2.download_button("Plain text", to_text(pages), f"{stem}.txt", "text/plain", key=f"txt-{d['id']}")
        c3.download_button("PAGE-XML zip", page_xml_zip(pages), f"{stem}-page-xml.zip", "application/zip",
                           key=f"xml-{d['id']}")
        with st.expander("Preview Markdown"):
            st.code(to_markdown(pages), language="markdown")
