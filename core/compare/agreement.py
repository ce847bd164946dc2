"""Runtime agreement: does a runtime variant (ONNX Runtime, OpenVINO, torch.compile, another precision) give the boxes
of eager PyTorch with the same weights on the same images?

The reference of a run's series is the eager series of the same model and weights (fp32 first); every other
series of them (the other runtimes, and eager at another precision) is compared with it.
Per image, boxes are matched one to one with `core.compare.matching.match_boxes` (same label id, IoU >= `AGREEMENT_IOU`,
torchvision.ops.box_iou), on the boxes at or above the threshold on either side: a box just under the threshold on
one side (within `RUNTIME_SCORE_TOL`) still matches its twin above it, so a score that moved by 0.001 across the
threshold does not count as a missing box (the score difference is reported on its own). Per image: match F1, mean
IoU of the matches, largest score difference of a match. Per series: the share of images with F1 >= `RUNTIME_F1_OK`;
an fp32 series below that share is a defect (the same computation should give the same boxes); bf16/fp16 series show
their measured loss. With ground truth, `ap_against_eager` gives each series' COCO AP (core.evaluate) and its eager
reference's on the same images (those both processed that the ground truth has), and `with_ap` adds them and their
difference (series - eager) to the summary; without ground truth for those images they stay NaN ("no ground truth",
never 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.compare.matching import latest_run, match_boxes
from core.config import AGREEMENT_IOU, DEFAULT_THRESHOLD, RUNTIME_EAGER, RUNTIME_F1_OK, RUNTIME_SCORE_TOL
from core.inference.series import split_series
from core.records import succeeded

if TYPE_CHECKING:
    from core.evaluate import GroundTruth

PER_IMAGE_COLUMNS: tuple[str, ...] = ("image_id", "f1", "mean_iou", "max_score_diff", "n_series", "n_reference")
SUMMARY_COLUMNS: tuple[str, ...] = (
    "series", "reference", "runtime", "precision", "images", "boxes", "share_f1_ok", "mean_f1", "mean_iou",
    "max_score_diff", "defect", "ap", "ap_eager", "ap_diff",
)  # fmt: skip


@dataclass(frozen=True)
class ImageAgreement:
    f1: float
    mean_iou: float  # NaN without a match
    max_score_diff: float  # 0 without a match
    n_series: int  # boxes at or above the threshold
    n_reference: int


def image_agreement(
    series: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    iou: float = AGREEMENT_IOU,
    tol: float = RUNTIME_SCORE_TOL,
) -> ImageAgreement:
    """Agreement of one image's boxes (DETECTION_COLUMNS rows) of a series with its eager reference."""
    low = threshold - tol
    a = series[series["score"] >= low]
    b = reference[reference["score"] >= low]
    sa, sb = a["score"].to_numpy(np.float64), b["score"].to_numpy(np.float64)
    pairs = match_boxes(
        a[["x1", "y1", "x2", "y2"]].to_numpy(np.float64),
        a["label_id"].to_numpy(),
        b[["x1", "y1", "x2", "y2"]].to_numpy(np.float64),
        b["label_id"].to_numpy(),
        iou=iou,
    )
    counted = [(i, j, v) for i, j, v in pairs if max(sa[i], sb[j]) >= threshold]
    matched_a = {i for i, _, _ in pairs}
    matched_b = {j for _, j, _ in pairs}
    fp = sum(1 for i in range(len(sa)) if i not in matched_a and sa[i] >= threshold)
    fn = sum(1 for j in range(len(sb)) if j not in matched_b and sb[j] >= threshold)
    tp = len(counted)
    f1 = 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
    return ImageAgreement(
        f1=f1,
        mean_iou=float(np.mean([v for _, _, v in counted])) if counted else math.nan,
        max_score_diff=float(max((abs(sa[i] - sb[j]) for i, j, _ in counted), default=0.0)),
        n_series=int(np.count_nonzero(sa >= threshold)),
        n_reference=int(np.count_nonzero(sb >= threshold)),
    )


def _runtime_of(inferences: pd.DataFrame) -> pd.Series:
    if "runtime" in inferences:
        return inferences["runtime"].astype("string").fillna(RUNTIME_EAGER)
    return inferences["model"].map(lambda s: split_series(s)[1]).astype("string")


def references(inferences: pd.DataFrame) -> dict[str, str]:
    """series -> its eager reference series (same model and weights; fp32 preferred), for every other series of that
    model and weights in `inferences`: the other runtimes, and eager at another precision (`MODEL@eager-bf16`)."""
    if inferences.empty:
        return {}
    frame = inferences.assign(rt_=_runtime_of(inferences), base_=inferences["model"].map(lambda s: split_series(s)[0]))
    kinds = frame.drop_duplicates("model")[["model", "rt_", "base_", "weights", "precision"]]
    out = {}
    for _, group in kinds.groupby(["base_", "weights"], sort=False):
        eager = group[group["rt_"] == RUNTIME_EAGER]
        if eager.empty:
            continue
        fp32 = eager[eager["precision"] == "fp32"]
        reference = str((fp32 if not fp32.empty else eager).iloc[0]["model"])
        out |= {str(m): reference for m in group["model"] if m != reference}
    return out


def per_image(
    inferences: pd.DataFrame,
    detections: pd.DataFrame,
    series: str,
    reference: str,
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> pd.DataFrame:
    """PER_IMAGE_COLUMNS for the images both `series` and `reference` processed (latest run of each)."""
    ok = succeeded(inferences)
    ids_a = set(ok.loc[ok["model"] == series, "image_id"].astype(str))
    ids_b = set(ok.loc[ok["model"] == reference, "image_id"].astype(str))
    ids = [i for i in dict.fromkeys(ok["image_id"].astype(str)) if i in ids_a and i in ids_b]
    dets = latest_run(detections[detections["model"].isin([series, reference])])
    groups = {key: part for key, part in dets.groupby([dets["image_id"].astype(str), dets["model"].astype(str)])}
    empty = dets.iloc[:0]
    rows = []
    for image_id in ids:
        agreement = image_agreement(
            groups.get((image_id, series), empty), groups.get((image_id, reference), empty), threshold=threshold
        )
        rows.append({"image_id": image_id, **agreement.__dict__})
    return pd.DataFrame(rows, columns=list(PER_IMAGE_COLUMNS)).astype(
        {"image_id": "string", "f1": "float64", "mean_iou": "float64", "max_score_diff": "float64"}
    )


def runtime_agreement(
    inferences: pd.DataFrame, detections: pd.DataFrame, *, threshold: float = DEFAULT_THRESHOLD
) -> pd.DataFrame:
    """SUMMARY_COLUMNS, one row per non-eager series with an eager reference in the same tables (AP columns NaN)."""
    rows = []
    precision_of = inferences.drop_duplicates("model").set_index("model")["precision"] if len(inferences) else {}
    runtime_of = (
        inferences.assign(_r=_runtime_of(inferences)).drop_duplicates("model").set_index("model")["_r"]
        if len(inferences)
        else {}
    )
    for series, reference in references(inferences).items():
        images = per_image(inferences, detections, series, reference, threshold=threshold)
        # boxes at or above the threshold, both sides: with none (untrained weights, a high threshold) every image
        # "agrees" on nothing, which measures nothing: the share and F1 are NaN, never 100%
        boxes = int(images["n_series"].sum() + images["n_reference"].sum()) if len(images) else 0
        measured = len(images) and boxes
        share = float((images["f1"] >= RUNTIME_F1_OK).mean()) if measured else math.nan
        precision = str(precision_of[series])
        rows.append(
            {
                "series": series,
                "reference": reference,
                "runtime": str(runtime_of[series]),
                "precision": precision,
                "images": len(images),
                "boxes": boxes,
                "share_f1_ok": share,
                "mean_f1": float(images["f1"].mean()) if measured else math.nan,
                "mean_iou": float(images["mean_iou"].mean()) if images["mean_iou"].notna().any() else math.nan,
                "max_score_diff": float(images["max_score_diff"].max()) if len(images) else math.nan,
                "defect": bool(precision == "fp32" and measured and share < RUNTIME_F1_OK),
                "ap": math.nan,
                "ap_eager": math.nan,
                "ap_diff": math.nan,
            }
        )
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS)).astype(
        {"series": "string", "reference": "string", "runtime": "string", "precision": "string", "defect": "bool"}
    )


def _latest_ok(inferences: pd.DataFrame, series: str) -> pd.DataFrame:
    """A series' successful rows, the latest run per image."""
    ok = succeeded(inferences)
    rows = ok[ok["model"] == series]
    last = rows.groupby("image_id")["run_id"].transform("max")
    return rows[rows["run_id"] == last].drop_duplicates("image_id", keep="last")


def series_ap(gt: GroundTruth, inferences: pd.DataFrame, detections: pd.DataFrame, series: str, image_ids) -> float:
    """COCO AP (core.evaluate) of one series on `image_ids` (its latest successful row each) matched to `gt` by file
    name and size; NaN when none of them has ground truth."""
    from core.evaluate import evaluate, image_names_from, image_sizes_from, with_images

    keep = set(image_ids)
    rows = _latest_ok(inferences, series)
    rows = rows[rows["image_id"].astype(str).isin(keep)]
    matched = with_images(gt, image_names_from(rows), image_sizes=image_sizes_from(rows))
    if not matched.image_id_map:
        return math.nan
    dets = latest_run(detections[detections["model"] == series])
    pairs = pd.MultiIndex.from_arrays([rows["run_id"].astype(str), rows["image_id"].astype(str)])
    dets = dets[pd.MultiIndex.from_arrays([dets["run_id"].astype(str), dets["image_id"].astype(str)]).isin(pairs)]
    return float(evaluate(matched, dets, model=series).AP)


def ap_against_eager(
    gt: GroundTruth, inferences: pd.DataFrame, detections: pd.DataFrame
) -> dict[str, tuple[float, float]]:
    """series -> (its AP, its eager reference's AP), both on the images both processed without error (every box,
    COCO's protocol: no threshold), for every non-eager series with a reference; NaNs where no image has ground truth.
    `detections` must hold every box of those series (not only those above a threshold)."""
    out = {}
    for series, reference in references(inferences).items():
        ids_a = set(_latest_ok(inferences, series)["image_id"].astype(str))
        ids = ids_a & set(_latest_ok(inferences, reference)["image_id"].astype(str))
        out[series] = (
            series_ap(gt, inferences, detections, series, ids),
            series_ap(gt, inferences, detections, reference, ids),
        )
    return out


def with_ap(summary: pd.DataFrame, ap: Mapping[str, float | tuple[float, float]]) -> pd.DataFrame:
    """`summary` with each series' AP (from ground truth), its reference's, and the difference (series - eager).

    `ap` maps a series either to its AP (the reference's AP is then looked up by its own name) or to the pair
    (series AP, eager AP on the same images) that `ap_against_eager` gives."""

    def pick(row: pd.Series, which: int) -> float:
        got = ap.get(str(row["series"]), math.nan)
        if isinstance(got, tuple):
            return float(got[which])
        return float(got) if which == 0 else float(ap.get(str(row["reference"]), math.nan))  # type: ignore[arg-type]

    out = summary.copy()
    out["ap"] = pd.Series([pick(r, 0) for _, r in out.iterrows()], index=out.index, dtype="float64")
    out["ap_eager"] = pd.Series([pick(r, 1) for _, r in out.iterrows()], index=out.index, dtype="float64")
    out["ap_diff"] = out["ap"] - out["ap_eager"]
    return out


def has_ap(summary: pd.DataFrame) -> bool:
    """Whether any series of the summary was measured against ground truth."""
    return bool(len(summary)) and "ap" in summary and bool(summary["ap"].notna().any())


def ap_text(row: Mapping[str, object]) -> str:
    """`AP 0.412 (eager 0.415, ΔAP -0.003)`, or "AP: no ground truth" (never a 0 for a missing figure)."""
    ap, eager = float(row.get("ap", math.nan)), float(row.get("ap_eager", math.nan))  # type: ignore[arg-type]
    if math.isnan(ap) or math.isnan(eager):
        return "AP: no ground truth"
    return f"AP {ap:.3f} (eager {eager:.3f}, ΔAP {ap - eager:+.3f})"


def verdict(row: Mapping[str, object]) -> str:
    """One short line for a summary row: "same as eager", "DEFECT: ...", or the measured loss of a lower precision."""
    share = float(row["share_f1_ok"])  # type: ignore[arg-type]
    if not int(row.get("images", 0) or 0):  # type: ignore[call-overload]
        return "no image in common with eager"
    if math.isnan(share):
        return "not measured: neither side has a box at or above the threshold"
    text = f"{share:.0%} of images with F1 >= {RUNTIME_F1_OK}, max score diff {float(row['max_score_diff']):.3f}"  # type: ignore[arg-type]
    if row["defect"]:
        return f"DEFECT (fp32 should match eager): {text}"
    if share >= RUNTIME_F1_OK:
        return f"same as eager: {text}"
    return f"measured loss at {row['precision']}: {text}"
