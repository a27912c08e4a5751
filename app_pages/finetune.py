"""Fine-tune: one button turns your confirmed lines into a new recognizer (in a background job)."""

from __future__ import annotations

import streamlit as st

from app_pages.ui import detector_options, get_store, job_panel, recognizer_options
from core import dataset, jobs, review
from core.errors import InkscribeError
from core.finetune import self_training_helps

store = get_store()
st.title("Fine-tune on your handwriting")
dataset.assign_holdout(store)
t = dataset.stats(store)["totals"]
active = jobs.current_job(store)

st.markdown(f"**{t['train']}** confirmed lines to learn from, **{t['holdout']}** held out to score the result.")
if not t["confirmed"]:
    st.info("Confirm some lines on the **Review** page first: the model learns from lines you checked.")
fc = review.forecast(store, t["train"])
more = st.number_input("Forecast: with this many more confirmed lines", 0, 100_000, 200, 50, key="ft-more")
fm = review.forecast(store, t["train"] + int(more))
st.caption(f"Now: {fc['message']}. With {int(more)} more: {fm['message']}." if fc["ok"] else fc["message"] + ".")
st.caption("What the order of corrections buys, measured on one writer's notes (docs/decisions/0013): 250 lines "
           "taken from **what to fix next** (Dataset page) plus self-training read new pages at 7.2 % character "
           "error (its first 125 lines: 7.6 %; 100 lines: 8.0 %), against 11.1 % for the first 250 lines of "
           "the first pages alone (8.5–9.3 % with self-training) and 6.5 % with all 3,284 lines: a first "
           "fine-tune pays early. "
           "Whole pages picked at random teach about as much per character you type, for about twice the lines.")

with st.form("ft-recognizer"):
    st.subheader("Recognizer")
    recs = recognizer_options(store)
    base = st.selectbox("Start from", list(recs), key="ft-base", help="The active model is first; the base is never changed.")
    minutes = st.number_input("Time budget (minutes)", 0.1, 240.0, 15.0, 1.0, key="ft-minutes",
                              help="The whole fine-tune (loading, training, choosing the decoder) takes about this long; "
                                   "it keeps the best model so far. Give it a few minutes at least.")
    pool = dataset.pool_size(store)
    self_train = st.checkbox(
        "Also learn from your unchecked lines (self-training)", self_training_helps(t["train"], pool), key="ft-self-train",
        help=f"A first model reads your {pool} unchecked lines outside the held-out pages; its most confident readings "
             "join your confirmed lines for the rest of the time budget (their texts as shown are never used). On by "
             "default when there are enough of them to help. Like every fine-tune, the result is never made active if "
             "it reads your held-out lines worse.")
    with st.expander("Advanced"):
        limit = st.number_input("Use at most this many lines (0 = all)", 0, 1_000_000, 0, 100, key="ft-limit")
    go = st.form_submit_button("Fine-tune", type="primary", disabled=active is not None or not t["train"])
if go:
    try:
        params = {"base": recs[base], "max_minutes": float(minutes), "self_train": bool(self_train)}
        if limit:
            params["limit_lines"] = int(limit)
        job_id = jobs.start_job(store, "train-recognizer", params)
        st.toast(f"Fine-tuning started (job {job_id})")
    except InkscribeError as exc:
        st.error(str(exc))
if active is not None and active["kind"] not in ("train-recognizer", "train-detector"):
    st.info(f"A {active['kind']} job is running; fine-tuning can start when it ends.")

job_panel(("train-recognizer", "train-detector"), "finetune")

with st.expander("Line finder (detector)"):
    complete = len(store.complete_page_ids())
    st.write(f"{complete} page(s) have every line confirmed; the line finder learns from those.")
    dets = detector_options(store)
    dbase = st.selectbox("Start from", list(dets), key="ft-dbase")
    dmin = st.number_input("Time budget (minutes)", 0.1, 240.0, 15.0, 1.0, key="ft-dminutes")
    dact = st.checkbox("Make it the active line finder when done", key="ft-dactivate")
    if st.button("Fine-tune the line finder", key="ft-detector", disabled=active is not None or not complete):
        try:
            job_id = jobs.start_job(store, "train-detector", {"base": dets[dbase], "max_minutes": float(dmin),
                                                               "activate": bool(dact)})
            st.toast(f"Line-finder fine-tuning started (job {job_id})")
            st.rerun()
        except InkscribeError as exc:
            st.error(str(exc))
