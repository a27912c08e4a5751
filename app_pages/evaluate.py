"""Evaluate: the base against any model on your held-out confirmed lines, line by line."""

from __future__ import annotations

import html

import altair as alt
import pandas as pd
import streamlit as st

from app_pages.ui import cached_recognizer, default_recognizer_label, get_store, recognizer_options
from core import dataset, review
from core.metrics import cer, char_diff

store = get_store()
st.title("Evaluate")
held = dataset.assign_holdout(store)
if not held["holdout"]:
    st.info("No held-out lines yet. About 10 % of your confirmed lines (whole pages) are kept aside to score models; "
            "that starts once you have confirmed at least 10 lines on 3 or more pages (Review page).")
else:
    st.caption(f"{held['holdout']} held-out confirmed lines on {held['holdout_pages']} page(s); "
               "no model ever trains on them.")
    recs = recognizer_options(store)
    labels = list(recs)
    default = [default_recognizer_label()] + [lab for lab in labels if lab.endswith("(active)")]
    chosen = st.multiselect("Models to compare", labels, default=[d for d in default if d in labels], key="ev-models")
    if st.button("Evaluate", type="primary", key="ev-go", disabled=not chosen):
        with st.spinner("Reading the held-out lines…"):
            for lab in chosen:
                cached_recognizer(recs[lab])
            res = review.compare_on_holdout(store, [recs[lab] for lab in chosen], keep_lines=True)
        for lab, m in zip(chosen, res["models"], strict=True):
            m["label"] = lab
        st.session_state["ev-result"] = res
    res = st.session_state.get("ev-result")
    if res and res["models"]:
        st.dataframe(pd.DataFrame([{"model": m["label"], "CER": m["cer"], "WER": m["wer"], "exact match": m["exact"],
                                    "CER (4+ chars)": m["cer_4plus"], "lines": m["lines"], "lines/s": m["lines_per_s"]}
                                   for m in res["models"]]), hide_index=True)
        pick = st.selectbox("Per-line differences for", [m["label"] for m in res["models"]], key="ev-pick")
        model = next(m for m in res["models"] if m["label"] == pick)
        only_errors = st.checkbox("Only lines with errors", value=True, key="ev-errors")
        items = sorted(model["per_line"], key=lambda p: -cer([p["reference"]], [p["hypothesis"]]))
        parts = []
        for p in items:
            if only_errors and p["reference"].strip() == p["hypothesis"].strip():
                continue
            ref, hyp = [], []
            for op, a, b in char_diff(p["reference"], p["hypothesis"]):
                a, b = html.escape(a), html.escape(b)
                if op == "equal":
                    ref.append(a)
                    hyp.append(b)
                else:
                    if a:
                        ref.append(f"<span style='background:#ffd6d6'>{a}</span>")
                    if b:
                        hyp.append(f"<span style='background:#ffe9a8'>{b}</span>")
            parts.append(f"<div style='margin-bottom:6px;font-family:monospace'><small>{html.escape(p['document'])} "
                         f"p{p['page']}</small><br>truth: {''.join(ref)}<br>model: {''.join(hyp) or '∅'}</div>")
        st.caption("Red: characters the model missed or got wrong; yellow: what it read instead.")
        st.html("".join(parts[:300]) or "<p>No errors on these lines.</p>")

st.subheader("Learning curve")
curve = review.learning_curve(store)
if not curve:
    st.info("Each fine-tune adds a point here (lines learned from → held-out error). Run one on the Fine-tune page.")
else:
    df = pd.DataFrame(curve)
    long = df.melt(id_vars=["lines", "model"], value_vars=["cer", "forecast_cer"], var_name="series", value_name="CER")
    long["series"] = long["series"].map({"cer": "actual (held-out)", "forecast_cer": "forecast"})
    chart = alt.Chart(long.dropna(subset=["CER"])).mark_line(point=True).encode(
        x=alt.X("lines:Q", title="confirmed lines learned from"), y=alt.Y("CER:Q", title="character error rate"),
        color="series:N", tooltip=["model", "lines", "series", "CER"])
    st.altair_chart(chart, height=260)
    st.dataframe(df.rename(columns={"cer": "actual CER", "forecast_cer": "forecast CER", "base_cer": "base CER"}),
                 hide_index=True)
    t = dataset.stats(store)["totals"]
    fc = review.forecast(store, t["train"] + 200)
    st.caption(fc["message"] + ("" if fc["ok"] else "."))
