"""Per-box outcomes at one score threshold: true positives, false positives with their reason, missed GT boxes.

COCO-style matching (greedy by score, one match per ground-truth box, crowd regions ignored), for overlays and for
precision, recall and F1 at the threshold (`prf_at`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.config import EVAL_IOU
from core.evaluate.groundtruth import GroundTruth, _one_model

OUTCOME_COLUMNS: tuple[str, ...] = (
    "image_id", "model", "outcome", "reason", "label_id", "label", "score", "iou", "x1", "y1", "x2", "y2", "gt_id",
)  # fmt: skip
OUTCOME_DTYPES: dict[str, str] = {
    "image_id": "string", "model": "string", "outcome": "string", "reason": "string", "label_id": "int64",
    "label": "string", "score": "float64", "iou": "float64", "x1": "float64", "y1": "float64", "x2": "float64",
    "y2": "float64", "gt_id": "Int64",
}  # fmt: skip

# Outcomes and false-positive reasons (match_outcomes).
TP, FP, FN, IGNORED = "tp", "fp", "fn", "ignored"
WRONG_CLASS, DUPLICATE, LOW_IOU, MISSED, CROWD = "wrong class", "duplicate", "low IoU", "missed", "crowd"


@dataclass(frozen=True)
class PRF:
    """Counts and rates at one score threshold (NaN where undefined: no detections, no GT)."""

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float


def _ious(dt_xywh: np.ndarray, gt_xywh: np.ndarray, iscrowd: np.ndarray) -> np.ndarray:
    """pycocotools' box IoU (what COCOeval uses: for a crowd GT, intersection over the detection's area)."""
    from pycocotools import mask as mask_utils

    if not len(dt_xywh) or not len(gt_xywh):
        return np.zeros((len(dt_xywh), len(gt_xywh)))
    return np.asarray(
        mask_utils.iou(
            np.ascontiguousarray(dt_xywh, np.float64),
            np.ascontiguousarray(gt_xywh, np.float64),
            [int(c) for c in iscrowd],
        ),
        dtype=np.float64,
    ).reshape(len(dt_xywh), len(gt_xywh))


def match_outcomes(
    gt: GroundTruth,
    detections: pd.DataFrame,
    threshold: float,
    iou: float = EVAL_IOU,
    *,
    model: str | None = None,
) -> pd.DataFrame:
    """One row per detection with score >= threshold on a matched image, one per missed GT box (OUTCOME_COLUMNS).

    Per image, detections are taken by decreasing score (ties in frame order); each takes the unmatched same-class
    GT box it overlaps most at IoU >= `iou`: a true positive ("tp"). Otherwise it is a false positive ("fp") with a
    reason: "duplicate" (a same-class GT it overlaps was already taken by a higher score), "wrong class" (it overlaps
    a GT of another class at IoU >= `iou`), "low IoU" (its best same-class IoU is below `iou`, or there is no GT). A
    detection on a crowd region is "ignored" (reason "crowd"), as in COCO. Unmatched non-crowd GT boxes are "fn"
    (reason "missed"). `iou` holds the IoU with the matched GT (tp) or the best same-class IoU (fp; NaN when no
    same-class GT); `gt_id` the GT annotation id (tp, fn, ignored).
    """
    dets, model_name = _one_model(detections, model)
    dets = dets[(dets["score"] >= threshold) & dets["image_id"].astype(str).isin(list(gt.image_id_map))]
    names = gt.class_names
    anns_by_image: dict[int, list[dict]] = {}
    for a in gt.coco["annotations"]:
        anns_by_image.setdefault(a["image_id"], []).append(a)
    det_groups = {str(k): g for k, g in dets.groupby(dets["image_id"].astype(str), sort=False)} if len(dets) else {}
    has_label = "label" in dets.columns
    rows: list[dict[str, Any]] = []
    for image_id, gt_image in gt.image_id_map.items():
        anns = anns_by_image.get(gt_image, [])
        g_box = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        g_lab = np.array([a["category_id"] for a in anns], dtype=np.int64)
        g_crowd = np.array([a["iscrowd"] for a in anns], dtype=np.int64)
        group = det_groups.get(image_id)
        if group is None:
            group = dets.iloc[0:0]
        order = np.argsort(-group["score"].to_numpy(np.float64), kind="mergesort")
        group = group.iloc[order]
        x1, y1 = group["x1"].to_numpy(np.float64), group["y1"].to_numpy(np.float64)
        x2, y2 = group["x2"].to_numpy(np.float64), group["y2"].to_numpy(np.float64)
        d_lab = group["label_id"].to_numpy(np.int64)
        ious = _ious(np.stack([x1, y1, x2 - x1, y2 - y1], axis=1), g_box, g_crowd)
        taken = np.zeros(len(anns), dtype=bool)
        for d in range(len(group)):
            same = g_lab == d_lab[d]
            row_iou = ious[d] if len(anns) else np.zeros(0)
            free = same & ~g_crowd.astype(bool) & ~taken & (row_iou >= iou)
            gt_id = None
            if free.any():
                m = int(np.flatnonzero(free)[np.argmax(row_iou[free])])
                taken[m] = True
                outcome, reason, best, gt_id = TP, "", float(row_iou[m]), anns[m]["id"]
            else:
                plain = same & ~g_crowd.astype(bool)
                best = float(row_iou[plain].max()) if plain.any() else math.nan
                crowd = same & g_crowd.astype(bool) & (row_iou >= iou)
                if crowd.any():
                    outcome, reason, gt_id = IGNORED, CROWD, anns[int(np.flatnonzero(crowd)[0])]["id"]
                elif (plain & taken & (row_iou >= iou)).any():
                    outcome, reason = FP, DUPLICATE
                elif (~same & ~g_crowd.astype(bool) & (row_iou >= iou)).any():
                    outcome, reason = FP, WRONG_CLASS
                else:
                    outcome, reason = FP, LOW_IOU
            rows.append(
                {
                    "image_id": image_id,
                    "model": str(group["model"].iloc[d]) if "model" in group else model_name,
                    "outcome": outcome,
                    "reason": reason,
                    "label_id": int(d_lab[d]),
                    "label": str(group["label"].iloc[d]) if has_label else names.get(int(d_lab[d]), str(d_lab[d])),
                    "score": float(group["score"].iloc[d]),
                    "iou": best,
                    "x1": x1[d],
                    "y1": y1[d],
                    "x2": x2[d],
                    "y2": y2[d],
                    "gt_id": gt_id,
                }
            )
        for m, a in enumerate(anns):
            if not taken[m] and not a["iscrowd"]:
                x, y, w, h = a["bbox"]
                rows.append(
                    {
                        "image_id": image_id, "model": model_name, "outcome": FN, "reason": MISSED,
                        "label_id": a["category_id"], "label": names[a["category_id"]], "score": math.nan,
                        "iou": math.nan, "x1": x, "y1": y, "x2": x + w, "y2": y + h, "gt_id": a["id"],
                    }
                )  # fmt: skip
    frame = pd.DataFrame(rows, columns=list(OUTCOME_COLUMNS))
    return frame.astype(OUTCOME_DTYPES)


def prf_at(outcomes: pd.DataFrame) -> PRF:
    """Precision, recall and F1 of `match_outcomes` rows (one threshold; ignored boxes do not count)."""
    counts = outcomes["outcome"].value_counts()
    tp, fp, fn = (int(counts.get(k, 0)) for k in (TP, FP, FN))
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    if math.isnan(precision) or math.isnan(recall):
        f1 = math.nan
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PRF(tp=tp, fp=fp, fn=fn, precision=precision, recall=recall, f1=f1)
