"""`match_outcomes` (vectorized, threshold-free `match_all` + `outcomes_at`) gives exactly the rows of the original
per-detection loop, kept here as the reference, on randomized cases with ties, crowds, duplicates and empty images."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from core.config import DETECTION_COLUMNS
from core.evaluate import (
    OUTCOME_COLUMNS,
    OUTCOME_DTYPES,
    GroundTruth,
    default_categories,
    load_ground_truth,
    match_outcomes,
)
from core.evaluate import outcomes as oc
from core.evaluate.groundtruth import one_model
from core.evaluate.outcomes import match_all, outcomes_at
from core.records import coerce_detections

NAMES = default_categories()
CATS = (1, 3, 17, 18)


# --- the reference: the per-detection loop match_outcomes was before it was vectorized --------------------------------


def _reference_ious(dt_xywh: np.ndarray, gt_xywh: np.ndarray, iscrowd: np.ndarray) -> np.ndarray:
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


def reference_match_outcomes(
    gt: GroundTruth, detections: pd.DataFrame, threshold: float, iou: float = 0.5, *, model: str | None = None
) -> pd.DataFrame:
    dets, model_name = one_model(detections, model)
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
        ious = _reference_ious(np.stack([x1, y1, x2 - x1, y2 - y1], axis=1), g_box, g_crowd)
        taken = np.zeros(len(anns), dtype=bool)
        for d in range(len(group)):
            same = g_lab == d_lab[d]
            row_iou = ious[d] if len(anns) else np.zeros(0)
            free = same & ~g_crowd.astype(bool) & ~taken & (row_iou >= iou)
            gt_id = None
            if free.any():
                m = int(np.flatnonzero(free)[np.argmax(row_iou[free])])
                taken[m] = True
                outcome, reason, best, gt_id = oc.TP, "", float(row_iou[m]), anns[m]["id"]
            else:
                plain = same & ~g_crowd.astype(bool)
                best = float(row_iou[plain].max()) if plain.any() else math.nan
                crowd = same & g_crowd.astype(bool) & (row_iou >= iou)
                if crowd.any():
                    outcome, reason, gt_id = oc.IGNORED, oc.CROWD, anns[int(np.flatnonzero(crowd)[0])]["id"]
                elif (plain & taken & (row_iou >= iou)).any():
                    outcome, reason = oc.FP, oc.DUPLICATE
                elif (~same & ~g_crowd.astype(bool) & (row_iou >= iou)).any():
                    outcome, reason = oc.FP, oc.WRONG_CLASS
                else:
                    outcome, reason = oc.FP, oc.LOW_IOU
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
                        "image_id": image_id, "model": model_name, "outcome": oc.FN, "reason": oc.MISSED,
                        "label_id": a["category_id"], "label": names[a["category_id"]], "score": math.nan,
                        "iou": math.nan, "x1": x, "y1": y, "x2": x + w, "y2": y + h, "gt_id": a["id"],
                    }
                )  # fmt: skip
    frame = pd.DataFrame(rows, columns=list(OUTCOME_COLUMNS))
    return frame.astype(OUTCOME_DTYPES)


# --- randomized cases -------------------------------------------------------------------------------------------------


def random_case(seed: int, n_images: int = 12, grid: bool = False) -> tuple[GroundTruth, pd.DataFrame]:
    """GT with crowds and empty images, two models' detections: jittered copies (some of another class), exact
    duplicates, tied scores, false positives, and boxes on an image the GT does not have. `grid`: integer boxes on a
    coarse grid, so that IoUs tie exactly."""
    rng = np.random.default_rng(seed)
    images, anns, rows = [], [], []
    for i in range(n_images):
        w, h = int(rng.integers(100, 300)), int(rng.integers(100, 300))
        images.append({"id": i + 1, "file_name": f"i{i}.jpg", "width": w, "height": h})
        gts = []
        for _ in range(int(rng.integers(0, 7))):
            if grid:
                bw, bh = float(rng.integers(2, 5) * 20), float(rng.integers(2, 5) * 20)
                x, y = float(rng.integers(0, (w - bw) // 20 + 1) * 20), float(rng.integers(0, (h - bh) // 20 + 1) * 20)
            else:
                bw, bh = rng.uniform(5, w / 2), rng.uniform(5, h / 2)
                x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            cat = int(rng.choice(CATS))
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat, "bbox": [x, y, bw, bh],
                         "iscrowd": int(rng.random() < 0.1)})  # fmt: skip
            gts.append((cat, x, y, bw, bh))
        for model in ("a", "b"):
            boxes = []
            for cat, x, y, bw, bh in gts:
                for _ in range(int(rng.integers(0, 4))):
                    j = np.zeros(4) if grid and rng.random() < 0.5 else rng.normal(0, 0.15, 4) * [bw, bh, bw, bh]
                    c = cat if rng.random() < 0.8 else int(rng.choice(CATS))
                    boxes.append((c, x + j[0], y + j[1], max(bw + j[2], 1.0), max(bh + j[3], 1.0)))
            if boxes and rng.random() < 0.5:
                boxes.append(boxes[int(rng.integers(len(boxes)))])  # an exact duplicate
            for _ in range(int(rng.integers(0, 4))):
                boxes.append((int(rng.choice(CATS)), rng.uniform(0, w / 2), rng.uniform(0, h / 2), w / 4, h / 4))
            for c, x, y, bw, bh in boxes:
                rows.append({"run_id": "r", "image_id": f"{i:016x}", "model": model, "label_id": c, "label": NAMES[c],
                             "score": float(rng.choice([0.3, 0.5, 0.9])) if rng.random() < 0.3 else float(rng.random()),
                             "x1": x, "y1": y, "x2": x + bw, "y2": y + bh})  # fmt: skip
    rows.append({"run_id": "r", "image_id": "f" * 16, "model": "a", "label_id": 1, "label": NAMES[1], "score": 0.99,
                 "x1": 0.0, "y1": 0.0, "x2": 10.0, "y2": 10.0})  # fmt: skip  # an image without GT
    doc = {"images": images, "annotations": anns,
           "categories": [{"id": c, "name": NAMES[c]} for c in CATS]}  # fmt: skip
    names = {f"{i:016x}": f"i{i}.jpg" for i in range(n_images)} | {"f" * 16: "elsewhere.jpg"}
    gt = load_ground_truth(json.dumps(doc).encode(), image_names=names)
    return gt, coerce_detections(pd.DataFrame(rows, columns=list(DETECTION_COLUMNS)))


# seeds 0-3 in the quick loop, 4-7 as well in the full suite (each case is ten matchings against the slow reference)
CASES = [
    pytest.param(seed, grid, marks=(pytest.mark.slow,) if seed >= 4 else ())
    for seed in range(8)
    for grid in (False, True)
]


@pytest.mark.parametrize(("seed", "grid"), CASES)
@pytest.mark.parametrize("iou", [0.5, 0.75, 0.0])
def test_match_outcomes_equals_the_reference(seed, grid, iou):
    gt, det = random_case(seed, grid=grid)
    reasons = set()
    for model in ("a", "b"):
        for threshold in (0.0, 0.3, 0.5, 0.9, 1.0):
            want = reference_match_outcomes(gt, det, threshold, iou, model=model)
            got = match_outcomes(gt, det, threshold, iou, model=model)
            pd.testing.assert_frame_equal(got, want, check_exact=True)
            reasons |= set(want["reason"])
    if iou == 0.5 and seed == 0:
        assert {"", oc.LOW_IOU, oc.MISSED, oc.DUPLICATE} <= reasons, "the cases exercise the reasons"


# seed 0 in the quick loop, seeds 1-2 as well in the full suite
MATCH_ALL_CASES = [
    pytest.param(seed, grid, marks=(pytest.mark.slow,) if seed >= 1 else ())
    for seed in range(3)
    for grid in (False, True)
]


@pytest.mark.parametrize(("seed", "grid"), MATCH_ALL_CASES)
def test_match_all_then_outcomes_at_is_match_outcomes_at_every_threshold(seed, grid):
    """Matched once without a threshold, filtered per threshold: the same rows as matching at that threshold."""
    gt, det = random_case(seed, grid=grid)
    for model in ("a", "b"):
        once = match_all(gt, det, model=model)
        for threshold in sorted({0.0, 0.3, 0.5, 0.9, 1.0, *det["score"].sample(5, random_state=seed)}):
            want = reference_match_outcomes(gt, det, threshold, model=model)
            pd.testing.assert_frame_equal(outcomes_at(once, threshold), want, check_exact=True)


def test_no_detections_and_no_model_column():
    gt, det = random_case(3)
    empty = det.iloc[0:0]
    pd.testing.assert_frame_equal(match_outcomes(gt, empty, 0.5), reference_match_outcomes(gt, empty, 0.5))
    plain = det[det["model"] == "a"].drop(columns=["model", "label"])
    pd.testing.assert_frame_equal(match_outcomes(gt, plain, 0.4), reference_match_outcomes(gt, plain, 0.4))
    assert (match_outcomes(gt, empty, 0.5)["outcome"] == oc.FN).all()
