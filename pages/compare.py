"""Compare: latency, scores, speed versus count, classes, agreement without ground truth, model cards."""

from __future__ import annotations

import streamlit as st

from core.config import UNTRAINED_MARK
from core.matching import compare_models
from dashboard import cache, figures, state, views, widgets
from dashboard.pagelist import page

state.init()
st.title("Compare")
inf, det = widgets.require_results()

threshold = state.threshold()
untrained = views.untrained_models(inf)
if untrained:
    st.warning(f"{', '.join(untrained)}: {UNTRAINED_MARK}. Their accuracy-related charts are meaningless.")
latest = views.visible(det, 0.0)  # every box of the latest run per (image, model); charts apply the threshold

st.subheader("Latency")
c1, c2 = st.columns(2)
c1.plotly_chart(figures.latency_box(inf), key="cmp_latency")
c2.plotly_chart(figures.latency_breakdown(inf), key="cmp_breakdown")

st.subheader("Speed versus detections")
st.caption("Select a point to open that image in the Gallery.")
event = st.plotly_chart(
    figures.speed_vs_count(inf, latest, threshold),
    key="cmp_speed",
    on_select="rerun",
    selection_mode="points",
)
picked = views.selected_image(event)
if picked:
    st.session_state[views.GALLERY_IMAGE_KEY] = picked
    st.switch_page(page("pages/gallery.py"))

st.subheader("Scores and classes")
c1, c2 = st.columns(2)
flag = bool(untrained)
c1.plotly_chart(figures.score_histograms(latest, threshold, untrained=flag), key="cmp_scores")
c2.plotly_chart(figures.count_vs_threshold(latest, inf, threshold=threshold), key="cmp_threshold")
st.plotly_chart(figures.class_counts(latest, threshold, untrained=flag), key="cmp_classes")

st.subheader("Agreement without ground truth")
models = list(dict.fromkeys(inf["model"]))
if len(models) < 2:
    st.info("Run at least two models to compare their boxes.")
else:
    a_col, b_col = st.columns(2)
    model_a = a_col.selectbox("Model A", models, index=0, key="cmp_a")
    model_b = b_col.selectbox("Model B", models, index=1, key="cmp_b")
    if model_a == model_b:
        st.info("Choose two different models.")
    else:
        ok = inf[inf["error"] == ""]
        both_ran = set(ok.loc[ok["model"] == model_a, "image_id"]) & set(ok.loc[ok["model"] == model_b, "image_id"])
        agreement = compare_models(latest, model_a, model_b, threshold=threshold, image_ids=sorted(both_ran))
        m1, m2, m3, m4, m5 = st.columns(5)
        m1.metric("Both", agreement.both)
        m2.metric(f"Only {model_a}", agreement.only_a)
        m3.metric(f"Only {model_b}", agreement.only_b)
        m4.metric("Agreement", "n/a" if agreement.agreement != agreement.agreement else f"{agreement.agreement:.0%}")
        m5.metric(
            "Mean IoU of matches", "n/a" if agreement.mean_iou != agreement.mean_iou else f"{agreement.mean_iou:.2f}"
        )
        st.caption(f"Same-label boxes with score >= {threshold:.2f} matched one to one at IoU >= {agreement.iou}.")
        names = dict(zip(inf["image_id"], inf["image_name"], strict=False))
        pair_untrained = any(m in untrained for m in (model_a, model_b))
        st.plotly_chart(figures.agreement_figure(agreement, names=names, untrained=pair_untrained), key="cmp_agreement")

st.subheader("Model cards")
card = figures.model_card(inf, cache.model_table())
st.dataframe(card, hide_index=True)
st.plotly_chart(figures.accuracy_vs_speed(card), key="cmp_accuracy")
st.caption(
    "Published box mAP (COCO val2017, torchvision's weights metadata; shown for default weights only) against the "
    "median latency measured here."
)
