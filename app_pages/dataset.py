"""Dataset: the confirmed lines that teach the recognizer your hand; import and export them."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages.ui import get_store
from core import dataset, review
from core.errors import InkscribeError

store = get_store()
st.title("Your dataset")
held = dataset.assign_holdout(store)
info = dataset.stats(store)
t = info["totals"]
c = st.columns(5)
c[0].metric("Confirmed lines", t["confirmed"])
c[1].metric("For training", t["train"])
c[2].metric("Held out (for scoring)", t["holdout"])
c[3].metric("Words", t["words"])
c[4].metric("Characters", t["characters"])

if not t["confirmed"]:
    st.info("No confirmed lines yet. Confirm lines on the **Review** page (type the right text, press Enter), "
            "or import a labelled dataset below.")
else:
    st.caption(f"About 10 % of confirmed lines, as whole pages, are held out to score models fairly "
               f"({held['holdout_pages']} page(s) now; it needs confirmed lines on 3+ pages).")
    st.subheader("Per document")
    st.dataframe(pd.DataFrame(info["documents"]).drop(columns=["document_id"]), hide_index=True)
    st.subheader("Browse")
    f1, f2, f3 = st.columns([2, 2, 1])
    query = f1.text_input("Filter by text", key="ds-filter")
    doc_names = sorted({d["document"] for d in info["documents"]})
    docs = f2.multiselect("Documents", doc_names, key="ds-docs")
    part = f3.selectbox("Part", ["all", "training", "held out"], key="ds-part")
    rows = store.confirmed_lines()
    shown = [r for r in rows if (not query or query.lower() in r["text"].lower())
             and (not docs or r["document_name"] in docs)
             and (part == "all" or bool(r["holdout"]) == (part == "held out"))]
    st.dataframe(pd.DataFrame([{"document": r["document_name"], "page": r["page_no"], "line": r["position"] + 1,
                                "text": r["text"], "held out": bool(r["holdout"])} for r in shown[:2000]]),
                 hide_index=True)
    st.caption(f"{len(shown)} of {len(rows)} confirmed lines shown" + (" (first 2000)" if len(shown) > 2000 else ""))

nxt = review.next_to_fix(store, limit=10)
if nxt:
    st.subheader("What to fix next")
    st.caption("Unchecked lines in the order that teaches the model most per correction: every page in turn, from "
               "each the line of real text with the most letter pairs not yet in your checked lines, weighed by "
               "how sure its reading is so that it needs few edits (marks and single signs last). Measured "
               "against least-sure-first and whole pages in docs/decisions/0012 and 0013.")
    st.dataframe(pd.DataFrame([{"document": r["document_name"], "page": r["page_no"], "line": r["position"] + 1,
                                "confidence": round(r["confidence"], 2), "text": r["text"]} for r in nxt]),
                 hide_index=True)

st.subheader("Import labelled lines")
st.caption("A zip of PAGE-XML or ALTO files with their page images (as Transkribus or eScriptorium export them, or "
           "Inkscribe's own exports), a searchable PDF Inkscribe wrote (other PDFs are digitized on the **Upload** "
           "page), or a zip of `labels.jsonl` (pages with line boxes), PPOCRLabel `Label.txt` or "
           "`rec_gt.txt` + `crop_img/`, a Hugging Face imagefolder or a CSV `image,text`, with its images. Lines come "
           "in confirmed, in new documents; line crops become pages of their own.")
up = st.file_uploader("Dataset zip (or one PAGE/ALTO/labels file, or an Inkscribe PDF)",
                      type=["zip", "xml", "jsonl", "csv", "txt", "pdf"], key="ds-import")
if up is not None and st.button("Import", key="ds-import-go"):
    from core.interchange import import_upload

    try:
        res = import_upload(store, up.name, up.getvalue())
        skipped = "\n".join(f"- {s['item']}: {s['reason']}" for s in res.skipped[:20])
        if res.documents:
            st.success(f"Imported {res.lines} lines on {res.pages} pages in {res.documents} document(s).")
            if res.skipped:
                st.warning(f"{len(res.skipped)} bad rows or files were skipped:\n\n{skipped}")
        else:
            st.error(f"Nothing was imported from {up.name}." + (f" Skipped:\n\n{skipped}" if skipped else ""))
    except InkscribeError as exc:
        st.error(str(exc))

if t["confirmed"]:
    st.subheader("Export the dataset")
    fmt = st.radio("Format", ["imagefolder", "ppocr"], horizontal=True, key="ds-fmt",
                   format_func={"imagefolder": "Hugging Face imagefolder (metadata.jsonl)", "ppocr": "PPOCRLabel"}.get)
    if st.button("Prepare zip", key="ds-export"):
        st.session_state["ds-zip"] = (fmt, dataset.export_zip(store, fmt))
    if "ds-zip" in st.session_state:
        zfmt, data = st.session_state["ds-zip"]
        st.download_button(f"Download {zfmt} zip ({len(data) // 1024} KB)", data, file_name=f"inkscribe-{zfmt}.zip",
                           mime="application/zip", key="ds-download")
