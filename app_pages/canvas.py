"""The review page's view of a page: its line boxes over the image, and a box drawn with the mouse.

An Altair chart in page-pixel coordinates: the page image underneath, one rectangle per line
(status colour, number), and an interval brush on top. Dragging on the page draws a box;
Streamlit hands its extent back on the next run (`on_select="rerun"`), so no custom
front-end component is needed.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import altair as alt
import pandas as pd
import streamlit as st
from PIL import Image

from core import review

CANVAS_WIDTH = 500  # on-screen pixels (fits the review column of a 1280-px window); the image is sent at twice that for sharp high-DPI screens
BRUSH = "drawn"
STATUS_COLOURS = {"new": "#dc3c28", "corrected": "#e69600", "confirmed": "#1e963c"}  # to check, fixed, done


def _data_url(image: Image.Image, width: int) -> str:
    scale = min(1.0, width / image.width)
    small = image.resize((round(image.width * scale), round(image.height * scale))) if scale < 1 else image
    buf = io.BytesIO()
    small.convert("RGB").save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def page_canvas(image: Image.Image, rows: Sequence, highlight: int | None, key: str) -> tuple[int, int, int, int] | None:
    """Draw the page with its boxes; return the box the user dragged (page pixels), if any."""
    w, h = image.size
    height = max(1, round(CANVAS_WIDTH * h / w))
    x_scale = alt.Scale(domain=[0, w], nice=False, zero=False)
    y_scale = alt.Scale(domain=[0, h], nice=False, zero=False, reverse=True)  # image rows grow downwards
    no_axis = {"axis": None}
    page = alt.Chart(pd.DataFrame([{"url": _data_url(image, 2 * CANVAS_WIDTH), "left": 0, "top": 0,
                                    "right": w, "bottom": h}]))
    # The image spans the page's own coordinates (x..x2, y..y2), so it follows the same scales as the boxes
    # whatever room the chart's padding takes; a fixed pixel size drifted from them.
    picture = page.mark_image(aspect=False).encode(
        x=alt.X("left:Q", scale=x_scale, **no_axis), x2="right:Q",
        y=alt.Y("top:Q", scale=y_scale, **no_axis), y2="bottom:Q", url="url:N")
    brush = alt.selection_interval(name=BRUSH, encodings=["x", "y"], clear="dblclick",
                                   mark=alt.BrushConfig(fill="#e4572e", fillOpacity=0.15, stroke="#e4572e"))
    # A see-through rectangle over the whole page carries the brush, so a box can start anywhere.
    surface = page.mark_rect(opacity=0.001).encode(
        x=alt.X("left:Q", scale=x_scale, **no_axis), x2="right:Q",
        y=alt.Y("top:Q", scale=y_scale, **no_axis), y2="bottom:Q").add_params(brush)
    corner_rows, label_rows = [], []
    for r in rows:
        pts = review.line_points(r)
        corner_rows += [{"line": r["id"], "k": k, "x": x, "y": y, "status": r["status"], "current": r["id"] == highlight}
                        for k, (x, y) in enumerate([*pts, pts[0]])]  # a closed outline
        label_rows.append({"x": min(x for x, _ in pts), "y": min(y for _, y in pts), "n": str(r["position"] + 1),
                           "status": r["status"]})
    corners = pd.DataFrame(corner_rows, columns=["line", "k", "x", "y", "status", "current"])
    labels = pd.DataFrame(label_rows, columns=["x", "y", "n", "status"])
    colour = alt.Color("status:N", scale=alt.Scale(domain=list(STATUS_COLOURS), range=list(STATUS_COLOURS.values())),
                       legend=None)
    x_page, y_page = alt.X("x:Q", scale=x_scale, **no_axis), alt.Y("y:Q", scale=y_scale, **no_axis)
    outlines = alt.Chart(corners).mark_line().encode(
        x=x_page, y=y_page, detail="line:N", order="k:Q", color=colour,
        strokeWidth=alt.condition("datum.current", alt.value(3.5), alt.value(1.5)))
    numbers = alt.Chart(labels).mark_text(align="right", baseline="top", dx=-3, fontSize=10, fontWeight="bold").encode(
        x=x_page, y=y_page, text="n:N", color=colour)
    chart = (alt.layer(picture, outlines, numbers, surface)
             .properties(width=CANVAS_WIDTH, height=height, autosize=alt.AutoSizeParams(type="pad"))
             .configure_view(strokeWidth=0))
    event = st.altair_chart(chart, on_select="rerun", selection_mode=BRUSH, key=key, width="content")
    drawn = (event.selection if event else {}).get(BRUSH) or {}
    return review.drawn_box(drawn.get("left"), drawn.get("top"), w, h)
