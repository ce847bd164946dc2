"""Evaluate: COCO metrics of every model in view against ground truth (the gallery's boxes, or an uploaded COCO JSON)."""

from __future__ import annotations

import streamlit as st

from core.config import UNTRAINED_MARK
from core.evaluate import EVAL_IOU, GroundTruth, GroundTruthError
from core.evaluate.external import ExternalResultsError
from core.store import StoreError
from dashboard import errors_ui, evaluation, figures, groundtruth, state, tables, views
from dashboard.pagelist import page
from dashboard.text import md

SOURCES = {groundtruth.GALLERY: "Bundled gallery annotations", groundtruth.UPLOAD: "Upload a COCO instances JSON"}
FLASH_KEY = "eval_flash"


def ground_truth_ui() -> GroundTruth | None:
    """Pick the ground truth (the gallery's by default), validate it, keep it in the session; None when there is none."""
    current = groundtruth.session_info()
    uploaded_before = current is not None and current.get("source") == groundtruth.UPLOAD
    choice = st.radio("Ground truth", list(SOURCES), format_func=SOURCES.get, index=1 if uploaded_before else 0,
                      horizontal=True, key="eval_gt_source")  # fmt: skip
    if choice == groundtruth.GALLERY:
        data, name = groundtruth.gallery_bytes(), groundtruth.GALLERY_NAME
    else:
        upload = st.file_uploader("COCO instances JSON", type=["json"], key="eval_gt_upload",
                                  help=groundtruth.GT_UPLOAD_HELP)  # fmt: skip
        if upload is not None:
            data, name = upload.getvalue(), upload.name
        elif uploaded_before:
            data, name = current["data"], current["name"]
            st.caption(f"Using {md(name)}, uploaded earlier in this session; upload another file to replace it.")
        else:
            groundtruth.forget()
            st.info("Upload a COCO instances JSON to evaluate against it.")
            return None
    try:
        gt = groundtruth.use(data, name, choice)
    except GroundTruthError as exc:
        st.error(f"Ground truth not usable: {md(exc)}")
        return None
    for line in groundtruth.gt_summary(gt):
        st.caption(line)
    with st.expander("Category mapping (ground-truth name -> model label id)"):
        st.dataframe(groundtruth.category_table(gt), hide_index=True, column_config=tables.CATEGORY_CONFIG,
                     placeholder=tables.NA)  # fmt: skip
    return gt


def import_ui(gt: GroundTruth | None) -> None:
    """Another detector's COCO results JSON into the run store, with an optional median latency."""
    with st.expander("Add another detector's COCO results"):
        st.caption(groundtruth.IMPORT_NOTE)
        if gt is None:
            st.info("Load a ground truth first: its file names tell which images the results' ids are.")
            return
        c1, c2 = st.columns(2)
        name = c1.text_input("Detector name", key="eval_ext_name", placeholder="yolov8n")
        latency = c2.number_input(
            "Median latency per image, ms (optional)", min_value=0.0, value=None, key="eval_ext_latency"
        )
        label_ids = "coco"
        if groundtruth.own_numbering(gt):
            label_ids = st.radio("Category ids in the results", list(groundtruth.LABEL_ID_CHOICES),
                                 format_func=groundtruth.LABEL_ID_CHOICES.get, horizontal=True, key="eval_ext_ids")  # fmt: skip
        upload = st.file_uploader("COCO results JSON", type=["json"], key="eval_ext_file")
        if st.button("Import", key="eval_ext_go", disabled=upload is None):
            try:
                message = groundtruth.import_results(upload.getvalue(), upload.name, name, gt, latency, label_ids)
            except (ExternalResultsError, StoreError) as exc:
                st.error(f"Not imported: {md(exc)}")
            else:
                st.session_state[FLASH_KEY] = message
                st.rerun()


state.init()
st.title("Evaluate")
if FLASH_KEY in st.session_state:
    st.success(md(st.session_state.pop(FLASH_KEY)))
gt = ground_truth_ui()
import_ui(gt)

inf = state.inferences()
if inf.empty:
    st.info("No results yet: run some models first, or add another detector's results above.")
    st.page_link(page("pages/run.py"), label="Go to Run", icon=":material/play_arrow:")
    st.stop()
if gt is None:
    st.stop()

threshold = state.threshold()
untrained = views.untrained_models(inf)
if untrained:
    st.warning(f"{md(', '.join(untrained))}: {UNTRAINED_MARK}. Their metrics say nothing about the architecture.")
info = groundtruth.session_info()
key, data, gt_name = info["digest"], info["data"], info["name"]
with st.spinner("Evaluating every model against the ground truth..."):  # once per viewed frame and ground truth
    frame_eval = evaluation.frame_evaluation(key, data, gt_name, state.frame())
evals = frame_eval.evals
evaluated = [e for e in evals if e.metrics is not None]
untrained_labels = [e.label for e in evals if e.untrained]

st.subheader("COCO metrics")
table = evaluation.metrics_table(evals)
if table.empty:
    st.warning("No model could be evaluated: none of its processed images matches the ground truth by name and size.")
else:
    st.dataframe(table, hide_index=True, column_config=tables.METRICS_CONFIG, placeholder=tables.NA)
    st.caption(evaluation.metrics_note(evaluated[0].metrics))
for line in evaluation.notes(evals):
    st.caption(line)
if table.empty:
    st.stop()

st.subheader("Precision-recall and AP per class")
picked = st.selectbox("Class", [evaluation.ALL_CLASSES, *evaluation.measured_classes(evals)], key="eval_pr_class")
c1, c2 = st.columns(2)
pr_title = f"Precision-recall at IoU {EVAL_IOU:.2f}: {picked}"
c1.plotly_chart(figures.pr_curves_chart(evaluation.pr_curves(evals, picked), title=pr_title, untrained=untrained_labels),
                key="eval_pr")  # fmt: skip
c2.plotly_chart(figures.per_class_ap({e.label: e.metrics.per_class for e in evaluated}, untrained=untrained_labels),
                key="eval_per_class")  # fmt: skip

st.subheader(f"At the threshold (score ≥ {threshold:.2f})")
prf = evaluation.frame_prf_table(frame_eval, threshold)
st.dataframe(prf, hide_index=True, column_config=tables.PRF_CONFIG, placeholder=tables.NA)
st.caption(evaluation.PRF_NOTE)

st.subheader("Accuracy against speed")
st.plotly_chart(figures.frontier(evaluation.frontier_points(evals), untrained=untrained_labels), key="eval_frontier")
st.caption(evaluation.FRONTIER_NOTE)

errors_ui.section(key, data, gt_name, threshold, untrained_labels)
