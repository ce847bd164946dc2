"""Box-level matching of a series at IoU 0.5 and what is read from it: the confusion matrix with a background row and
column, per-image counts and the worst images.

Matching is COCO-style and greedy (`core.evalcore.greedy_match`: detections by decreasing score, each takes the free
same-class box it overlaps most at IoU >= 0.5; crowd regions ignore what falls on them), so a detection's outcome
does not depend on the threshold: the boxes above a threshold are read out of one matching. The confusion matrix
then pairs the detections left over with the boxes left over whatever their class (again greedily, IoU >= 0.5): a
true class c detected as c' is the cell (c, c'); a box nobody took is (c, background), a detection on nothing is
(background, c'). Its diagonal is the true positives at the threshold, so it agrees with precision and recall.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.config import EVAL_IOU
from core.evalcore import OUT_IGNORED, OUT_TP, greedy_match, match_order
from core.evaluate.series import Series, SeriesSet

BACKGROUND = "background"
WORST_COLUMNS: tuple[str, ...] = ("image", "name", "tp", "fp", "fn", "precision", "recall", "f1", "errors")


@dataclass
class Matched:
    """One series matched at IoU `iou`: per detection (score order within image) and per ground-truth box."""

    image_ids: np.ndarray  # (I,) ground-truth image ids; d_img/g_img index into it
    d_row: np.ndarray  # index into the series' arrays
    d_img: np.ndarray
    d_cls: np.ndarray
    d_score: np.ndarray
    d_xywh: np.ndarray
    tp: np.ndarray  # bool
    ignored: np.ndarray  # bool: on a crowd region
    g_img: np.ndarray
    g_cls: np.ndarray
    g_xywh: np.ndarray
    g_crowd: np.ndarray
    g_area: np.ndarray
    g_score: np.ndarray  # score of the detection that took the box (NaN: none)


def match_series(ss: SeriesSet, s: Series, iou: float = EVAL_IOU) -> Matched:
    """Match series `s` on its images against the ground truth."""
    ids = s.images
    gt = ss.gt_arrays(ids)
    on = np.isin(s.img, ids)
    rows = np.flatnonzero(on)
    d_img = np.searchsorted(ids, s.img[rows])
    order = match_order(d_img, s.score[rows])
    rows, d_img = rows[order], d_img[order]
    d_xywh = s.xywh[rows]
    g_img = np.searchsorted(ids, gt["img"])
    m = greedy_match(d_img, s.score[rows], s.cls[rows], d_xywh, g_img, gt["cls"], gt["xywh"], gt["crowd"], iou)
    return Matched(ids, rows, d_img, s.cls[rows], s.score[rows], d_xywh, m.outcome == OUT_TP,
                   m.outcome == OUT_IGNORED, g_img, gt["cls"], gt["xywh"], gt["crowd"], gt["area"],
                   m.matched_score)  # fmt: skip


@dataclass
class Confusion:
    """Counts (true class + background rows, predicted class + background columns) and each cell's images."""

    labels: list[str]  # the classes with a box or a detection above the threshold, then BACKGROUND
    counts: np.ndarray  # (L, L): [true, predicted]
    images: dict[tuple[int, int], list[int]]  # (row, column) -> ground-truth image ids, first seen first

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.counts, index=pd.Index(self.labels, name="true"),
                            columns=pd.Index(self.labels, name="predicted"))  # fmt: skip


def confusion(ss: SeriesSet, m: Matched, threshold: float, iou: float = EVAL_IOU) -> Confusion:
    """The confusion matrix of the detections scoring >= `threshold` (see the module docstring)."""
    names = ss.class_names
    above = (m.d_score >= threshold) & ~m.ignored
    # the classes in play: a box on the images, or a detection above the threshold (not every category of the file)
    classes = sorted(set(np.unique(m.g_cls[~m.g_crowd]).tolist()) | set(np.unique(m.d_cls[above]).tolist()))
    index = {c: k for k, c in enumerate(classes)}
    bg = len(classes)
    d_left = above & ~m.tp
    g_taken = np.isfinite(m.g_score) & (m.g_score >= threshold)
    g_left = ~g_taken & ~m.g_crowd
    dl, gl = np.flatnonzero(d_left), np.flatnonzero(g_left)
    zeros_d, zeros_g = np.zeros(len(dl), np.int64), np.zeros(len(gl), np.int64)
    m2 = greedy_match(m.d_img[dl], m.d_score[dl], zeros_d, m.d_xywh[dl], m.g_img[gl], zeros_g, m.g_xywh[gl],
                      np.zeros(len(gl), bool), iou, wrong_class=False)  # fmt: skip
    pairs: list[tuple[int, int, int]] = []  # (row, column, image index)
    tp = np.flatnonzero(above & m.tp)
    pairs += zip([index[c] for c in m.d_cls[tp].tolist()], [index[c] for c in m.d_cls[tp].tolist()],
                 m.d_img[tp].tolist(), strict=True)  # fmt: skip
    hit = m2.outcome == OUT_TP
    took = np.zeros(len(gl), bool)
    took[m2.gt_index[hit]] = True
    d_hit, g_hit = dl[hit], gl[m2.gt_index[hit]]
    pairs += zip([index[c] for c in m.g_cls[g_hit].tolist()], [index[c] for c in m.d_cls[d_hit].tolist()],
                 m.d_img[d_hit].tolist(), strict=True)  # fmt: skip
    fp = dl[~hit]
    pairs += zip([bg] * len(fp), [index[c] for c in m.d_cls[fp].tolist()], m.d_img[fp].tolist(), strict=True)
    fn = gl[~took]
    pairs += zip([index[c] for c in m.g_cls[fn].tolist()], [bg] * len(fn), m.g_img[fn].tolist(), strict=True)
    counts = np.zeros((bg + 1, bg + 1), dtype=np.int64)
    images: dict[tuple[int, int], list[int]] = {}
    for r, c, i in pairs:
        counts[r, c] += 1
        cell = images.setdefault((r, c), [])
        image_id = int(m.image_ids[i])
        if image_id not in cell:
            cell.append(image_id)
    labels = [names.get(c, str(c)) for c in classes] + [BACKGROUND]
    return Confusion(labels, counts, images)


def image_counts(ss: SeriesSet, m: Matched, threshold: float) -> pd.DataFrame:
    """Per image at `threshold`: true positives, false positives, missed boxes, precision, recall, F1 and the error
    count (false positives + missed), worst first (lowest F1, then most errors); NaN where a rate is undefined."""
    n = len(m.image_ids)
    above = (m.d_score >= threshold) & ~m.ignored
    tp = np.bincount(m.d_img[above & m.tp], minlength=n)
    fp = np.bincount(m.d_img[above & ~m.tp], minlength=n)
    n_gt = np.bincount(m.g_img[~m.g_crowd], minlength=n)
    fn = n_gt - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), math.nan)
        recall = np.where(n_gt > 0, tp / n_gt, math.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), math.nan)
    frame = pd.DataFrame({
        "image": m.image_ids, "name": [ss.image_names.get(int(i), str(i)) for i in m.image_ids], "tp": tp, "fp": fp,
        "fn": fn, "precision": precision, "recall": recall, "f1": f1, "errors": fp + fn,
    })  # fmt: skip
    return frame.sort_values(["f1", "errors"], ascending=[True, False], na_position="last", kind="stable")


def worst_images(ss: SeriesSet, m: Matched, threshold: float, *, by: str = "f1", n: int = 20) -> pd.DataFrame:
    """The `n` worst images by per-image F1 (lowest first; images with nothing to score last) or error count."""
    frame = image_counts(ss, m, threshold)
    if by == "errors":
        frame = frame.sort_values(["errors", "f1"], ascending=[False, True], kind="stable")
    elif by != "f1":
        raise ValueError(f"by must be 'f1' or 'errors', not {by!r}")
    return frame.head(n).reset_index(drop=True)
