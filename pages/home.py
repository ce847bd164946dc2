"""Home: what DetLens is, the bundled gallery and the available detectors."""

from __future__ import annotations

import streamlit as st

from dashboard import cache, state, tables

state.init()
st.title("DetLens")
st.markdown(
    "Compare object detectors on **your own images**: accuracy and speed side by side. "
    "Faster R-CNN ResNet50-FPN (two-stage, precise) and SSDLite320 MobileNetV3-Large (single-shot, made for edge "
    "devices) are the headline pair; every torchvision detector is available."
)

st.subheader("Bundled gallery")
photos = cache.gallery()
cols = st.columns(min(len(photos), 6) or 1)
for i, (name, data) in enumerate(photos):
    cols[i % len(cols)].image(data, caption=name, width="stretch")
st.caption("Public-domain and CC0 photographs from scikit-image's data set: see gallery/LICENSE.md.")

st.subheader("Detectors")
models = cache.model_table()
st.dataframe(models, hide_index=True, column_config=tables.MODEL_TABLE_CONFIG,
             column_order=tables.order(models.columns, tables.MODEL_TABLE_ORDER))  # fmt: skip
st.caption(
    "Published figures come from torchvision's weights metadata (COCO val2017). Default weights download once into "
    "the torch hub cache; without them, choose untrained weights for smoke tests and latency studies."
)
