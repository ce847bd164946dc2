"""Evaluate: COCO metrics of every model in view against ground truth (the gallery's boxes, or an uploaded COCO JSON)."""

from __future__ import annotations

import io
import math

import streamlit as st

from core.config import UNTRAINED_MARK
from core.evaluate import EVAL_IOU, GroundTruth, GroundTruthError, pr_curve
from core.external import ExternalResultsError, import_coco_results
from core.store import StoreError
from dashboard import cache, evaluation, figures, state, views
from dashboard.pagelist import page
from dashboard.text import md

SOURCES = {evaluation.GALLERY: "Bundled gallery annotations", evaluation.UPLOAD: "Upload a COCO instances JSON"}
ALL_CLASSES = "All classes (mean)"
FLASH_KEY = "eval_flash"
MAX_NAMES = 5


def names_text(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES])
    return shown + (f" (+{len(names) - MAX_NAMES} more)" if len(names) > MAX_NAMES else "")


def describe(gt: GroundTruth) -> None:
    """What the ground truth holds and how its categories map to the models' label ids."""
    dropped = f"; {gt.dropped_annotations} boxes of unmapped categories left out" if gt.dropped_annotations else ""
    st.caption(
        f"{md(gt.source or 'ground truth')}: {gt.n_images} images, {gt.n_boxes} boxes, "
        f"{len(gt.category_map)} of {len(gt.raw['categories'])} categories mapped to model label ids{dropped}."
    )
    if gt.unmapped_categories:
        st.caption("Categories no model class carries: " + md(names_text(gt.unmapped_categories)))
    with st.expander("Category mapping (ground-truth name -> model label id)"):
        st.dataframe(evaluation.category_table(gt), hide_index=True)


def ground_truth_ui() -> GroundTruth | None:
    """Pick the ground truth (the gallery's by default), validate it, keep it in the session; None when there is none."""
    current = evaluation.session_info()
    uploaded_before = current is not None and current.get("source") == evaluation.UPLOAD
    choice = st.radio(
        "Ground truth",
        list(SOURCES),
        format_func=SOURCES.get,
        index=1 if uploaded_before else 0,
        horizontal=True,
        key="eval_gt_source",
    )
    if choice == evaluation.GALLERY:
        data, name = evaluation.gallery_bytes(), evaluation.GALLERY_NAME
    else:
        upload = st.file_uploader(
            "COCO instances JSON",
            type=["json"],
            key="eval_gt_upload",
            help="images (id, file_name, width, height), annotations (bbox [x, y, w, h] in pixels) and categories. "
            "Images match ours by file name; categories map to the models' classes by name.",
        )
        if upload is not None:
            data, name = upload.getvalue(), upload.name
        elif uploaded_before:
            data, name = current["data"], current["name"]
            st.caption(f"Using {md(name)}, uploaded earlier in this session; upload another file to replace it.")
        else:
            evaluation.forget()
            st.info("Upload a COCO instances JSON to evaluate against it.")
            return None
    try:
        gt = evaluation.use(data, name, choice)
    except GroundTruthError as exc:
        st.error(f"Ground truth not usable: {md(exc)}")
        return None
    describe(gt)
    return gt


def imported(run_id: str, name: str) -> None:
    """Show the imported run: beside this session's results, or instead of the stored run being viewed."""
    store = cache.store()
    if state.viewed_run():
        state.view_run(run_id)
        message = f"Imported {name} as run {run_id}; now viewing that run."
    else:
        inf, det, info = store.load_run(run_id)
        state.add_run(info, inf, det)
        state.add_images(list(store.run_images(run_id).values()))
        message = f"Imported {name} as run {run_id} and added it to this session."
    st.session_state[FLASH_KEY] = message
    st.rerun()


def import_ui(gt: GroundTruth | None) -> None:
    """Another detector's COCO results JSON into the run store, with an optional median latency."""
    with st.expander("Add another detector's COCO results"):
        st.caption(
            "A COCO results JSON from any detector (a YOLO, a served model): a list of image_id (the ground truth's "
            "image ids), category_id (COCO ids), bbox [x, y, w, h] in pixels and score. It becomes a run in the run "
            "store (weights, device and precision 'external'); images the results do not mention count as images "
            "where the detector found nothing."
        )
        if gt is None:
            st.info("Load a ground truth first: its file names tell which images the results' ids are.")
            return
        c1, c2 = st.columns(2)
        name = c1.text_input("Detector name", key="eval_ext_name", placeholder="yolov8n")
        latency = c2.number_input(
            "Median latency per image, ms (optional)", min_value=0.0, value=None, key="eval_ext_latency"
        )
        label_ids = "coco"
        if any(k != v for k, v in gt.category_map.items()):
            label_ids = st.radio(
                "Category ids in the results",
                ["coco", "gt"],
                format_func={"coco": "COCO's (torchvision label ids)", "gt": "the ground truth's own"}.get,
                horizontal=True,
                key="eval_ext_ids",
            )
        upload = st.file_uploader("COCO results JSON", type=["json"], key="eval_ext_file")
        if st.button("Import", key="eval_ext_go", disabled=upload is None):
            data = io.BytesIO(upload.getvalue())
            data.name = upload.name
            try:
                run_id = import_coco_results(
                    cache.store(),
                    data,
                    model_name=name,
                    gt=gt,
                    images=state.images(),
                    latency_ms=latency,
                    label_ids=label_ids,
                    threshold=state.threshold(),
                )
            except (ExternalResultsError, StoreError) as exc:
                st.error(f"Not imported: {md(exc)}")
            else:
                imported(run_id, " ".join(name.split()))


def notes(evals: list[evaluation.ModelEval]) -> None:
    """Per model: why it was not evaluated, its images without ground truth, its size mismatches."""
    for e in evals:
        if e.error:
            st.caption(f"{md(e.label)}: not evaluated: {md(e.error)}")
        if e.unmatched:
            st.caption(f"{md(e.label)}: {len(e.unmatched)} images without ground truth: {md(names_text(e.unmatched))}")
        if e.size_mismatches:
            st.caption(
                f"{md(e.label)}: {len(e.size_mismatches)} images whose size differs from the ground truth's (left out): "
                f"{md(names_text(e.size_mismatches))}"
            )


state.init()
st.title("Evaluate")
if FLASH_KEY in st.session_state:
    st.success(md(st.session_state.pop(FLASH_KEY)))
gt = ground_truth_ui()
import_ui(gt)

inf, det = state.inferences(), state.detections()
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
info = evaluation.session_info()
key, data, gt_name = info["digest"], info["data"], info["name"]
evals = evaluation.evaluate_view(key, data, gt_name, inf, det)
evaluated = [e for e in evals if e.metrics is not None]
untrained_labels = [e.label for e in evals if e.untrained]

st.subheader("COCO metrics")
table = evaluation.metrics_table(evals)
if table.empty:
    st.warning("No model could be evaluated: none of its processed images matches the ground truth by name and size.")
    notes(evals)
    st.stop()
st.dataframe(
    table,
    hide_index=True,
    column_config={k: st.column_config.NumberColumn(format="%.3f") for k in evaluation.METRIC_TABLE_COLUMNS[1:10]},
)
first = evaluated[0].metrics
st.caption(
    f"{md(first.evaluator)} (COCOeval, bbox), maxDets {list(first.max_dets)}, score floor {first.score_floor:g}; "
    "AP averaged over IoU 0.50:0.95, AP50/AP75 at one IoU; APs/m/l and ARs by object size. Empty: nothing to measure "
    "(e.g. no small ground-truth boxes). Only images each model processed without error and that match the ground "
    "truth count."
)
notes(evals)

st.subheader("Precision-recall and AP per class")
classes = sorted({c for e in evaluated for c, ap in e.metrics.per_class.items() if math.isfinite(ap)})
picked = st.selectbox("Class", [ALL_CLASSES, *classes], key="eval_pr_class")
curves = {
    e.label: pr_curve(e.metrics, None if picked == ALL_CLASSES else picked)
    for e in evaluated
    if picked == ALL_CLASSES or picked in e.metrics.class_names
}
c1, c2 = st.columns(2)
c1.plotly_chart(
    figures.pr_curves(curves, title=f"Precision-recall at IoU {EVAL_IOU:.2f}: {picked}", untrained=untrained_labels),
    key="eval_pr",
)
c2.plotly_chart(
    figures.per_class_ap({e.label: e.metrics.per_class for e in evaluated}, untrained=untrained_labels),
    key="eval_per_class",
)

st.subheader(f"At the threshold (score ≥ {threshold:.2f})")
outcomes = evaluation.outcomes_view(key, data, gt_name, inf, det, threshold)
prf = evaluation.prf_table({e.label: outcomes[e.label] for e in evaluated if e.label in outcomes})
st.dataframe(
    prf,
    hide_index=True,
    column_config={k: st.column_config.NumberColumn(format="%.3f") for k in ("precision", "recall", "F1")},
)
st.caption(
    f"Boxes with score ≥ the sidebar threshold, matched one to one to same-class ground-truth boxes at IoU ≥ "
    f"{EVAL_IOU:.2f} (greedy by score, as COCO). False positives are wrong class, duplicates or low IoU; FN are missed "
    "ground-truth boxes. The Gallery's 'Ground truth' toggle shows them on each image."
)

st.subheader("Accuracy against speed")
st.plotly_chart(figures.frontier(evaluation.frontier_points(evals), untrained=untrained_labels), key="eval_frontier")
st.caption(
    "One point per model, weights, device and precision: AP measured above against the median total latency of its "
    "successfully processed images. The dashed line is the Pareto front (no other point is both faster and more "
    "accurate). Imported detectors appear only when a latency was given."
)
