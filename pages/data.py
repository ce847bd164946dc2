"""Data: the session's tables with filters, downloads (CSV, Parquet, COCO results), run settings, clearing."""

from __future__ import annotations

import json

import streamlit as st

from core.config import UNTRAINED_MARK
from core.records import models_in
from dashboard import runviews, state, tables, views, widgets

state.init()
st.title("Data")
rf = widgets.require_frame("The session is empty: run some models first.")
inf = rf.inferences

untrained = views.untrained_models(inf)
if untrained:
    st.warning(f"{', '.join(untrained)}: {UNTRAINED_MARK}.")

c1, c2, c3 = st.columns([2, 2, 1])
models = c1.multiselect("Models", models_in(inf), key="data_models")
name = c2.text_input("Image name contains", key="data_name")
errors_only = c3.toggle("Failed only", key="data_errors")
view, boxes = runviews.data_filter(rf, models, name, errors_only)  # filters evaluated on the frame


def table_page(label: str, n_rows: int, key: str) -> int:
    """A page number input when the rows need more than one page; the page to show."""
    pages = max(1, -(-n_rows // PAGE_ROWS))
    st.subheader(f"{label} ({n_rows} rows{', every box above the score floor' if key == 'det' else ''})")
    return int(st.number_input(f"Page of {PAGE_ROWS} rows", 1, pages, 1, key=f"data_page_{key}")) if pages > 1 else 1


PAGE_ROWS = 500  # rows sent to the browser per table: a page, never a multi-million-row table
page = table_page("Inferences", len(view), "inf")
shown = view.iloc[(page - 1) * PAGE_ROWS : page * PAGE_ROWS]
st.dataframe(shown, hide_index=True, column_config=tables.INFERENCE_CONFIG,
             column_order=tables.order(shown.columns, tables.INFERENCE_ORDER))  # fmt: skip
page = table_page("Detections", len(boxes), "det")
shown = runviews.detection_page(rf, boxes, page, PAGE_ROWS)
st.dataframe(shown, hide_index=True, column_config=tables.DETECTION_CONFIG,
             column_order=tables.order(shown.columns, tables.DETECTION_ORDER))  # fmt: skip

st.subheader("Downloads")
st.caption("Files are written when you click, chunk by chunk, whatever the size of the run.")
d1, d2, d3, d4 = st.columns(4)
d1.download_button("inferences.csv", view.to_csv(index=False), "inferences.csv", "text/csv", key="dl_inf_csv")
d2.download_button("detections.csv", runviews.csv_export(rf, boxes), "detections.csv", "text/csv", key="dl_det_csv")
d3.download_button("inferences.parquet", view.to_parquet(index=False), "inferences.parquet", key="dl_inf_pq")
d4.download_button("detections.parquet", runviews.parquet_export(rf, boxes), "detections.parquet", key="dl_det_pq")

numbering = {image_id: i + 1 for i, image_id in enumerate(sorted(view["image_id"].unique()))}
st.caption(
    "COCO results (one file per model): bbox = [x, y, w, h] in original pixels, category_id = the COCO id torchvision "
    "uses, image_id = position of the image in `image_ids.json`."
)
cols = st.columns(4)
for i, model in enumerate(runviews.models_with_boxes(rf, boxes)):
    cols[i % 4].download_button(
        f"{model}.json",
        runviews.coco_export(rf, boxes, model, numbering),
        f"coco_results_{model}.json",
        "application/json",
        key=f"dl_coco_{model}",
    )
names = dict(zip(view["image_id"], view["image_name"], strict=False))
image_ids = [{"id": n, "image_id": i, "file_name": names.get(i, "")} for i, n in numbering.items()]
st.download_button("image_ids.json", json.dumps(image_ids, indent=1), "image_ids.json", key="dl_coco_ids")

st.subheader("Runs: settings and environment")
for info in reversed(state.runs()):
    with st.expander(f"Run {info.run_id} ({info.created_at})"):
        st.json({"settings": info.settings, "environment": info.environment})

st.subheader("Clear")
if st.button("Clear the session", type="secondary", key="data_clear"):
    state.clear()
    st.rerun()
