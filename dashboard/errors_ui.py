"""The Evaluate page's "Errors and decisions" section: one analysis at a time (TIDE errors, confusion matrix, slices
and worst images, is the difference real, calibration, operating points), each linked into the Gallery.

`*_ui` functions draw widgets and render; the figures come from dashboard.figures.errors, the figures' data from
dashboard.errors (cached)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.config import AUTO_ANALYSIS_MAX_BOXES, BOOTSTRAP_RESAMPLES, MAX_F1, TARGET_PRECISION
from core.evaluate.errors import ERROR_NAMES, MAIN_ERRORS
from core.evaluate.operating import thresholds_json
from core.evaluate.series import SeriesError
from dashboard import errors as E
from dashboard import tables
from dashboard.figures import errors as F
from dashboard.pagelist import page
from dashboard.text import md

VIEWS = ("Errors (TIDE)", "Confusion matrix", "Slices and worst images", "Is the difference real?", "Calibration",
         "Operating points")  # fmt: skip
GALLERY_ICON = ":material/photo_library:"
# TIDE's AP50 and dAP are AP points (0-100); every other figure a rate, with three decimals (tables.formatted)
POINTS = {"AP50": tables.POINTS, **{n: tables.POINTS for n in ERROR_NAMES.values()}}


def _figures_table(df: pd.DataFrame, formats: dict[str, str] | None = None, where=st) -> None:  # noqa: ANN001
    """A table of figures: every number formatted (tables.formatted), an undefined one shown as tables.NA."""
    where.dataframe(df, hide_index=True, column_config=tables.formatted(df, formats), placeholder=tables.NA)


def _gallery_link(ss, image_ids: list[int], label: str, extra: dict[str, str] | None = None) -> None:  # noqa: ANN001
    params = E.gallery_params(ss, image_ids, extra)
    if params is None:
        st.caption(f"{label}: no image of this view to open.")
        return
    n = len(params["images"].split(","))
    st.page_link(page("pages/gallery.py"), label=f"{label} ({n} images) in the Gallery", icon=GALLERY_ICON,
                 query_params=params)  # fmt: skip


def section(key: str, data: bytes, name: str, threshold: float, untrained: list[str]) -> None:
    """The whole section (a no-op with a note when no series has ground truth)."""
    st.subheader("Errors and decisions")
    try:
        ss = E.series_view(key, data, name)
    except SeriesError as exc:
        st.info(f"No error analysis: {md(exc)}")
        return
    names = list(ss.series)
    n_boxes = sum(len(s.score) for s in ss.series.values())
    first = VIEWS[0] if n_boxes <= AUTO_ANALYSIS_MAX_BOXES else None  # a large run: computed when asked for
    view = st.segmented_control("Analysis", VIEWS, default=first, key="eval_more_view")
    if view is None:
        st.info(f"Pick an analysis: on {n_boxes:,} boxes each one takes a while (TIDE about a minute per million "
                "boxes on two cores), and is kept for this ground truth once computed.")  # fmt: skip
        return
    if view == VIEWS[0]:
        tide_ui(ss, key, data, name, names, untrained)
    elif view == VIEWS[1]:
        confusion_ui(ss, key, data, name, names, threshold, untrained)
    elif view == VIEWS[2]:
        slices_ui(ss, key, data, name, names, threshold)
    elif view == VIEWS[3]:
        significance_ui(key, data, name, names, untrained)
    elif view == VIEWS[4]:
        calibration_ui(key, data, name, names, untrained)
    else:
        operating_ui(key, data, name, names, threshold)


def tide_ui(ss, key: str, data: bytes, name: str, names: list[str], untrained: list[str]) -> None:  # noqa: ANN001
    picked = st.multiselect("Series", names, default=names, key="eval_tide_series")
    if not picked:
        st.info("Pick a series.")
        return
    with st.spinner("Decomposing the errors (TIDE)..."):
        reports = E.reports(key, data, name, tuple(picked))
    st.plotly_chart(F.tide_bars(E.tide_frame(reports), untrained=untrained), key="eval_tide")
    _figures_table(E.summary_table(reports), POINTS)
    st.caption("TIDE (Bolya et al. 2020) as tidecv 1.0.1 computes it: AP50 with only one error type fixed by its "
               "oracle, minus AP50, in AP points; foreground IoU 0.5, background IoU 0.1. FalsePos: every false "
               "positive scored 0; FalseNeg: every missed box forgotten.")  # fmt: skip
    one = st.selectbox("Per class and size of", picked, key="eval_tide_one")
    report = next(r for r in reports if r.series == one)
    c1, c2 = st.columns(2)
    _figures_table(E.per_class_table(report), POINTS, where=c1)
    _figures_table(E.per_size_table(report), POINTS, where=c2)
    st.markdown("**Each error bin's images in the Gallery** (its boxes highlighted there)")
    for r in reports:
        st.caption(md(r.series))
        images = r.error_images()
        for col, err in zip(st.columns(len(MAIN_ERRORS)), MAIN_ERRORS, strict=True):
            with col:
                _gallery_link(ss, images[err], f"{ERROR_NAMES[err]} errors", {"error": err, "series": r.series})


def confusion_ui(ss, key: str, data: bytes, name: str, names: list[str], threshold: float,  # noqa: ANN001
                 untrained: list[str]) -> None:  # fmt: skip
    series = st.selectbox("Series", names, key="eval_conf_series")
    c = E.confusion_of(key, data, name, series, threshold)
    title = f"Confusion matrix at IoU 0.5, score ≥ {threshold:.2f}"
    st.plotly_chart(F.confusion_heatmap(c.frame(), title=title, untrained=series in untrained), key="eval_confusion")
    cells = sorted(c.images, key=lambda rc: -c.counts[rc])
    if cells:
        cell = st.selectbox("Open a cell's images", cells, key="eval_conf_cell",
                            format_func=lambda rc: f"true {c.labels[rc[0]]} → predicted {c.labels[rc[1]]} "
                                                   f"({c.counts[rc]})")  # fmt: skip
        _gallery_link(ss, c.images[cell], "Open them")


def slices_ui(ss, key: str, data: bytes, name: str, names: list[str], threshold: float) -> None:  # noqa: ANN001
    series = st.selectbox("Series", names, key="eval_slice_series")
    upload = st.file_uploader("Tags CSV (image name, tags separated by ;)", type=["csv"], key="eval_tags")
    tags = upload.getvalue() if upload is not None else None
    try:
        table = E.slices_of(key, data, name, series, tags)
    except SeriesError as exc:
        st.error(md(exc))
        table = E.slices_of(key, data, name, series, None)
    _figures_table(table)
    by = st.radio("Worst images by", ["f1", "errors"], horizontal=True, key="eval_worst_by",
                  format_func={"f1": "lowest F1", "errors": "most errors (FP + missed)"}.get)  # fmt: skip
    worst = E.worst_of(key, data, name, series, threshold, by, 20)
    _figures_table(worst.drop(columns=["image_id"]))
    _gallery_link(ss, worst["image"].tolist(), "Open the worst images")


def significance_ui(key: str, data: bytes, name: str, names: list[str], untrained: list[str]) -> None:
    if len(names) < 2:
        st.info("A paired test needs two series on the same images.")
        return
    c1, c2, c3 = st.columns([2, 2, 1])
    a = c1.selectbox("A (baseline)", names, index=0, key="eval_sig_a")
    b = c2.selectbox("B (candidate)", names, index=1, key="eval_sig_b")
    resamples = c3.number_input("Resamples", 100, 10_000, BOOTSTRAP_RESAMPLES, step=100, key="eval_sig_n")
    if a == b:
        st.info("Choose two different series.")
        return
    try:
        with st.spinner(f"{int(resamples)} paired bootstrap resamples..."):
            c = E.compare_of(key, data, name, a, b, int(resamples), 0)
    except SeriesError as exc:
        st.warning(md(exc))
        return
    st.markdown(f"**Verdict: {md(c.verdict)}** (AP, {c.n_images} images, {c.resamples} paired resamples, seed "
                f"{c.seed}, 95% interval of B - A)")  # fmt: skip
    table = E.comparison_table(c)
    ap_rows = table[table["name"] != "latency_ms"]  # AP differences on one axis; the latency (ms) is in the table
    st.plotly_chart(F.interval_chart(ap_rows, untrained=a in untrained or b in untrained), key="eval_sig_chart")
    _figures_table(table)


def calibration_ui(key: str, data: bytes, name: str, names: list[str], untrained: list[str]) -> None:
    picked = st.multiselect("Series", names, default=names, key="eval_cal_series")
    cals = {s: E.calibration_of(key, data, name, s) for s in picked}
    st.plotly_chart(F.reliability_diagram({s: c.bins for s, c in cals.items()}, untrained=untrained),
                    key="eval_reliability")  # fmt: skip
    _figures_table(
        pd.DataFrame(
            [{"series": s, "ECE": c.ece, "detections": c.n} for s, c in cals.items()],
            columns=["series", "ECE", "detections"],
        )
    )
    st.caption("A detection is correct when it matches a ground-truth box of its class at IoU 0.5 (one box each, "
               "greedy by score). ECE: mean over detections of |share correct - mean score| of their score bin.")  # fmt: skip


def operating_ui(key: str, data: bytes, name: str, names: list[str], threshold: float) -> None:
    c1, c2, c3 = st.columns([2, 2, 1])
    series = c1.selectbox("Series", names, key="eval_op_series")
    objective = c2.radio("Per class", [MAX_F1, TARGET_PRECISION], horizontal=True, key="eval_op_obj",
                         format_func={MAX_F1: "maximise F1", TARGET_PRECISION: "reach a precision"}.get)  # fmt: skip
    target = c3.number_input("Precision", 0.05, 1.0, 0.9, step=0.05, key="eval_op_target",
                             disabled=objective != TARGET_PRECISION)  # fmt: skip
    points = E.operating_of(key, data, name, series, objective, target, threshold)
    _figures_table(E.points_table(points))
    st.caption(f"Beside each class's threshold, its precision, recall and F1 at the global threshold {threshold:.2f}."
               " A class that never reaches the precision gets its max-F1 threshold (reached = False).")  # fmt: skip
    doc = thresholds_json(points, series=series, objective=objective, target=target)
    d1, d2 = st.columns(2)
    d1.download_button("Download per-class thresholds (JSON)", doc, file_name=f"thresholds-{series}.json",
                       mime="application/json", key="eval_op_download")  # fmt: skip
    if d2.button("Keep these per-class thresholds for this session", key="eval_op_keep"):
        E.use_thresholds(series, points)
        st.success("Kept in this session (per-class thresholds).")
