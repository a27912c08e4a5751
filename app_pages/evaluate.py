"""Evaluate: the base against any model on your held-out confirmed lines, line by line.

Reading every held-out line with every chosen model takes minutes, so it runs as a background
job (kind "evaluate"); this page starts it, shows its progress, and draws the latest result.
"""

from __future__ import annotations

import html
import time

import altair as alt
import pandas as pd
import streamlit as st

from app_pages.ui import default_recognizer_label, get_store, job_panel, recognizer_options
from core import dataset, jobs, review
from core.errors import InkscribeError
from core.metrics import cer, char_diff

store = get_store()
st.title("Evaluate")
held = dataset.assign_holdout(store)


def _start(specs: list[str], labels: list[str]) -> None:
    try:
        job_id = jobs.start_job(store, "evaluate", {"specs": specs, "labels": labels})
        st.toast(f"Scoring started (job {job_id})")
    except InkscribeError as exc:
        st.error(str(exc))


def _diff_html(item: dict) -> str:
    """One line: the truth with what the model missed in red, the reading with what it put instead in yellow."""
    ref, hyp = [], []
    for op, a, b in char_diff(item["reference"], item["hypothesis"]):
        a, b = html.escape(a), html.escape(b)
        if op == "equal":
            ref.append(a)
            hyp.append(b)
            continue
        if a:
            ref.append(f"<span style='background:#ffd6d6'>{a}</span>")
        if b:
            hyp.append(f"<span style='background:#ffe9a8'>{b}</span>")
    return (f"<div style='margin-bottom:6px;font-family:monospace'><small>{html.escape(str(item['document']))} "
            f"p{item['page']}</small><br>truth: {''.join(ref)}<br>model: {''.join(hyp) or '∅'}</div>")


def _show_result(job: dict) -> None:
    res = job["result"]
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(job["updated_at"]))
    st.caption(f"Job {job['id']}, finished {when}: {res['lines']} held-out lines.")
    st.dataframe(pd.DataFrame([{"model": m["label"], "CER": m["cer"], "WER": m["wer"], "exact match": m["exact"],
                                "CER (4+ chars)": m["cer_4plus"], "lines": m["lines"], "lines/s": m["lines_per_s"]}
                               for m in res["models"]]), hide_index=True)
    pick = st.selectbox("Per-line differences for", [m["label"] for m in res["models"]], key="ev-pick")
    model = next(m for m in res["models"] if m["label"] == pick)
    only_errors = st.checkbox("Only lines with errors", value=True, key="ev-errors")
    items = sorted(model["per_line"], key=lambda p: -cer([p["reference"]], [p["hypothesis"]]))
    if only_errors:
        items = [p for p in items if p["reference"].strip() != p["hypothesis"].strip()]
    st.caption("Red: characters the model missed or got wrong; yellow: what it read instead.")
    st.html("".join(_diff_html(p) for p in items[:300]) or "<p>No errors on these lines.</p>")


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
    busy = jobs.current_job(store)
    if st.button("Evaluate", type="primary", key="ev-go", disabled=not chosen or busy is not None):
        _start([recs[lab] for lab in chosen], list(chosen))
    if busy is not None and busy["kind"] != "evaluate":
        st.info(f"A {busy['kind']} job is running; scoring can start when it ends.")
    job_panel(("evaluate",), "evaluate")
    last = review.last_evaluation(store)
    if last is not None and last["result"].get("models"):
        _show_result(last)

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
