"""Review: the page with numbered boxes (drag to draw one), each line's crop beside its text; type, Enter, next."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages.canvas import page_canvas
from app_pages.ui import cached_recognizer, get_store, recognizer_options
from core import review
from core.errors import InkscribeError
from core.geometry import bbox

FOCUS_JS = """<script>
const doc = window.parent.document;
function focusLine(tries) {
  const el = doc.querySelector('input[aria-label="Text of this line (Enter = confirm & next)"]');
  if (el && doc.activeElement !== el) { el.focus(); el.select(); }
  else if (!el && tries > 0) { setTimeout(() => focusLine(tries - 1), 100); }
}
focusLine(20); // line @KEY@
</script>"""

store = get_store()
st.title("Review and fix")

docs = [d for d in store.documents() if d["pages_done"]]
if not docs:
    st.info("Nothing to review yet: upload notes on the **Upload** page, then come back here.")
    st.page_link("app_pages/upload.py", label="Go to Upload", icon=":material/upload_file:")
    st.stop()

names = {d["id"]: f"{d['name']} · #{d['id']}" for d in docs}  # unique: the label goes in the URL
ids = list(names)
c1, c2, c3 = st.columns([3, 1, 2])
doc_id = c1.selectbox("Document", ids, format_func=names.get, key="doc", index=len(ids) - 1, bind="query-params")
pages = store.pages(doc_id)
if not pages:
    st.info("This document has no pages yet (still digitizing?).")
    st.stop()
page_nos = [p.page_no for p in pages]
page_no = c2.selectbox("Page", page_nos, key="page", bind="query-params")
page = next((p for p in pages if p.page_no == page_no), pages[0])
order = c3.radio("Order", ["confidence", "reading"], horizontal=True, key="order", bind="query-params",
                 format_func={"confidence": "least confident first", "reading": "reading order"}.get)
for w in page.warnings:
    st.warning(w)

queue = review.review_queue(store, page.id, order=order)
prog = review.page_progress(store, page.id)
st.caption(f"{prog['lines']} lines · {prog['confirmed']} confirmed · {prog['corrected']} corrected · {prog['new']} new")

goto_key = f"goto-{page.id}"
queue_ids = [r["id"] for r in queue]
by_id = {r["id"]: r for r in queue}


def _next_after(line_id: int) -> int | None:
    """The next unconfirmed line after this one in the current order (wrapping), else None."""
    rows = review.review_queue(get_store(), page.id, order=order)  # also called from callbacks: see _save
    ids_now = [r["id"] for r in rows]
    if line_id in ids_now:
        k = ids_now.index(line_id)
        ids_now = ids_now[k + 1:] + ids_now[:k]
    status = {r["id"]: r["status"] for r in rows}
    return next((i for i in ids_now if status[i] != "confirmed"), None)


def _save(line_id: int, key: str, seen: str, confirm: bool) -> None:
    """Form callback: runs before the page redraws, with the text the user typed."""
    text = st.session_state.get(key, seen)
    try:  # this run's store, not the one of the run that drew the form (callbacks run in the next run)
        ok = review.save_line(get_store(), line_id, text, seen, confirm=confirm)
    except InkscribeError as exc:
        st.session_state["review-flash"] = ("error", str(exc))
        return
    if not ok:
        st.session_state["review-flash"] = (
            "error", "Not saved: this line was changed elsewhere (another tab?) since you opened it. "
                     "Its current text is shown now; make your change again.")
        return
    st.session_state["review-flash"] = ("success", "Confirmed." if confirm else "Saved as corrected.")
    if confirm:
        nxt = _next_after(line_id)
        if nxt is not None:
            st.session_state[goto_key] = nxt
        else:
            st.session_state["review-flash"] = ("success", "Every line on this page is confirmed. 🎉")


def _skip(line_id: int) -> None:
    nxt = _next_after(line_id)
    if nxt is not None:
        st.session_state[goto_key] = nxt


if not queue:
    st.info("No lines were found on this page. Add a box below if there is text.")
if st.session_state.get("goto-pending") in queue_ids:
    st.session_state[goto_key] = st.session_state.pop("goto-pending")
if goto_key in st.session_state and st.session_state[goto_key] not in queue_ids:
    del st.session_state[goto_key]
# The current line lives in the URL too (?line=ID), so a reload or a shared link opens it again.
wanted = st.query_params.get("line", "")
if goto_key not in st.session_state and wanted.isdigit() and int(wanted) in queue_ids:
    st.session_state[goto_key] = int(wanted)

page_img = review.page_image(store, page.id)  # read once: the line's crop and the page view both use it
left, right = st.columns([3, 2])
current = None
with right:
    if queue:
        current_id = st.selectbox(
            "Line", queue_ids, key=goto_key,
            format_func=lambda i: f"{by_id[i]['position'] + 1} · {by_id[i]['status']} · "
                                  f"{by_id[i]['confidence']:.2f} · {by_id[i]['text'][:40]}")
        current = by_id[current_id]
        if st.query_params.get("line") != str(current_id):
            st.query_params["line"] = str(current_id)
        flash = st.session_state.pop("review-flash", None)
        if flash:
            (st.error if flash[0] == "error" else st.success)(flash[1])
        crop = review.line_crop(store, current, page_img)
        if crop is not None:
            st.image(crop, width="stretch", caption=f"line {current['position'] + 1} · {current['status']} · "
                                                     f"confidence {current['confidence']:.2f}")
        key = f"text-{current['id']}-{int(current['updated_at'] * 1000)}"
        with st.form(f"form-{current['id']}", border=True):
            st.text_input("Text of this line (Enter = confirm & next)", value=current["text"], key=key)
            b1, b2, b3 = st.columns([4, 3, 2])
            b1.form_submit_button("Confirm & next", type="primary", key="confirm",
                                  on_click=_save, args=(current["id"], key, current["text"], True))
            b2.form_submit_button("Save", key="save", help="Keep this text as corrected, without confirming it",
                                  on_click=_save, args=(current["id"], key, current["text"], False))
            b3.form_submit_button("Skip", key="skip", on_click=_skip, args=(current["id"],))
        # Keyboard flow: put the cursor in the new line's text box after each Enter (a tiny same-origin script).
        st.iframe(FOCUS_JS.replace("@KEY@", str(current["id"])), height=1, tab_index=-1)

with left:
    page_rows = store.lines(page.id)
    version = int(max((r["updated_at"] for r in page_rows), default=0) * 1000)  # a changed page clears the brush
    drawn = page_canvas(page_img, page_rows, current["id"] if current else None,
                        key=f"canvas-{page.id}-{version}-{len(page_rows)}")
    if drawn:
        st.caption("Drawn box: left {}, top {}, right {}, bottom {} (double-click the page to clear it).".format(*drawn))
        d1, d2 = st.columns(2)
        if current is not None and d1.button(f"Use it as line {current['position'] + 1}'s box", key="use-drawn"):
            review.move_box(store, current["id"], *drawn)
            st.rerun()
        if d2.button("Add it as a new line", key="add-drawn"):
            new_id = review.add_box(store, page.id, *drawn, recognizer=next(iter(recognizer_options(store).values())))
            st.session_state["goto-pending"] = new_id
            st.rerun()
    else:
        st.caption("Drag on the page to draw a box, then use it for the current line or add it as a missing line.")

if current is not None:
    with right:
        with st.expander("Re-read with another model"):
            recs = recognizer_options(store)
            choice = st.selectbox("Recognizer", list(recs), key="reread-model")
            r1, r2 = st.columns(2)
            if r1.button("Re-read this line", key="reread-line"):
                cached_recognizer(recs[choice])
                n = review.reread_lines(store, [current["id"]], recs[choice], include_done=True)
                st.toast("Line re-read." if n else "The line changed meanwhile; nothing re-read.")
                st.rerun()
            if r2.button("Re-read unchecked lines of this page", key="reread-page"):
                cached_recognizer(recs[choice])
                with st.spinner("Reading…"):
                    res = review.reread_page(store, page.id, recs[choice])
                st.toast(f"{res['changed']} lines re-read; {res['kept']} checked lines kept.")
                st.rerun()

        with st.expander("Fix the box"):
            st.caption("Or type the box in page pixels (exact and keyboard-friendly).")
            x0, y0, x1, y1 = bbox(review.line_points(current))
            sfx = f"{current['id']}-{int(current['updated_at'] * 1000)}"
            n1, n2, n3, n4 = st.columns(4)
            nx0 = n1.number_input("left", value=int(x0), step=5, key=f"x0-{sfx}")
            ny0 = n2.number_input("top", value=int(y0), step=5, key=f"y0-{sfx}")
            nx1 = n3.number_input("right", value=int(x1), step=5, key=f"x1-{sfx}")
            ny1 = n4.number_input("bottom", value=int(y1), step=5, key=f"y1-{sfx}")
            e1, e2 = st.columns(2)
            if e1.button("Apply box", key="apply-box"):
                review.move_box(store, current["id"], nx0, ny0, nx1, ny1)
                st.rerun()
            if e2.button("Delete this line", key="delete-line"):
                review.delete_box(store, current["id"])
                st.rerun()
            at = st.slider("Split at (share of the width)", 0.1, 0.9, 0.5, 0.05, key=f"split-at-{sfx}")
            s1, s2 = st.columns(2)
            if s1.button("Split in two", key="split"):
                review.split_line(store, current["id"], at)
                st.rerun()
            following = [r for r in store.lines(page.id) if r["position"] == current["position"] + 1]
            if s2.button("Merge with the next line", key="merge", disabled=not following):
                review.merge_lines(store, [current["id"], following[0]["id"]])
                st.rerun()

        with st.expander("History of this line"):
            edits = store.edits(current["id"])
            if edits:
                st.dataframe(pd.DataFrame([{"field": e["field"], "from": e["old_value"], "to": e["new_value"],
                                            "by": e["source"], "at": pd.to_datetime(e["at"], unit="s")} for e in edits]),
                             hide_index=True)
            else:
                st.caption("No edits yet.")

with st.expander("Add a missing line box"):
    a1, a2, a3, a4 = st.columns(4)
    ax0 = a1.number_input("left", 0, page.width, 0, 5, key="add-x0")
    ay0 = a2.number_input("top", 0, page.height, 0, 5, key="add-y0")
    ax1 = a3.number_input("right", 0, page.width, min(page.width, 400), 5, key="add-x1")
    ay1 = a4.number_input("bottom", 0, page.height, min(page.height, 60), 5, key="add-y1")
    add_text = st.text_input("Text (leave empty to have the active recognizer read it)", key="add-text")
    if st.button("Add box", key="add-box"):
        recs = recognizer_options(store)
        new_id = review.add_box(store, page.id, ax0, ay0, ax1, ay1, text=add_text,
                                recognizer=None if add_text else next(iter(recs.values())))
        st.session_state["goto-pending"] = new_id
        st.rerun()

with st.expander("All lines on this page"):
    st.dataframe(pd.DataFrame([{"#": r["position"] + 1, "status": r["status"], "confidence": round(r["confidence"], 2),
                                "text": r["text"]} for r in store.lines(page.id)]), hide_index=True)

nxt = review.next_to_fix(store, limit=5)
if nxt:
    st.caption("What to fix next (every page in turn, the line with the most new letter pairs for the fewest "
               "edits): " + "; ".join(f"{r['document_name']} p{r['page_no']} line {r['position'] + 1} "
                                      f"({r['confidence']:.2f})" for r in nxt))
