"""Inkscribe: digitize handwritten notes, fix what the machine got wrong, and let it learn the hand.

`streamlit run app.py`. Pages are thin views over `core`; everything lives in the store, so a
reload, a closed tab or a restarted server loses nothing. Long work runs in detached worker
processes (core.jobs), never in the server.
"""

from __future__ import annotations

import logging

import streamlit as st

from core.errors import InkscribeError
from core.settings import configure_process

configure_process(threads=1)
st.set_page_config(page_title="Inkscribe", page_icon=":material/draw:", layout="wide")

from app_pages.ui import get_store, sidebar  # noqa: E402
from core import jobs  # noqa: E402

PAGES = [
    st.Page("app_pages/upload.py", title="Upload", icon=":material/upload_file:", url_path="upload", default=True),
    st.Page("app_pages/review.py", title="Review", icon=":material/edit_note:", url_path="review"),
    st.Page("app_pages/dataset.py", title="Dataset", icon=":material/dataset:", url_path="dataset"),
    st.Page("app_pages/finetune.py", title="Fine-tune", icon=":material/model_training:", url_path="finetune"),
    st.Page("app_pages/models.py", title="Models", icon=":material/psychology:", url_path="models"),
    st.Page("app_pages/evaluate.py", title="Evaluate", icon=":material/analytics:", url_path="evaluate"),
    st.Page("app_pages/export.py", title="Export", icon=":material/download:", url_path="export"),
]

page = st.navigation(PAGES)
try:
    store = get_store()
    jobs.reconcile_jobs(store)  # a worker killed while the server was down shows up as interrupted
    sidebar(store)
    page.run()
except InkscribeError as exc:
    st.error(str(exc))
except Exception as exc:  # never a traceback in the page; the server log keeps it
    logging.getLogger("inkscribe").exception("page failed")
    st.error(f"Something went wrong: {exc}. Your work is saved; reload the page to continue.")
