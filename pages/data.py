"""Data: the session's tables with filters, downloads (CSV, Parquet, COCO results), run settings, clearing."""

from __future__ import annotations

import io
import json

import streamlit as st

from core.config import UNTRAINED_MARK
from core.records import coco_results
from dashboard import state, views, widgets

state.init()
st.title("Data")
inf, det = widgets.require_results("The session is empty: run some models first.")

untrained = views.untrained_models(inf)
if untrained:
    st.warning(f"{', '.join(untrained)}: {UNTRAINED_MARK}.")

c1, c2, c3 = st.columns([2, 2, 1])
models = c1.multiselect("Models", list(dict.fromkeys(inf["model"])), key="data_models")
name = c2.text_input("Image name contains", key="data_name")
errors_only = c3.toggle("Failed only", key="data_errors")
view = inf
if models:
    view = view[view["model"].isin(models)]
if name:
    view = view[view["image_name"].str.contains(name, case=False, regex=False)]
if errors_only:
    view = view[view["error"] != ""]
det_view = det[det["image_id"].isin(view["image_id"]) & det["model"].isin(view["model"])]

st.subheader(f"Inferences ({len(view)} rows)")
st.dataframe(view, hide_index=True)
st.subheader(f"Detections ({len(det_view)} rows, every box above the score floor)")
st.dataframe(det_view, hide_index=True)


def _parquet(df) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


st.subheader("Downloads")
d1, d2, d3, d4 = st.columns(4)
d1.download_button("inferences.csv", view.to_csv(index=False), "inferences.csv", "text/csv", key="dl_inf_csv")
d2.download_button("detections.csv", det_view.to_csv(index=False), "detections.csv", "text/csv", key="dl_det_csv")
d3.download_button("inferences.parquet", _parquet(view), "inferences.parquet", key="dl_inf_pq")
d4.download_button("detections.parquet", _parquet(det_view), "detections.parquet", key="dl_det_pq")

numbering = {image_id: i + 1 for i, image_id in enumerate(sorted(view["image_id"].unique()))}
st.caption(
    "COCO results (one file per model): bbox = [x, y, w, h] in original pixels, category_id = the COCO id torchvision "
    "uses, image_id = position of the image in `image_ids.json`."
)
cols = st.columns(4)
for i, model in enumerate(dict.fromkeys(det_view["model"])):
    rows = coco_results(views.visible(det_view[det_view["model"] == model], 0.0), numbering)
    cols[i % 4].download_button(
        f"{model}.json", json.dumps(rows), f"coco_results_{model}.json", "application/json", key=f"dl_coco_{model}"
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
