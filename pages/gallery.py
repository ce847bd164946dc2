"""Gallery: the session's images as a paginated thumbnail grid, filterable and sortable; an opened image side by side
across models, with previous/next."""

from __future__ import annotations

import streamlit as st

from core.config import REVIEW_VERDICTS, UNTRAINED_MARK
from core.records import models_in
from dashboard import (
    cache,
    class_thresholds,
    evaluation,
    figures,
    gallery,
    groundtruth,
    pagelist,
    runviews,
    state,
    views,
    widgets,
)
from dashboard.gallery import GT_SORT
from dashboard.text import md

REVIEW_ICON = ":material/rate_review:"

state.init()
st.title("Gallery")
rf = widgets.require_frame(live_run=True)  # the viewed records; aggregated in core.analytics, never whole in pandas
inf = rf.inferences

threshold = state.threshold()
models_all = models_in(inf)
widgets.adopt_gallery_params(models_all)
c1, c2, c3, c4 = st.columns([4, 3, 2, 2])  # the Models box wide enough for two full names
models = c1.multiselect("Models", models_all, default=models_all, key="gallery_models")
threshold = class_thresholds.thresholds_ui(models_all, threshold)  # the global float, or per-class thresholds
labels_all = runviews.label_choices(rf, threshold)
classes = c2.multiselect("Classes (all when empty)", labels_all, key="gallery_classes")
session_gt = groundtruth.session_gt()
sort_options = [*views.SORT_KEYS, *([GT_SORT] if session_gt is not None else [])]
if st.session_state.get("gallery_sort", "name") not in sort_options:
    st.session_state.pop("gallery_sort", None)
sort_by = c3.selectbox(
    "Sort by",
    sort_options,
    key="gallery_sort",
    help=f"{GT_SORT}: false positives + missed boxes at the threshold, against the Evaluate page's ground truth."
    if session_gt is not None
    else None,
)
descending = c4.toggle("Descending", value=sort_by != "name", key="gallery_desc")
f1, f2 = st.columns([3, 2])
name_filter = f1.text_input("Name contains", key="gallery_name")
verdicts = f2.multiselect("Review verdict", [*REVIEW_VERDICTS, views.NOT_REVIEWED], key="gallery_verdicts")

class_thresholds.note(threshold)
gallery.only_note()
table = gallery.image_list(rf, models, threshold, classes, sort_by, descending, name_filter, verdicts)
if table.empty:
    st.warning("No image matches these filters.")
    st.stop()

ids = table["image_id"].tolist()
names = dict(zip(table["image_id"], table["image_name"], strict=True))
refs = state.images()
untrained = views.untrained_models(inf, models)
if untrained:
    st.warning(f"{', '.join(untrained)}: {UNTRAINED_MARK}.")
st.query_params["models"] = ",".join(models)
current = gallery.opened_image(ids)
if current is None:  # the grid: one page of thumbnails kept in the store
    st.query_params.pop("image", None)
    gallery.grid(table, inf, models, refs, rf=rf, threshold=threshold, classes=classes or None)
    st.page_link(pagelist.page("pages/review.py"), label="Review this run's images (blind A/B)", icon=REVIEW_ICON)
    st.stop()

index = ids.index(current)
nav0, nav1, nav2, nav3 = st.columns([1, 1, 5, 1], vertical_alignment="bottom")
nav0.button("Back to grid", key="gallery_back", width="stretch", on_click=gallery.back_to_grid, args=(ids,))
nav1.button("Previous", disabled=index == 0, key="gallery_prev", width="stretch", on_click=gallery.step, args=(ids, -1))
nav3.button(
    "Next", disabled=index >= len(ids) - 1, key="gallery_next", width="stretch", on_click=gallery.step, args=(ids, 1)
)
st.session_state["gallery_pick"] = current
st.query_params["image"] = current
nav2.selectbox(
    f"Image {index + 1} of {len(ids)}",
    ids,
    format_func=lambda i: f"{names[i]} ({i[:8]})",
    key="gallery_pick",
    on_change=gallery.picked,
)
picked_id = current
st.subheader(md(names[picked_id]), anchor=False)

ref = refs.get(picked_id)
image = cache.full_image(picked_id, ref) if ref else None
image_det, floor = gallery.shown_boxes(rf, picked_id, threshold)  # a slice of the frame (per-class: applied)
counts = gallery.shown_counts(table, picked_id)
metric_cols = st.columns(max(len(models), 1))
for col, model in zip(metric_cols, models, strict=False):
    col.metric(model, f"{counts.get(model, 0)} boxes", help=f"score >= {threshold:.2f}")
errors = inf[(inf["image_id"] == picked_id) & (inf["error"] != "") & inf["model"].isin(models)]
for _, err in errors.drop_duplicates("model").iterrows():
    st.error(f"{err['model']}: {md(err['error'])}")

image_gt, size = gallery.image_ground_truth(inf, picked_id, names[picked_id], image)
show_gt = image_gt is not None and st.toggle(
    "Ground truth",
    key="gallery_gt",
    help="Colour the boxes by outcome against the Evaluate page's ground truth: true positives green, false "
    "positives red (the reason in the hover), missed ground-truth boxes dashed orange (IoU >= 0.5).",
)

if image is None or not image.ok:
    st.info(f"The image itself is not available for display: {md(image.error) if image else 'not in this session'}.")
elif show_gt:
    gt_info = groundtruth.session_info()
    outcomes = evaluation.image_outcomes(
        gt_info["digest"], gt_info["data"], gt_info["name"], picked_id, names[picked_id], size,
        image_det, tuple(models), floor, tuple(classes),
    )  # fmt: skip
    counts_text = "; ".join(
        f"{md(r.model)}: {r.TP} true positives, {r.FP} false positives, {r.FN} missed"
        for r in evaluation.prf_table(outcomes).itertuples(index=False)
    )
    st.caption(f"Against {md(image_gt.source or 'the ground truth')} at score ≥ {threshold:.2f}: {counts_text}.")
    fig = figures.outcome_overlay_grid(image.image, outcomes, models, untrained_models=untrained)
    st.plotly_chart(fig, key="gallery_overlay", config={"scrollZoom": True, "displaylogo": False})
else:
    if image.notes:
        st.caption("Image: " + md("; ".join(image.notes)))
    fig = figures.overlay_grid(
        image.image,
        image_det,
        models,
        threshold=floor,
        classes=classes or None,
        untrained_models=untrained,
    )
    fig = gallery.highlight_errors(fig, picked_id, models, image.image.size)  # a TIDE bin's boxes, when linked
    st.plotly_chart(fig, key="gallery_overlay", config={"scrollZoom": True, "displaylogo": False})

st.page_link(pagelist.page("pages/review.py"), label="Review this run's images (blind A/B)", icon=REVIEW_ICON)
