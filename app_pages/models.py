"""Models: what each model learned from and how well it reads; activate, rename, delete, roll back; move models
between machines as zips (built only when the download button is pressed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import streamlit as st

from app_pages.ui import clean_model_leftovers, get_store, model_label, recognizer_options
from core import jobs
from core.errors import InkscribeError
from core.model_transfer import import_model_upload, zip_builder
from core.settings import get_settings

store = get_store()
st.title("Models")
clean_model_leftovers()  # half-written folders of a crashed save (never a live writer's)

for kind, title in (("recognizer", "Recognizers"), ("detector", "Line finders")):
    st.subheader(title)
    st.caption(f"Active: **{model_label(store, kind)}**")
    rows = store.models(kind)
    if not rows:
        st.info("Only the shipped default so far." + (" Fine-tune on the **Fine-tune** page to make your own."
                                                        if kind == "recognizer" else ""))
        continue
    if store.active_model(kind) is not None and st.button("Roll back to the default", key=f"rollback-{kind}"):
        store.activate_model(kind, None)
        st.rerun()
    table = []
    for m in rows:
        metrics, trained = json.loads(m["metrics"]), json.loads(m["trained_on"])
        table.append({"id": m["id"], "name": m["name"], "active": bool(m["active"]),
                      "trained on": f"{trained.get('lines', '?')} lines, {len(trained.get('documents', []))} docs",
                      "held-out CER": metrics.get("holdout_cer"), "base CER": metrics.get("base_holdout_cer"),
                      "val CER": metrics.get("val_cer", metrics.get("best_val_cer")),
                      **({"held-out F1": metrics.get("held_out_f1")} if kind == "detector" else {}),
                      "created": pd.to_datetime(m["created_at"], unit="s").strftime("%Y-%m-%d %H:%M"),
                      "on disk": Path(m["path"]).exists()})
    st.dataframe(pd.DataFrame(table), hide_index=True)
    for m in rows:
        with st.expander(f"{m['name']} (#{m['id']}){' — active' if m['active'] else ''}"):
            st.json({"path": m["path"], "engine": m["engine"], "base": m["base"],
                     "trained_on": json.loads(m["trained_on"]), "metrics": json.loads(m["metrics"])}, expanded=False)
            c1, c2, c3, c4 = st.columns(4)
            on_disk = Path(m["path"]).exists()
            c4.download_button("Export as zip", zip_builder(store.home, m["id"]), file_name=f"{Path(m['path']).name}.zip",
                               mime="application/zip", key=f"export-{m['id']}", on_click="ignore", disabled=not on_disk,
                               help="The model folder (manifest and weights) with its name and scores, to import "
                                    "on another machine")
            if not m["active"] and c1.button("Activate", key=f"activate-{m['id']}", disabled=not on_disk):
                store.activate_model(kind, m["id"])
                st.rerun()
            new_name = c2.text_input("Name", value=m["name"], key=f"name-{m['id']}")
            if new_name.strip() and new_name.strip() != m["name"] and c2.button("Rename", key=f"rename-{m['id']}"):
                store.rename_model(m["id"], new_name.strip())
                st.rerun()
            sure = c3.checkbox("I am sure", key=f"sure-{m['id']}")
            if c3.button("Delete", key=f"delete-{m['id']}", disabled=not sure):
                path = store.delete_model(m["id"])
                root = get_settings().models_dir.resolve()
                if path is not None and root in path.resolve().parents:
                    shutil.rmtree(path, ignore_errors=True)
                    shutil.rmtree(path.parent / f"{path.name}.work", ignore_errors=True)  # training checkpoint
                st.rerun()

st.subheader("Import a model")
st.caption("A zip from **Export as zip** (or `inkscribe models export`) on this or another machine. Only Inkscribe's "
           "manifest with safetensors, JSON and text files (a .pt only as a line finder's YOLO weights) is accepted; "
           "the model is saved as a new version, never over another, loaded once to check it, and listed here, "
           "not active.")
if "model-imported" in st.session_state:
    st.success(st.session_state.pop("model-imported"))
model_zip = st.file_uploader("Model zip", type=["zip"], key="model-import")
if model_zip is not None and st.button("Import", key="model-import-go"):
    try:
        with st.spinner("Checking the model and loading it once…"):
            got = import_model_upload(store, model_zip.name, model_zip.getvalue())
        st.session_state["model-imported"] = (f"Imported the {got['kind']} **{got['name']}** (#{got['model_id']}); "
                                              "activate it above to use it.")
        st.rerun()
    except InkscribeError as exc:
        st.error(str(exc))

st.subheader("Re-transcribe a document")
docs = [d for d in store.documents() if d["pages_done"]]
if not docs:
    st.info("No documents yet: upload notes on the **Upload** page.")
else:
    st.caption("Reads the document again with another model. Lines you corrected or confirmed are never touched.")
    names = {d["id"]: d["name"] for d in docs}
    doc_id = st.selectbox("Document", list(names), format_func=names.get, key="rt-doc")
    recs = recognizer_options(store)
    rec = st.selectbox("Recognizer", list(recs), key="rt-model")
    redetect = st.checkbox("Find the lines again too (new boxes around checked lines are dropped)", key="rt-redetect")
    if st.button("Re-transcribe", key="rt-go"):
        try:
            job_id = jobs.start_job(store, "retranscribe", {"document_id": doc_id, "recognizer": recs[rec],
                                                             "redetect": bool(redetect)})
            st.toast(f"Re-transcribing (job {job_id})")
        except InkscribeError as exc:
            st.error(str(exc))
    from app_pages.ui import job_panel

    job_panel(("retranscribe",), "models")
