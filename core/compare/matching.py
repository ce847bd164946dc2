"""Model agreement without ground truth: how often two detectors find the same objects on the same images.

Two boxes agree when they carry the same label and overlap at IoU >= `AGREEMENT_IOU`; pairs are taken greedily,
highest IoU first, each box used at most once. Only boxes with score >= the threshold take part. The rest of each
model's boxes are its `only_a` / `only_b` detections: objects one model sees and the other does not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torchvision.ops import box_iou

from core.config import AGREEMENT_IOU
from core.evalcore.matching import key_pairs
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


@dataclass(frozen=True)
class GroupedMatches:
    """Matched pairs of many images at once (`match_grouped`), in the order image by image matching lists them."""

    a: np.ndarray  # int64: index of the A box
    b: np.ndarray  # int64: index of the B box
    iou: np.ndarray  # float64
    group: np.ndarray  # int64: the image (group) of the pair


def pair_ious(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of row k of `boxes_a` with row k of `boxes_b`, with the very operations of torchvision's `box_iou`
    (float64), so the values are bit for bit those of the image by image path; NaN (degenerate boxes) becomes 0."""
    area_a = (boxes_a[:, 2] - boxes_a[:, 0]) * (boxes_a[:, 3] - boxes_a[:, 1])
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]) * (boxes_b[:, 3] - boxes_b[:, 1])
    w = np.clip(np.minimum(boxes_a[:, 2], boxes_b[:, 2]) - np.maximum(boxes_a[:, 0], boxes_b[:, 0]), 0, None)
    h = np.clip(np.minimum(boxes_a[:, 3], boxes_b[:, 3]) - np.maximum(boxes_a[:, 1], boxes_b[:, 1]), 0, None)
    inter = w * h
    with np.errstate(divide="ignore", invalid="ignore"):
        ious = inter / (area_a + area_b - inter)
    return np.nan_to_num(ious, nan=0.0)


def match_grouped(
    group_a: np.ndarray,
    label_a: np.ndarray,
    boxes_a: np.ndarray,
    group_b: np.ndarray,
    label_b: np.ndarray,
    boxes_b: np.ndarray,
    iou: float = AGREEMENT_IOU,
) -> GroupedMatches:
    """`match_boxes` on every group (image) at once, without a Python loop over groups; exactly its pairs.

    Groups and labels are non-negative integer codes; within a group, box order is the order of the indices (what
    `match_boxes` gets as positions). The greedy highest-IoU-first assignment is done in rounds: with edges totally
    ordered by (IoU descending, index A, index B), an edge that comes first for both its boxes is one the greedy pass
    takes; taking all such edges and dropping the other edges of their boxes, round after round, gives the greedy
    matching (ties broken the same way). Pairs come back by group, then as `match_boxes` orders them.
    """
    group_a, group_b = np.asarray(group_a, np.int64), np.asarray(group_b, np.int64)
    label_a, label_b = np.asarray(label_a, np.int64), np.asarray(label_b, np.int64)
    boxes_a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    boxes_b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    empty = GroupedMatches(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64))
    if not len(group_a) or not len(group_b):
        return empty
    n_labels = int(max(label_a.max(), label_b.max())) + 1
    i, j = key_pairs(group_a * n_labels + label_a, group_b * n_labels + label_b)
    values = pair_ious(boxes_a[i], boxes_b[j])
    hit = values >= iou
    i, j, values = i[hit], j[hit], values[hit]
    # the greedy order of each group; groups never share a box, so one global order serves them all
    order = np.lexsort((j, i, -values, group_a[i]))
    i, j, values = i[order], j[order], values[order]
    chosen = np.zeros(len(i), dtype=bool)
    alive = np.ones(len(i), dtype=bool)
    used_a = np.zeros(len(boxes_a), dtype=bool)
    used_b = np.zeros(len(boxes_b), dtype=bool)
    while alive.any():
        live = np.flatnonzero(alive)
        # first live edge of each box (edges are in rank order, np.unique returns first occurrences)
        _, first_a = np.unique(i[live], return_index=True)
        _, first_b = np.unique(j[live], return_index=True)
        best_a = np.zeros(len(live), dtype=bool)
        best_b = np.zeros(len(live), dtype=bool)
        best_a[first_a] = True
        best_b[first_b] = True
        take = live[best_a & best_b]
        chosen[take] = True
        used_a[i[take]] = True
        used_b[j[take]] = True
        alive[live] = ~(used_a[i[live]] | used_b[j[live]])
    return GroupedMatches(i[chosen], j[chosen], values[chosen], group_a[i[chosen]])


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
    index = pd.Index(ids, dtype=object)
    codes, _ = pd.factorize(dets["label"].astype(object), use_na_sentinel=False)
    sides = []
    for model in (model_a, model_b):
        mask = (dets["model"] == model).to_numpy()
        part = dets[mask]
        group = index.get_indexer(part["image_id"].astype(object))
        keep = group >= 0
        sides.append(CodedBoxes(group[keep], codes[mask][keep], _boxes(part)[0][keep]))
    return agreement_of_groups(index, model_a, model_b, threshold, iou, *sides)


class CodedBoxes(NamedTuple):
    """One side's boxes, already thresholded and coded: `group` is each box's position in the image list, `label` an
    integer label code shared by both sides; within an image, boxes in stored order."""

    group: np.ndarray
    label: np.ndarray
    boxes: np.ndarray


def agreement_of_groups(
    image_ids: Sequence[str] | pd.Index, model_a: str, model_b: str, threshold: float, iou: float,
    side_a: CodedBoxes, side_b: CodedBoxes,
) -> Agreement:  # fmt: skip
    """The Agreement of two sides' coded boxes (`CodedBoxes`, groups are positions in `image_ids`)."""
    n = len(image_ids)
    (group_a, label_a, boxes_a), (group_b, label_b, boxes_b) = side_a, side_b
    matches = match_grouped(group_a, label_a, boxes_a, group_b, label_b, boxes_b, iou=iou)
    both = np.bincount(matches.group, minlength=n)
    count_a = np.bincount(np.asarray(group_a, np.int64), minlength=n)
    count_b = np.bincount(np.asarray(group_b, np.int64), minlength=n)
    mean_iou = np.full(n, math.nan)
    if len(matches.iou):
        firsts = np.flatnonzero(np.r_[True, matches.group[1:] != matches.group[:-1]])
        groups = matches.group[firsts]
        sizes = both[groups]
        # np.mean of each image's IoUs, bit for bit: np.add.reduceat adds in another order (last-digit differences),
        # a row reduction of an (images, n) block adds each row as np.mean adds a 1-D array of n; one block per n
        for n in np.unique(sizes):
            picked = np.flatnonzero(sizes == n)
            block = matches.iou[firsts[picked][:, None] + np.arange(n)]
            mean_iou[groups[picked]] = np.add.reduce(block, axis=1) / n
    per_image = pd.DataFrame(
        {
            "image_id": pd.array(np.asarray(image_ids, dtype=object), dtype="string"),
            "both": both.astype("int64"),
            "only_a": (count_a - both).astype("int64"),
            "only_b": (count_b - both).astype("int64"),
            "mean_iou": mean_iou,
        },
        columns=list(PER_IMAGE_COLUMNS),
    )
    return Agreement(
        model_a=model_a,
        model_b=model_b,
        threshold=float(threshold),
        iou=float(iou),
        per_image=per_image,
        both=int(both.sum()),
        only_a=int((count_a - both).sum()),
        only_b=int((count_b - both).sum()),
        mean_iou=float(np.mean(matches.iou)) if len(matches.iou) else math.nan,
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
