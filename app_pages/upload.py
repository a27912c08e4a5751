"""Upload: PDFs and images in, a digitize job out; files are saved the moment they arrive."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages.ui import detector_options, get_store, job_panel, recognizer_options
from core import jobs
from core.errors import InkscribeError
from core.ingest import inspect_source

store = get_store()
st.title("Upload notes")
st.caption("PDFs, PNG, JPEG or TIFF — several at once. Files are kept as soon as they arrive, "
           "so a reload does not lose them.")

# A fresh uploader after Digitize/Discard, so files already handled are not saved again.
up_key = f"uploader-{st.session_state.get('upload-round', 0)}"
files = st.file_uploader("Notes to digitize", type=["pdf", "png", "jpg", "jpeg", "tif", "tiff"],
                         accept_multiple_files=True, key=up_key)
for f in files or []:
    path = jobs.save_upload(f.name, f.getvalue())
    try:
        inspect_source(path)
    except InkscribeError as exc:
        path.unlink(missing_ok=True)
        st.error(f"{f.name}: {exc}")

active = jobs.current_job(store)
busy_files = set(active["params"].get("files", [])) if active and active["kind"] == "digitize" else set()
pending = [p for p in jobs.pending_uploads(store) if str(p) not in busy_files]

if pending:
    st.subheader(f"Ready to digitize: {len(pending)} file{'s' if len(pending) != 1 else ''}")
    st.write(", ".join(jobs.upload_display_name(p) for p in pending))
    dets, recs = detector_options(store), recognizer_options(store)
    c1, c2 = st.columns(2)
    det = c1.selectbox("Line finder", list(dets), key="up-detector", help="The active or best shipped one is first.")
    rec = c2.selectbox("Recognizer", list(recs), key="up-recognizer", help="The active model is first.")
    b1, b2 = st.columns([1, 4])
    if b1.button("Digitize", type="primary", key="digitize", disabled=active is not None):
        try:
            job_id = jobs.start_job(store, "digitize", {
                "files": [str(p) for p in pending], "names": [jobs.upload_display_name(p) for p in pending],
                "detector": dets[det], "recognizer": recs[rec]})
            st.toast(f"Digitizing started (job {job_id})")
            st.session_state["upload-round"] = st.session_state.get("upload-round", 0) + 1
            st.rerun()
        except InkscribeError as exc:
            st.error(str(exc))
    if b2.button("Discard these files", key="discard"):
        for p in pending:
            p.unlink(missing_ok=True)
        st.session_state["upload-round"] = st.session_state.get("upload-round", 0) + 1
        st.rerun()
    if active is not None:
        st.info("Another job is running; digitizing can start when it ends.")
elif not files and not store.documents():
    st.info("Drop your notes above to begin. Then check the lines on the **Review** page.")

job_panel(("digitize",), "upload")

docs = store.documents()
if docs:
    st.subheader("Your documents")
    st.dataframe(pd.DataFrame([{
        "document": d["name"], "pages": f"{d['pages_done']}/{d['page_count']}", "lines": d["line_count"],
        "confirmed": d["confirmed_count"], "status": d["status"]} for d in docs]), hide_index=True, width="stretch")
    st.page_link("app_pages/review.py", label="Review and fix lines →", icon=":material/edit_note:")

    def _delete(doc_id: int, name: str) -> None:
        get_store().delete_document(doc_id)  # a callback runs in the next script run: its own connection
        st.session_state["del-sure"] = False  # the next document needs its own confirmation
        st.toast(f"Deleted {name}")

    with st.expander("Delete a document"):
        by_label = {f"{d['name']} (#{d['id']})": d for d in docs}
        doc = by_label[st.selectbox("Document", list(by_label), key="del-doc")]
        st.caption(f"Its pages, its text and its {doc['confirmed_count']} confirmed lines go: they leave your "
                   "dataset (models already trained keep what they learned). Download the text on the "
                   "Export page first if you want to keep it.")
        sure = st.checkbox("Yes, delete this document and everything in it", key="del-sure")
        st.button("Delete document", key="del-go", disabled=not sure or active is not None,
                  on_click=_delete, args=(doc["id"], doc["name"]),
                  help="Waits for the running job to end." if active is not None else None)
