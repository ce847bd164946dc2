"""Compare: model cards, then one tab at a time: speed (latency, speed versus count, published accuracy), scores and
classes, agreement without ground truth, runtimes against eager."""

from __future__ import annotations

import streamlit as st

from core.compare.agreement import has_ap, verdict
from core.config import AGREEMENT_IOU, RUNTIME_F1_OK, UNTRAINED_MARK
from core.records import models_in
from dashboard import charts, class_thresholds, figures, runtime_ap, runviews, state, tables, views, widgets
from dashboard.pagelist import page
from dashboard.text import md

state.init()
st.title("Compare")
rf = widgets.require_frame(live_run=True)  # the viewed records, aggregated where they are held (core.analytics)
inf = rf.inferences

threshold = state.threshold()
applied = class_thresholds.thresholds_ui(models_in(inf), threshold)  # or per-class
class_thresholds.note(applied)
static = runviews.compare_static(rf)  # latency charts, model card, names: built once per run
untrained = static["untrained"]
if untrained:
    st.warning(f"{', '.join(untrained)}: {UNTRAINED_MARK}. Their accuracy-related charts are meaningless.")
runtime_rows, compare_gt = runtime_ap.runtime_table(rf, threshold)
if len(runtime_rows) and runtime_rows["defect"].any():  # a defect shows whatever tab is open
    st.error(
        "An fp32 runtime gives other boxes than eager: "
        + ", ".join(md(s) for s in runtime_rows.loc[runtime_rows["defect"], "series"])
        + ". Open the Runtimes tab for the figures."
    )

st.subheader("Model cards")
card = runtime_ap.card_with_ap(static["card"], runtime_rows)
st.dataframe(
    tables.no_none(card, tables.MODEL_CARD_FORMATS), hide_index=True, column_config=tables.MODEL_CARD_CONFIG,
    column_order=[c for c in tables.MODEL_CARD_ORDER if c in card.columns]
    + [c for c in card.columns if c not in tables.MODEL_CARD_ORDER],
)  # fmt: skip

# One tab runs at a time: the page draws the charts of the open tab only, and keeps that tab for the session.
labels = list(views.COMPARE_TABS) if len(runtime_rows) else list(views.COMPARE_TABS[:-1])
speed_tab, scores_tab, agreement_tab, *runtimes_tab = widgets.lazy_tabs(labels, views.COMPARE_TAB_KEY)

if speed_tab.open:
    with speed_tab:
        st.subheader("Latency")
        c1, c2 = st.columns(2)
        charts.show(static["latency"], key="cmp_latency", where=c1)
        charts.show(static["breakdown"], key="cmp_breakdown", where=c2)
        if note := static["latency_note"]:
            st.caption(note)
        st.subheader("Speed versus detections")
        st.caption("Select a point to open that image in the Gallery.")
        event = charts.show(
            figures.speed_vs_count(inf, None, applied, table=runviews.compare_data(rf, applied)["table"]),
            key="cmp_speed",
            on_select="rerun",
            selection_mode="points",
        )  # the threshold only in its title
        if picked := views.selected_image(event):
            st.session_state[views.GALLERY_IMAGE_KEY] = picked
            st.switch_page(page("pages/gallery.py"))
        st.subheader("Published accuracy versus measured speed")
        charts.show(static["accuracy"], key="cmp_accuracy")
        st.caption(
            "Published box mAP (COCO val2017, torchvision's weights metadata; shown for default weights only) against "
            "the median latency measured here."
        )

if scores_tab.open:
    with scores_tab:
        data = runviews.compare_data(rf, applied)  # small frames: counts, class counts, score bins, count curves
        flag = bool(untrained)
        c1, c2 = st.columns(2)
        charts.show(
            figures.score_histograms(None, threshold, untrained=flag, binned=data["scores"]), key="cmp_scores",
            where=c1,
        )  # fmt: skip
        charts.show(figures.count_vs_threshold(None, inf, threshold=threshold, curves=data["curves"]),
                    key="cmp_threshold", where=c2)  # fmt: skip
        charts.show(
            figures.class_counts_chart(None, applied, untrained=flag, counts=data["classes"]), key="cmp_classes"
        )

if agreement_tab.open:
    with agreement_tab:
        models = static["models"]
        if len(models) < 2:
            st.info("Run at least two models to compare their boxes.")
        elif pair := widgets.pick_two(models, ("Model A", "Model B"), "cmp"):
            model_a, model_b = pair
            agreement = runviews.pair_agreement(rf, model_a, model_b, applied)
            metrics = views.agreement_metrics(agreement).items()
            for column, (label, (value, note)) in zip(st.columns(5), metrics, strict=True):
                column.metric(label, value, help=note)
            st.caption(f"Same-label boxes with score >= {applied:.2f} matched one to one at IoU >= {agreement.iou}.")
            pair_untrained = any(m in untrained for m in pair)
            charts.show(
                figures.agreement_figure(agreement, names=static["names"], untrained=pair_untrained),
                key="cmp_agreement",
            )

if runtimes_tab and runtimes_tab[0].open:
    with runtimes_tab[0]:
        with_gt = has_ap(runtime_rows)
        table = runtime_rows.assign(verdict=[verdict(r) for r in runtime_rows.to_dict("records")])
        st.dataframe(
            table[["series", "reference", "runtime", "precision", "images", "boxes", "share_f1_ok", "mean_iou",
                   "max_score_diff", "defect", *(runtime_ap.AP_COLUMNS if with_gt else ()), "verdict"]],
            hide_index=True,
        )  # fmt: skip
        st.caption(
            f"Per image, same-label boxes matched one to one at IoU >= {AGREEMENT_IOU} against the eager series of the "
            f"same weights (score >= {threshold:.2f}); share_f1_ok: images with match F1 >= {RUNTIME_F1_OK}. An fp32 "
            "variant below that is a defect; bf16/fp16 show their measured loss. "
            + (
                f"ap, ap_eager: COCO AP against {md(compare_gt.name)} on the images both processed; "
                "ap_diff = ap - ap_eager."
                if with_gt
                else "No ground truth for these images, so no AP: load one on the Evaluate page."
            )
        )
