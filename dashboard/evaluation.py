"""Ground-truth evaluation for the pages (no widgets): COCO metrics, precision/recall at a threshold, per-image errors
and one image's per-box outcomes, against the session's ground truth (dashboard.groundtruth).

What is evaluated is a *variant*: one model with one (weights, device, precision), on the images it processed without
error (the latest run per image and model, as the RunFrame holds it), matched to the ground truth by file name and
size. A model run with two precisions (on different images, or in two stored runs) gives two variants (two rows, two
points on the frontier), each named `model (fp16, cuda)` by what differs. The viewed records, a stored run or this
session's, are evaluated from their RunFrame (`frame_evaluation`): no table of every box is built or hashed, each
variant's boxes are cut out as arrays and evaluated (core.analytics.evaluation: in `python -m core.evalcore` workers
when they are many), and the result lives with the frame (cache.memo) under the ground truth's hash, so a threshold
move only filters the kept matching (`frame_prf_table`, `gt_errors`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import streamlit as st

from core.analytics import RunFrame
from core.analytics.evaluation import evaluate_all, prf_matched, rows_at, variant_index
from core.config import EVAL_CACHE_DIR, EVAL_IOU, WEIGHTS_UNTRAINED
from core.evaluate import (
    FN,
    FP,
    OUTCOME_COLUMNS,
    OUTCOME_DTYPES,
    PRF,
    GroundTruth,
    Metrics,
    image_names_from,
    image_sizes_from,
    match_outcomes,
    pr_curve,
    prf_at,
    with_images,
)
from core.records import latest_run
from core.text import fmt_ids
from dashboard import cache
from dashboard.cache import memo
from dashboard.groundtruth import for_image, ground_truth
from dashboard.text import md

VARIANT_KEYS: tuple[str, ...] = ("model", "weights", "device", "precision")
METRIC_TABLE_COLUMNS: tuple[str, ...] = (
    "model", "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "images", "GT boxes",
)  # fmt: skip
PRF_COLUMNS: tuple[str, ...] = ("model", "TP", "FP", "FN", "precision", "recall", "F1")
FRONTIER_COLUMNS: tuple[str, ...] = ("label", "model", "weights", "device", "precision", "AP", "median_total_ms")
ALL_CLASSES = "All classes (mean)"
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


# --- variants -------------------------------------------------------------------------------------------------------


@dataclass
class EvalVariant:
    """One model with one (weights, device, precision): its latest successful row per image (its boxes are the
    RunFrame's of those (run, image) pairs: core.analytics.evaluation.variant_index)."""

    label: str
    model: str
    weights: str
    device: str
    precision: str
    inferences: pd.DataFrame

    @property
    def untrained(self) -> bool:
        return self.weights == WEIGHTS_UNTRAINED

    @property
    def median_total_ms(self) -> float:
        values = self.inferences["total_ms"].astype("float64").dropna()
        return float(values.median()) if len(values) else math.nan


def variant_rows(inferences: pd.DataFrame) -> list[EvalVariant]:
    """The variants of the viewed inferences, each with its latest successful row per image: of every (image, model)
    only the latest successful run counts (the run whose boxes a RunFrame keeps), whatever its precision."""
    ok = inferences[inferences["error"].fillna("").astype(str).str.strip() == ""]
    if ok.empty:
        return []
    ok = ok[ok["run_id"].astype(str) == ok.groupby(["image_id", "model"])["run_id"].transform("max").astype(str)]
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
        out.append(EvalVariant(label, model, weights, device, precision, rows.drop_duplicates("image_id", keep="last")))
    return out


def matched_gt(gt: GroundTruth, variant: EvalVariant) -> GroundTruth:
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


def _model_eval(v: EvalVariant, matched: GroundTruth, metrics: Metrics | None, error: str) -> ModelEval:
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


# --- the viewed RunFrame, evaluated ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameEvaluation:
    """The evaluations of a RunFrame's variants, and per variant label its `match_all` rows cut to what a threshold's
    precision/recall and per-image errors need (core.analytics.evaluation.MATCHED_COLUMNS; None: no image matched)."""

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
    """Per evaluated variant at `threshold`: true/false positives, misses, precision, recall and F1 (as `prf_table`
    of its `match_outcomes` rows)."""
    rows = {}
    for e in evaluation.evals:
        if e.metrics is None or e.label not in evaluation.matched:
            continue
        frame = evaluation.matched[e.label]
        rows[e.label] = prf_matched(frame, threshold) if frame is not None else prf_at(_empty_outcomes())
    return _prf_frame(rows)


def gt_errors(evaluation: FrameEvaluation, models: Sequence[str], threshold: float) -> pd.Series:
    """image_id -> false positives + missed GT boxes at `threshold`, summed over the variants of `models`, on the
    images matched to the ground truth (0 where none): the Gallery's "GT errors" sort, a filter of the kept matching."""
    totals: dict[str, int] = {}
    for e in evaluation.evals:
        frame = evaluation.matched.get(e.label)
        if e.model not in models or frame is None:
            continue
        wrong = rows_at(frame, threshold) & frame["outcome"].isin([FP, FN]).to_numpy(bool)
        images = frame["image_id"].cat
        counts = np.bincount(images.codes.to_numpy()[wrong], minlength=len(images.categories))
        for image_id, n in zip(images.categories, counts, strict=True):
            totals[str(image_id)] = totals.get(str(image_id), 0) + int(n)
    return pd.Series(totals, dtype="float64", name="gt_errors")


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
