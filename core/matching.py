"""Model agreement without ground truth: how often two detectors find the same objects on the same images.

Two boxes agree when they carry the same label and overlap at IoU >= `AGREEMENT_IOU`; pairs are taken greedily,
highest IoU first, each box used at most once. Only boxes with score >= the threshold take part. The rest of each
model's boxes are its `only_a` / `only_b` detections: objects one model sees and the other does not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torchvision.ops import box_iou

from core.config import AGREEMENT_IOU
from core.records import latest_run

PER_IMAGE_COLUMNS: tuple[str, ...] = ("image_id", "both", "only_a", "only_b", "mean_iou")


@dataclass(frozen=True)
class Agreement:
    """Matched and unmatched box counts of two models, per image and overall."""

    model_a: str
    model_b: str
    threshold: float
    iou: float
    per_image: pd.DataFrame  # PER_IMAGE_COLUMNS, one row per image (mean_iou NaN where nothing matched)
    both: int
    only_a: int
    only_b: int
    mean_iou: float  # over every matched pair; NaN when none

    @property
    def total(self) -> int:
        """Distinct objects seen by either model (a matched pair counts once)."""
        return self.both + self.only_a + self.only_b

    @property
    def agreement(self) -> float:
        """Share of objects both models found: both / (both + only_a + only_b); NaN with no boxes at all."""
        return self.both / self.total if self.total else math.nan


def match_boxes(
    boxes_a: np.ndarray,
    labels_a: Sequence[str] | np.ndarray,
    boxes_b: np.ndarray,
    labels_b: Sequence[str] | np.ndarray,
    iou: float = AGREEMENT_IOU,
) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching of same-label boxes (x1, y1, x2, y2) at IoU >= `iou`, highest IoU first.

    Returns `(index_a, index_b, iou)` triples sorted by decreasing IoU (ties by index).
    """
    boxes_a = np.array(boxes_a, dtype=np.float64).reshape(-1, 4)  # a writable copy: pandas hands out read-only views
    boxes_b = np.array(boxes_b, dtype=np.float64).reshape(-1, 4)
    labels_a = np.asarray(labels_a, dtype=object)
    labels_b = np.asarray(labels_b, dtype=object)
    if len(labels_a) != len(boxes_a) or len(labels_b) != len(boxes_b):
        raise ValueError("each box needs exactly one label")
    if not len(boxes_a) or not len(boxes_b):
        return []
    ious = box_iou(torch.from_numpy(boxes_a), torch.from_numpy(boxes_b)).numpy()
    ious = np.nan_to_num(ious, nan=0.0)  # degenerate (zero-area) boxes overlap nothing
    ious[labels_a[:, None] != labels_b[None, :]] = 0.0
    rows, cols = np.nonzero(ious >= iou)
    if not len(rows):
        return []
    values = ious[rows, cols]
    order = np.lexsort((cols, rows, -values))  # last key is the primary one
    used_a: set[int] = set()
    used_b: set[int] = set()
    pairs: list[tuple[int, int, float]] = []
    for k in order:
        i, j = int(rows[k]), int(cols[k])
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        pairs.append((i, j, float(values[k])))
    return pairs


def _boxes(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return df[["x1", "y1", "x2", "y2"]].to_numpy(dtype=np.float64), df["label"].astype(object).to_numpy()


def compare_models(
    detections: pd.DataFrame,
    model_a: str,
    model_b: str,
    *,
    threshold: float,
    iou: float = AGREEMENT_IOU,
    image_ids: Iterable[str] | None = None,
) -> Agreement:
    """Agreement of `model_a` and `model_b` on the boxes of `detections` (DETECTION_COLUMNS) with score >= threshold.

    `per_image` has one row per image in `image_ids` when given (pass the images both models processed, so that an
    image where neither found anything still counts), otherwise per image either model has any box for. Boxes on
    an image only one model has count as that model's `only_x`. Only the latest run of each (image, model) is used.
    """
    dets = latest_run(detections[detections["model"].isin([model_a, model_b])])
    if image_ids is None:
        ids = list(dict.fromkeys(dets["image_id"].astype(object)))
    else:
        ids = list(dict.fromkeys(image_ids))
        dets = dets[dets["image_id"].isin(ids)]
    dets = dets[dets["score"] >= threshold]
    # each model's boxes sorted by image (stable: stored order within an image), one slice per image: no per-image
    # pandas work, which dominated at thousands of images
    position = {image_id: k for k, image_id in enumerate(ids)}
    sides = {}
    for model in (model_a, model_b):
        part = dets[dets["model"] == model]
        keys = np.fromiter((position.get(i, -1) for i in part["image_id"]), dtype=np.int64, count=len(part))
        order = np.argsort(keys, kind="stable")
        boxes, labels = _boxes(part)
        starts = np.searchsorted(keys[order], np.arange(len(ids) + 1), side="left")
        sides[model] = (boxes[order], labels[order], starts)

    def side(model: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        boxes, labels, starts = sides[model]
        return boxes[starts[k] : starts[k + 1]], labels[starts[k] : starts[k + 1]]

    rows = []
    all_ious: list[float] = []
    for k, image_id in enumerate(ids):
        boxes_a, labels_a = side(model_a, k)
        boxes_b, labels_b = side(model_b, k)
        if not len(boxes_a) or not len(boxes_b):
            rows.append({"image_id": image_id, "both": 0, "only_a": len(boxes_a), "only_b": len(boxes_b),
                         "mean_iou": math.nan})  # fmt: skip
            continue
        pairs = match_boxes(boxes_a, labels_a, boxes_b, labels_b, iou=iou)
        ious = [p[2] for p in pairs]
        all_ious.extend(ious)
        rows.append(
            {
                "image_id": image_id,
                "both": len(pairs),
                "only_a": len(boxes_a) - len(pairs),
                "only_b": len(boxes_b) - len(pairs),
                "mean_iou": float(np.mean(ious)) if ious else math.nan,
            }
        )
    per_image = pd.DataFrame(rows, columns=list(PER_IMAGE_COLUMNS)).astype(
        {"image_id": "string", "both": "int64", "only_a": "int64", "only_b": "int64", "mean_iou": "float64"}
    )
    return Agreement(
        model_a=model_a,
        model_b=model_b,
        threshold=float(threshold),
        iou=float(iou),
        per_image=per_image,
        both=int(per_image["both"].sum()),
        only_a=int(per_image["only_a"].sum()),
        only_b=int(per_image["only_b"].sum()),
        mean_iou=float(np.mean(all_ious)) if all_ious else math.nan,
    )


def disagreement_per_image(
    detections: pd.DataFrame,
    models: Sequence[str],
    threshold: float,
    *,
    iou: float = AGREEMENT_IOU,
    image_ids: Iterable[str] | None = None,
) -> pd.Series:
    """image_id -> unmatched boxes (only_a + only_b) summed over consecutive pairs of `models`; 0 with one model.

    Indexed by `image_ids` when given, otherwise by every image any of `models` has a box for (at any score).
    """
    if image_ids is None:
        dets = detections[detections["model"].isin(list(models))]
        ids = list(dict.fromkeys(dets["image_id"].astype(object)))
    else:
        ids = list(dict.fromkeys(image_ids))
    total = pd.Series(0, index=pd.Index(ids, dtype="string", name="image_id"), dtype="int64", name="disagreement")
    for model_a, model_b in zip(models, models[1:]):
        per_image = compare_models(
            detections, model_a, model_b, threshold=threshold, iou=iou, image_ids=ids
        ).per_image.set_index("image_id")
        total = total.add(per_image["only_a"] + per_image["only_b"], fill_value=0).astype("int64")
    return total.rename("disagreement")
