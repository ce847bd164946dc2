"""Per-box outcomes at one score threshold: true positives, false positives with their reason, missed GT boxes.

COCO-style matching (greedy by score, one match per ground-truth box, crowd regions ignored), for overlays and for
precision, recall and F1 at the threshold (`prf_at`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.config import EVAL_IOU
from core.evalcore import greedy_match, match_order, matched_rows
from core.evaluate.groundtruth import GroundTruth, gt_boxes, one_model

OUTCOME_COLUMNS: tuple[str, ...] = (
    "image_id", "model", "outcome", "reason", "label_id", "label", "score", "iou", "x1", "y1", "x2", "y2", "gt_id",
)  # fmt: skip
OUTCOME_DTYPES: dict[str, str] = {
    "image_id": "string", "model": "string", "outcome": "string", "reason": "string", "label_id": "int64",
    "label": "string", "score": "float64", "iou": "float64", "x1": "float64", "y1": "float64", "x2": "float64",
    "y2": "float64", "gt_id": "Int64",
}  # fmt: skip
MATCH_DTYPES: dict[str, str] = OUTCOME_DTYPES | {"matched_score": "float64"}

# Outcomes and false-positive reasons (match_outcomes).
TP, FP, FN, IGNORED = "tp", "fp", "fn", "ignored"
WRONG_CLASS, DUPLICATE, LOW_IOU, MISSED, CROWD = "wrong class", "duplicate", "low IoU", "missed", "crowd"
OUTCOME_NAMES = np.array([TP, FP, IGNORED, FN], dtype=object)  # core.evalcore's OUT_* codes
REASON_NAMES = np.array(["", CROWD, DUPLICATE, WRONG_CLASS, LOW_IOU], dtype=object)  # its WHY_* codes


@dataclass(frozen=True)
class PRF:
    """Counts and rates at one score threshold (NaN where undefined: no detections, no GT)."""

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float


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
    same-class GT); `gt_id` the GT annotation id (tp, fn, ignored). Rows come image by image (in `gt.image_id_map`
    order), detections by decreasing score, then the image's missed boxes.

    The same as `outcomes_at(match_all(gt, detections, iou, model=model), threshold)`.
    """
    dets, model_name = one_model(detections, model)
    return outcomes_at(_match(gt, dets[dets["score"] >= threshold], model_name, iou), threshold)


def match_all(
    gt: GroundTruth, detections: pd.DataFrame, iou: float = EVAL_IOU, *, model: str | None = None
) -> pd.DataFrame:
    """`match_outcomes` at every threshold at once: every detection's outcome, every non-crowd GT box's match score.

    Greedy matching takes detections by decreasing score, so a detection's outcome depends only on the detections
    scored above it: removing every detection below a threshold leaves the outcomes of the others unchanged. A GT box
    is missed at a threshold when the detection that took it scores below it. The rows are those of `match_outcomes`
    at threshold 0 (GT rows for every non-crowd box), plus `matched_score` (on GT rows: the score of the detection
    that took the box; NaN when none did); `outcomes_at` picks a threshold's rows out without matching again.
    """
    return _match(gt, *one_model(detections, model), iou)


def _match(gt: GroundTruth, dets: pd.DataFrame, model_name: str, iou: float) -> pd.DataFrame:
    """`match_all` on one model's rows (`model_name` for the GT rows)."""
    ids = dets["image_id"].astype(str)
    position = {image_id: k for k, image_id in enumerate(gt.image_id_map)}
    keep = (ids.isin(list(position)) & dets["score"].notna()).to_numpy()
    dets, ids = dets[keep], ids[keep]
    d_img = ids.map(position).to_numpy(np.int64)
    score = dets["score"].to_numpy(np.float64)
    order = match_order(d_img, score)  # by image, then decreasing score; stable: ties in frame order
    d_img, score = d_img[order], score[order]
    x1, y1 = dets["x1"].to_numpy(np.float64)[order], dets["y1"].to_numpy(np.float64)[order]
    x2, y2 = dets["x2"].to_numpy(np.float64)[order], dets["y2"].to_numpy(np.float64)[order]
    d_xywh = np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)
    d_lab = dets["label_id"].to_numpy(np.int64)[order]

    boxes = gt_boxes(gt)  # the matched images' GT boxes, in annotation order
    ours = {gid: k for k, gid in enumerate(gt.image_id_map.values())}
    anns = [a for a in gt.coco["annotations"] if a["image_id"] in ours]
    g_img = np.array([ours[a["image_id"]] for a in anns], dtype=np.int64)
    g_xywh = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
    g_lab = boxes["label_id"].to_numpy(np.int64)
    g_crowd = boxes["iscrowd"].to_numpy(np.int64).astype(bool)

    n = len(score)
    m = greedy_match(d_img, score, d_lab, d_xywh, g_img, g_lab, g_xywh, g_crowd, iou)
    outcome, reason = OUTCOME_NAMES[m.outcome], REASON_NAMES[m.reason]
    best, gt_pos, matched_score = m.iou, m.gt_index, m.matched_score

    gt_ids = boxes["gt_id"].to_numpy(np.int64)
    det_frame = pd.DataFrame(
        {
            "image_id": ids.to_numpy()[order].astype(str) if n else np.array([], dtype=str),
            "model": [str(v) for v in dets["model"].to_numpy()[order]] if "model" in dets else [model_name] * n,
            "outcome": outcome,
            "reason": reason,
            "label_id": d_lab,
            "label": [str(v) for v in dets["label"].to_numpy()[order]]
            if "label" in dets
            else [gt.class_names.get(int(v), str(v)) for v in d_lab],
            "score": score,
            "iou": best,
            "x1": x1,
            "y1": y1,
            "x2": x2,
            "y2": y2,
            "gt_id": pd.arrays.IntegerArray(np.append(gt_ids, 0)[gt_pos], gt_pos < 0),  # -1: the appended 0, masked
            "matched_score": math.nan,
        }
    )
    missed = ~g_crowd
    gt_frame = pd.DataFrame(
        {
            "image_id": boxes["image_id"].to_numpy()[missed],
            "model": model_name,
            "outcome": FN,
            "reason": MISSED,
            "label_id": g_lab[missed],
            "label": boxes["label"].to_numpy()[missed],
            "score": math.nan,
            "iou": math.nan,
            **{c: boxes[c].to_numpy(np.float64)[missed] for c in ("x1", "y1", "x2", "y2")},
            "gt_id": gt_ids[missed],
            "matched_score": matched_score[missed],
        }
    )
    # Image by image: the detections, then the GT boxes.
    frame = pd.concat([det_frame, gt_frame], ignore_index=True) if len(gt_frame) else det_frame
    frame = frame.iloc[matched_rows(m, d_img, g_img, g_crowd)].reset_index(drop=True)
    return frame.astype(MATCH_DTYPES)


def outcomes_at(matched: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """The `match_outcomes` rows at `threshold` from `match_all` rows: detections scored >= threshold, and the GT
    boxes not taken by one of them (a filter: no matching again)."""
    is_gt = (matched["outcome"] == FN).to_numpy(bool)
    score = matched["score"].to_numpy(np.float64)
    taken_at = matched["matched_score"].to_numpy(np.float64)
    keep = np.where(is_gt, ~(taken_at >= threshold), score >= threshold)
    return matched.loc[keep, list(OUTCOME_COLUMNS)].reset_index(drop=True)


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
