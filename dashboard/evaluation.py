"""Ground-truth evaluation for the pages: the session's ground truth, cached metrics and per-box outcomes (no widgets).

The ground truth a user picked (the bundled gallery annotations by default, or an uploaded COCO JSON) lives in session
state under `GT_KEY` as its bytes with their content hash, so that every page of the session (the Gallery's
true/false-positive overlay) uses the same file; parsing and validating it is cached by that hash.

What is evaluated is a *variant*: one model with one (weights, device, precision), on the images it processed without
error (the latest run per image, as elsewhere), matched to the ground truth by file name and size. A model run with two
precisions gives two variants (two rows, two points on the frontier), each named `model (fp16, cuda)` by what differs.
Metrics and outcomes are `st.cache_data` entries keyed by the ground truth's hash and the viewed tables (hashed by
Streamlit), so a rerun that changes neither (a threshold move) reuses COCOeval's work. A stored run is evaluated from
its RunFrame instead (`frame_evaluation`): no table of every box is built or hashed, each variant's boxes are cut out
as arrays and evaluated (core.analytics.evaluation: in `python -m core.evalcore` workers when they are many), and the
result lives with the frame (cache.memo) under the ground truth's hash.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field, replace

import pandas as pd
import streamlit as st

from core.analytics import RunFrame
from core.analytics.evaluation import evaluate_all, prf_matched, variant_index
from core.config import EVAL_CACHE_DIR, EVAL_IOU, GALLERY_ANNOTATIONS, WEIGHTS_UNTRAINED
from core.evaluate import (
    FN,
    FP,
    OUTCOME_COLUMNS,
    OUTCOME_DTYPES,
    PRF,
    GroundTruth,
    GroundTruthError,
    Metrics,
    evaluate,
    image_names_from,
    image_sizes_from,
    load_ground_truth,
    match_all,
    match_outcomes,
    outcomes_at,
    pr_curve,
    prf_at,
    with_images,
)
from core.external import import_coco_results
from core.images import content_id
from core.records import latest_run
from core.text import fmt_ids
from dashboard import cache, state
from dashboard.cache import memo
from dashboard.text import md

GT_KEY = "detlens_gt"  # session: {"digest", "name", "source", "data"} of the ground truth in use
GALLERY, UPLOAD = "gallery", "upload"
GALLERY_NAME = f"{GALLERY_ANNOTATIONS.parent.name}/{GALLERY_ANNOTATIONS.name}"
VARIANT_KEYS: tuple[str, ...] = ("model", "weights", "device", "precision")
METRIC_TABLE_COLUMNS: tuple[str, ...] = (
    "model", "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "images", "GT boxes",
)  # fmt: skip
PRF_COLUMNS: tuple[str, ...] = ("model", "TP", "FP", "FN", "precision", "recall", "F1")
FRONTIER_COLUMNS: tuple[str, ...] = ("label", "model", "weights", "device", "precision", "AP", "median_total_ms")
ALL_CLASSES = "All classes (mean)"
GT_UPLOAD_HELP = (
    "images (id, file_name, width, height), annotations (bbox [x, y, w, h] in pixels) and categories. Images match "
    "ours by file name; categories map to the models' classes by name."
)
IMPORT_NOTE = (
    "A COCO results JSON from any detector (a YOLO, a served model): a list of image_id (the ground truth's image ids), "
    "category_id (COCO ids), bbox [x, y, w, h] in pixels and score. It becomes a run in the run store (weights, device "
    "and precision 'external'); images the results do not mention count as images where the detector found nothing."
)
LABEL_ID_CHOICES = {"coco": "COCO's (torchvision label ids)", "gt": "the ground truth's own"}
PRF_NOTE = (
    f"Boxes with score ≥ the sidebar threshold, matched one to one to same-class ground-truth boxes at IoU ≥ "
    f"{EVAL_IOU:.2f} (greedy by score, as COCO). False positives are wrong class, duplicates or low IoU; FN are missed "
    "ground-truth boxes. The Gallery's 'Ground truth' toggle shows them on each image."
)
FRONTIER_NOTE = (
    "One point per model, weights, device and precision: AP measured above against the median total latency of its "
    "successfully processed images. The dashed line is the Pareto front (no other point is both faster and more "
    "accurate). Imported detectors appear only when a latency was given."
)


# --- the session's ground truth ----------------------------------------------------------------------------------------


@st.cache_resource(show_spinner=False, max_entries=8)
def ground_truth(key: str, _data: bytes, name: str = "") -> GroundTruth:
    """The validated ground truth (not yet matched to images), parsed once per content hash `key`; shared, not copied
    per call (tens of thousands of boxes take a second to unpickle): never mutate it (`with_images` copies).

    Raises GroundTruthError (one line; errors are not cached, so a fixed file is read again).
    """
    buf = io.BytesIO(_data)
    buf.name = name
    return load_ground_truth(buf)


@st.cache_data(show_spinner=False, max_entries=1)
def gallery_bytes() -> bytes:
    """The bundled gallery annotations (gallery/annotations.json)."""
    return GALLERY_ANNOTATIONS.read_bytes()


def session_info() -> dict | None:
    """The session's ground truth as {"digest", "name", "source", "data"}, or None when none is loaded."""
    info = st.session_state.get(GT_KEY)
    return info if isinstance(info, dict) and info.get("data") else None


def use(data: bytes, name: str, source: str) -> GroundTruth:
    """Validate `data` and make it the session's ground truth; GroundTruthError (one line) leaves none loaded."""
    key = content_id(data)  # the same content hash as an image's id
    try:
        gt = ground_truth(key, data, name)
    except GroundTruthError:
        forget()
        raise
    st.session_state[GT_KEY] = {"digest": key, "name": name, "source": source, "data": data}
    return gt


def forget() -> None:
    st.session_state.pop(GT_KEY, None)


def session_gt() -> GroundTruth | None:
    """The session's ground truth (validated), or None when none is loaded or it no longer validates."""
    info = session_info()
    if info is None:
        return None
    try:
        return ground_truth(info["digest"], info["data"], info.get("name", ""))
    except GroundTruthError:
        return None


def gt_summary(gt: GroundTruth) -> list[str]:
    """Escaped captions: what the ground truth holds, how many categories map to label ids, the unmapped ones."""
    dropped = f"; {gt.dropped_annotations} boxes of unmapped categories left out" if gt.dropped_annotations else ""
    out = [
        f"{md(gt.source or 'ground truth')}: {gt.n_images} images, {gt.n_boxes} boxes, "
        f"{len(gt.category_map)} of {len(gt.raw['categories'])} categories mapped to model label ids{dropped}."
    ]
    if gt.unmapped_categories:
        out.append("Categories no model class carries: " + md(fmt_ids(gt.unmapped_categories)))
    return out


def own_numbering(gt: GroundTruth) -> bool:
    """Whether the ground truth's category ids differ from the model label ids (results may then use either)."""
    return any(k != v for k, v in gt.category_map.items())


def category_table(gt: GroundTruth) -> pd.DataFrame:
    """GT category id and name -> model label id and name (NA for names no model class carries)."""
    names = gt.class_names
    rows = [
        {
            "GT id": c["id"],
            "GT name": c["name"],
            "label id": gt.category_map.get(c["id"]),
            "model label": names.get(gt.category_map[c["id"]], "") if c["id"] in gt.category_map else "",
        }
        for c in gt.raw["categories"]
    ]
    frame = pd.DataFrame(rows, columns=["GT id", "GT name", "label id", "model label"])
    return frame.astype({"GT id": "int64", "GT name": "string", "label id": "Int64", "model label": "string"})


def for_image(gt: GroundTruth, image_id: str, name: str, size: tuple[int, int] | None) -> GroundTruth | None:
    """`gt` matched to one image (file name and, when known, size), or None when the image has no ground truth."""
    matched = with_images(gt, {image_id: name}, image_sizes={image_id: size} if size else None)
    return matched if image_id in matched.image_id_map else None


# --- variants -------------------------------------------------------------------------------------------------------


@dataclass
class Variant:
    """One model with one (weights, device, precision): its latest successful row per image and their boxes."""

    label: str
    model: str
    weights: str
    device: str
    precision: str
    inferences: pd.DataFrame
    detections: pd.DataFrame | None  # None: not cut out (a RunFrame's variant: core.analytics.evaluation)

    @property
    def untrained(self) -> bool:
        return self.weights == WEIGHTS_UNTRAINED

    @property
    def median_total_ms(self) -> float:
        values = self.inferences["total_ms"].astype("float64").dropna()
        return float(values.median()) if len(values) else math.nan


def variants(inferences: pd.DataFrame, detections: pd.DataFrame) -> list[Variant]:
    """The viewed tables split into variants, in the order the models first appear."""
    out = []
    for v in variant_rows(inferences):
        rows = v.inferences
        pairs = pd.MultiIndex.from_arrays([rows["run_id"].astype(str), rows["image_id"].astype(str)])
        mine = detections[detections["model"] == v.model]
        keep = pd.MultiIndex.from_arrays([mine["run_id"].astype(str), mine["image_id"].astype(str)]).isin(pairs)
        out.append(replace(v, detections=latest_run(mine[keep])))
    return out


def variant_rows(inferences: pd.DataFrame) -> list[Variant]:
    """The variants of the viewed inferences, each with its latest successful row per image (no boxes yet)."""
    ok = inferences[inferences["error"].fillna("").astype(str).str.strip() == ""]
    if ok.empty:
        return []
    keyed = ok.assign(**{k: ok[k].fillna("").astype(str) for k in VARIANT_KEYS})
    groups = list(keyed.groupby(list(VARIANT_KEYS), sort=False))
    per_model: dict[str, list[tuple]] = {}
    for key, _ in groups:
        per_model.setdefault(key[0], []).append(key)
    out = []
    for key, rows in groups:
        model, weights, device, precision = key
        siblings = per_model[model]
        differing = [key[i] for i in (1, 2, 3) if len({s[i] for s in siblings}) > 1]
        label = f"{model} ({', '.join(differing)})" if differing else model
        last = rows["run_id"].astype(str) == rows.groupby("image_id")["run_id"].transform("max").astype(str)
        rows = rows[last].drop_duplicates("image_id", keep="last")
        out.append(Variant(label, model, weights, device, precision, rows, None))
    return out


def matched_gt(gt: GroundTruth, variant: Variant) -> GroundTruth:
    """`gt` matched to the images a variant processed (by name and displayed size)."""
    rows = variant.inferences
    return with_images(gt, image_names_from(rows), image_sizes=image_sizes_from(rows))


# --- metrics --------------------------------------------------------------------------------------------------------


@dataclass
class ModelEval:
    """One variant's evaluation: its metrics (None when nothing could be evaluated) and what to tell the user."""

    label: str
    model: str
    weights: str
    device: str
    precision: str
    metrics: Metrics | None
    median_total_ms: float
    images: int  # images of the variant matched to the ground truth
    unmatched: list[str] = field(default_factory=list)  # names of its images without ground truth
    size_mismatches: list[str] = field(default_factory=list)  # names of its images whose size differs from the GT's
    error: str = ""

    @property
    def untrained(self) -> bool:
        return self.weights == WEIGHTS_UNTRAINED


@st.cache_data(show_spinner=False, max_entries=32)
def evaluate_view(key: str, _data: bytes, name: str, inferences: pd.DataFrame, detections: pd.DataFrame) -> list:
    """COCO metrics of every variant in the viewed tables against the ground truth of content hash `key`."""
    gt = ground_truth(key, _data, name)
    out = []
    for v in variants(inferences, detections):
        matched = matched_gt(gt, v)
        metrics, error = None, ""
        try:
            metrics = evaluate(matched, v.detections, model=v.model)
        except (GroundTruthError, ValueError) as exc:
            error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        out.append(_model_eval(v, matched, metrics, error))
    return out


def _model_eval(v: Variant, matched: GroundTruth, metrics: Metrics | None, error: str) -> ModelEval:
    names = dict(zip(v.inferences["image_id"].astype(str), v.inferences["image_name"].astype(str), strict=True))
    return ModelEval(
        label=v.label,
        model=v.model,
        weights=v.weights,
        device=v.device,
        precision=v.precision,
        metrics=metrics,
        median_total_ms=v.median_total_ms,
        images=len(matched.image_id_map),
        unmatched=[names[i] for i in matched.unmatched_images],
        size_mismatches=[names[i] for i in matched.size_mismatches],
        error=error,
    )


# --- a stored run: evaluated from its RunFrame ------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameEvaluation:
    """`evaluate_view` and `matched_view` of a RunFrame: the evaluations, and per variant label its `match_all` rows
    cut to what a threshold's precision/recall needs (None: no image matched)."""

    evals: list[ModelEval]
    matched: dict[str, pd.DataFrame | None]


def frame_evaluation(key: str, data: bytes, name: str, rf: RunFrame) -> FrameEvaluation:
    """Every variant of the frame against the ground truth of content hash `key`, computed once per frame and ground
    truth (cache.memo: it lives as long as the frame; nothing is hashed but the key), and kept in the store
    (core.analytics.evalcache: a server restart, or a teammate with the same run and ground truth, reads it back)."""
    return memo(rf, _frame_evaluation, key, name, data)


def _frame_evaluation(rf: RunFrame, key: str, name: str, data: bytes) -> FrameEvaluation:
    gt = ground_truth(key, data, name)
    groups = variant_rows(rf.inferences)
    matched = [matched_gt(gt, v) for v in groups]
    jobs = [
        (m, v.model, rf.columns(variant_index(rf, v.model, v.inferences))) for v, m in zip(groups, matched, strict=True)
    ]
    results = evaluate_all(jobs, cache_dir=cache.store().path / EVAL_CACHE_DIR)
    return FrameEvaluation(
        evals=[_model_eval(v, m, r.metrics, r.error) for v, m, r in zip(groups, matched, results, strict=True)],
        matched={v.label: r.matched for v, r in zip(groups, results, strict=True)},
    )


def frame_prf_table(evaluation: FrameEvaluation, threshold: float) -> pd.DataFrame:
    """`prf_table(outcomes_view(...))` of a FrameEvaluation: the evaluated variants at `threshold`."""
    rows = {}
    for e in evaluation.evals:
        if e.metrics is None or e.label not in evaluation.matched:
            continue
        frame = evaluation.matched[e.label]
        rows[e.label] = prf_matched(frame, threshold) if frame is not None else prf_at(_empty_outcomes())
    return _prf_frame(rows)


def metrics_table(evals: list[ModelEval]) -> pd.DataFrame:
    """One row per evaluated variant: COCO AP/AR (NaN where nothing to measure), images and GT boxes."""
    rows = [
        {"model": e.label, **{k: getattr(e.metrics, k) for k in METRIC_TABLE_COLUMNS[1:10]},
         "images": e.metrics.n_images, "GT boxes": e.metrics.n_gt}
        for e in evals
        if e.metrics is not None
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=list(METRIC_TABLE_COLUMNS))
    return frame.astype(
        {"model": "string", "images": "int64", "GT boxes": "int64"}
        | dict.fromkeys(METRIC_TABLE_COLUMNS[1:10], "float64")
    )


def frontier_points(evals: list[ModelEval]) -> pd.DataFrame:
    """One point per variant with metrics: measured AP against its measured median total latency."""
    rows = [
        {"label": e.label, "model": e.model, "weights": e.weights, "device": e.device, "precision": e.precision,
         "AP": e.metrics.AP, "median_total_ms": e.median_total_ms}
        for e in evals
        if e.metrics is not None
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=list(FRONTIER_COLUMNS)).astype(
        dict.fromkeys(FRONTIER_COLUMNS[:5], "string") | {"AP": "float64", "median_total_ms": "float64"}
    )


def notes(evals: list[ModelEval]) -> list[str]:
    """Per variant, as escaped one-line captions: why it was not evaluated, images without GT, size mismatches."""
    out = []
    for e in evals:
        if e.error:
            out.append(f"{md(e.label)}: not evaluated: {md(e.error)}")
        if e.unmatched:
            out.append(f"{md(e.label)}: {len(e.unmatched)} images without ground truth: {md(fmt_ids(e.unmatched))}")
        if e.size_mismatches:
            out.append(
                f"{md(e.label)}: {len(e.size_mismatches)} images whose size differs from the ground truth's (left out): "
                f"{md(fmt_ids(e.size_mismatches))}"
            )
    return out


def metrics_note(m: Metrics) -> str:
    """The caption under the metrics table: evaluator, settings and what the columns mean."""
    return (
        f"{md(m.evaluator)} (COCOeval, bbox), maxDets {list(m.max_dets)}, score floor {m.score_floor:g}; AP averaged "
        "over IoU 0.50:0.95, AP50/AP75 at one IoU; APs/m/l and ARs by object size. Empty: nothing to measure (e.g. no "
        "small ground-truth boxes). Only images each model processed without error and that match the ground truth "
        "count."
    )


def measured_classes(evals: list[ModelEval]) -> list[str]:
    """Class names with an AP (ground truth present) in any evaluated variant, sorted."""
    return sorted(
        {c for e in evals if e.metrics is not None for c, ap in e.metrics.per_class.items() if math.isfinite(ap)}
    )


def pr_curves(evals: list[ModelEval], picked: str = ALL_CLASSES) -> dict[str, pd.DataFrame]:
    """Variant label -> its PR curve at IoU 0.5 for class `picked` (or the mean over classes: ALL_CLASSES)."""
    return {
        e.label: pr_curve(e.metrics, None if picked == ALL_CLASSES else picked)
        for e in evals
        if e.metrics is not None and (picked == ALL_CLASSES or picked in e.metrics.class_names)
    }


# --- outcomes at a threshold ------------------------------------------------------------------------------------------


def _empty_outcomes() -> pd.DataFrame:
    return pd.DataFrame(columns=list(OUTCOME_COLUMNS)).astype(OUTCOME_DTYPES)


@st.cache_data(show_spinner=False, max_entries=16)
def matched_view(key: str, _data: bytes, name: str, inferences: pd.DataFrame, detections: pd.DataFrame) -> dict:
    """Variant label -> `match_all` rows (every threshold at once) on its matched images (IoU 0.5)."""
    gt = ground_truth(key, _data, name)
    out = {}
    for v in variants(inferences, detections):
        matched = matched_gt(gt, v)
        out[v.label] = match_all(matched, v.detections, model=v.model) if matched.image_id_map else None
    return out


def outcomes_view(
    key: str, _data: bytes, name: str, inferences: pd.DataFrame, detections: pd.DataFrame, threshold: float
) -> dict[str, pd.DataFrame]:
    """Variant label -> `match_outcomes` rows at `threshold`: the cached matching, filtered (a threshold move does not
    match again)."""
    return {
        label: _empty_outcomes() if frame is None else outcomes_at(frame, threshold)
        for label, frame in matched_view(key, _data, name, inferences, detections).items()
    }


def prf_table(outcomes: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per variant: true/false positives, misses, precision, recall and F1 (NaN where undefined)."""
    return _prf_frame({label: prf_at(frame) for label, frame in outcomes.items()})


def _prf_frame(prfs: dict[str, PRF]) -> pd.DataFrame:
    rows = []
    for label, r in prfs.items():
        rows.append(
            {
                "model": label,
                "TP": r.tp,
                "FP": r.fp,
                "FN": r.fn,
                "precision": r.precision,
                "recall": r.recall,
                "F1": r.f1,
            }
        )
    frame = pd.DataFrame(rows, columns=list(PRF_COLUMNS))
    return frame.astype(
        {"model": "string", "TP": "int64", "FP": "int64", "FN": "int64"}
        | dict.fromkeys(("precision", "recall", "F1"), "float64")
    )


@st.cache_data(show_spinner=False, max_entries=32)
def gt_errors(
    key: str,
    _data: bytes,
    name: str,
    inferences: pd.DataFrame,
    detections: pd.DataFrame,
    models: tuple[str, ...],
    threshold: float,
) -> pd.Series:
    """image_id -> false positives + missed GT boxes at `threshold`, summed over `models` (matched images only).

    For the Gallery's "GT errors" sort: per model, the latest successful row and boxes of each image.
    """  # fmt: skip
    gt = ground_truth(key, _data, name)
    inf = inferences[inferences["model"].isin(list(models)) & (inferences["error"].fillna("") == "")]
    det = latest_run(detections[detections["model"].isin(list(models))])
    totals: dict[str, int] = {}
    for model in dict.fromkeys(inf["model"].astype(str)):
        rows = inf[inf["model"] == model]
        matched = with_images(gt, image_names_from(rows), image_sizes=image_sizes_from(rows))
        if not matched.image_id_map:
            continue
        outcomes = match_outcomes(matched, det, threshold, model=model)
        counts = outcomes[outcomes["outcome"].isin([FP, FN])].groupby("image_id").size()
        for image_id in matched.image_id_map:
            totals[image_id] = totals.get(image_id, 0) + int(counts.get(image_id, 0))
    return pd.Series(totals, dtype="float64", name="gt_errors")


@st.cache_data(show_spinner=False, max_entries=64)
def image_outcomes(
    key: str,
    _data: bytes,
    name: str,
    image_id: str,
    image_name: str,
    size: tuple[int, int] | None,
    detections: pd.DataFrame,
    models: tuple[str, ...],
    threshold: float,
    classes: tuple[str, ...] = (),
) -> dict[str, pd.DataFrame]:
    """Model -> `match_outcomes` rows of one image at `threshold` (latest run per model), of `classes` when given.

    For the Gallery's ground-truth overlay: `detections` are the image's rows (any run), cached by their content, the
    ground truth's hash and the threshold. Empty frames when the image has no ground truth.
    """
    matched = for_image(ground_truth(key, _data, name), image_id, image_name, size)
    shown = latest_run(detections[detections["image_id"] == image_id])
    out = {}
    for m in models:
        frame = match_outcomes(matched, shown, threshold, model=m) if matched is not None else _empty_outcomes()
        out[m] = frame[frame["label"].isin(list(classes))] if classes else frame
    return out


# --- importing another detector's results -------------------------------------------------------------------------------


def import_results(
    data: bytes, file_name: str, model_name: str, gt: GroundTruth, latency_ms: float | None, label_ids: str
) -> str:
    """Import a COCO results file as a run and show it (`adopt_imported`); the message to flash.

    Raises ExternalResultsError or StoreError (one line) and leaves the store as it was.
    """
    buf = io.BytesIO(data)
    buf.name = file_name
    run_id = import_coco_results(
        cache.store(),
        buf,
        model_name=model_name,
        gt=gt,
        images=state.images(),
        latency_ms=latency_ms,
        label_ids=label_ids,
        threshold=state.threshold(),
    )
    return adopt_imported(run_id, " ".join(model_name.split()))


def adopt_imported(run_id: str, name: str) -> str:
    """Show an imported run: beside this session's results, or instead of the stored run being viewed; the message."""
    store = cache.store()
    if state.viewed_run():
        state.view_run(run_id)
        return f"Imported {name} as run {run_id}; now viewing that run."
    inf, det, info = store.load_run(run_id)
    state.add_run(info, inf, det)
    state.add_images(list(store.run_images(run_id).values()))
    return f"Imported {name} as run {run_id} and added it to this session."
