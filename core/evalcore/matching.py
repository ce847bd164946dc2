"""Greedy matching of detections to ground-truth boxes, every image at once, and pycocotools' box IoU.

- `coco_pair_ious`: pycocotools' box IoU (`maskApi.c` `bbIou`, the one COCOeval uses) of given (detection, GT) pairs, the
  same float operations in the same order, so the values are bit for bit pycocotools'.
- `greedy_match`: `core.evaluate.match_all`'s matching of every detection of many images at once: every same-image
  (detection, GT) pair's IoU in one numpy pass, and a Python step only over the candidate pairs (same class, not crowd,
  IoU >= the threshold), in score order: the detection takes its best free candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Outcome and reason codes of `greedy_match` (core.evaluate.outcomes names them).
OUT_TP, OUT_FP, OUT_IGNORED, OUT_FN = 0, 1, 2, 3
WHY_NONE, WHY_CROWD, WHY_DUPLICATE, WHY_WRONG_CLASS, WHY_LOW_IOU = 0, 1, 2, 3, 4
PAIR_CHUNK = 4_000_000  # (detection, GT) pairs held at once by greedy_match (a few hundred MB at most)


def coco_pair_ious(d_xywh: np.ndarray, g_xywh: np.ndarray, g_crowd: np.ndarray) -> np.ndarray:
    """IoU of each (detection, GT) pair (rows of `d_xywh` and `g_xywh`, [x, y, w, h]); for a crowd GT the
    intersection over the detection's area. pycocotools' `bbIou` operation by operation (0 where they do not meet)."""
    dx, dy, dw, dh = (d_xywh[:, k] for k in range(4))
    gx, gy, gw, gh = (g_xywh[:, k] for k in range(4))
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    meet = (w > 0) & (h > 0)
    inter = w * h
    da = dw * dh
    union = np.where(g_crowd, da, da + gw * gh - inter)
    out = np.zeros(len(d_xywh))
    np.divide(inter, union, out=out, where=meet)
    return out


@dataclass(frozen=True)
class Matching:
    """`greedy_match`'s per-detection outcome (OUT_*), reason (WHY_*), IoU (matched GT, else best same-class, NaN when
    no same-class GT), GT index (the matched or crowd GT, -1 none), and per GT box the matched detection's score."""

    outcome: np.ndarray
    reason: np.ndarray
    iou: np.ndarray
    gt_index: np.ndarray
    matched_score: np.ndarray


def key_pairs(key_a: np.ndarray, key_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (i, j) with key_a[i] == key_b[j], i ascending then j ascending (keys: non-negative int64)."""
    order_a = np.argsort(key_a, kind="stable")
    order_b = np.argsort(key_b, kind="stable")
    sorted_a, sorted_b = key_a[order_a], key_b[order_b]
    keys, start_a, count_a = np.unique(sorted_a, return_index=True, return_counts=True)
    start_b = np.searchsorted(sorted_b, keys, side="left")
    count_b = np.searchsorted(sorted_b, keys, side="right") - start_b
    # each A box (in key order) pairs with every B box of its key
    per_a = np.repeat(count_b, count_a)
    first_b = np.repeat(start_b, count_a)
    keep = per_a > 0
    rows_a, per_a, first_b = order_a[keep], per_a[keep], first_b[keep]
    total = int(per_a.sum())
    if not total:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    offsets = np.cumsum(per_a) - per_a
    local = np.arange(total, dtype=np.int64) - np.repeat(offsets, per_a)
    i = np.repeat(rows_a, per_a).astype(np.int64)
    j = order_b[np.repeat(first_b, per_a) + local].astype(np.int64)
    return i, j


def greedy_match(
    d_img: np.ndarray,
    d_score: np.ndarray,
    d_lab: np.ndarray,
    d_xywh: np.ndarray,
    g_img: np.ndarray,
    g_lab: np.ndarray,
    g_xywh: np.ndarray,
    g_crowd: np.ndarray,
    iou: float,
    *,
    wrong_class: bool = True,
) -> Matching:
    """COCO-style greedy matching, image by image, of detections sorted by (image, decreasing score) against GT boxes
    (any order; ties between equal IoUs go to the GT listed first). See `core.evaluate.match_outcomes`.

    `wrong_class=False` pairs each detection only with the GT boxes of its own class (a fraction of the pairs): every
    figure is the same except the reason of a detection that overlaps only another class's box, LOW_IOU instead of
    WRONG_CLASS (what the precision and recall at a threshold do not need)."""
    if wrong_class or not len(d_img) or not len(g_img):
        return _greedy(d_img, d_score, d_lab, d_xywh, g_img, g_lab, g_xywh, g_crowd, iou)
    # Groups of (image, class): the same greedy steps, since a detection only ever takes a box of its class.
    labels = np.unique(np.concatenate([d_lab, g_lab]))
    d_key = d_img * len(labels) + np.searchsorted(labels, d_lab)
    g_key = g_img * len(labels) + np.searchsorted(labels, g_lab)
    perm = np.argsort(d_key, kind="stable")  # keeps the score order within each group
    m = _greedy(d_key[perm], d_score[perm], d_lab[perm], d_xywh[perm], g_key, g_lab, g_xywh, g_crowd, iou)
    fields = {}
    for name in ("outcome", "reason", "iou", "gt_index"):
        out = np.empty_like(getattr(m, name))
        out[perm] = getattr(m, name)
        fields[name] = out
    return Matching(**fields, matched_score=m.matched_score)


def _greedy(d_img, d_score, d_lab, d_xywh, g_img, g_lab, g_xywh, g_crowd, iou) -> Matching:  # noqa: ANN001
    """`greedy_match` over groups `d_img`/`g_img` (sorted detections)."""
    n, n_gt = len(d_img), len(g_img)
    outcome = np.full(n, OUT_FP, dtype=np.int8)
    reason = np.full(n, WHY_LOW_IOU, dtype=np.int8)
    best = np.full(n, math.nan)
    gt_index = np.full(n, -1, dtype=np.int64)
    matched_score = np.full(n_gt, math.nan)
    if not n or not n_gt:
        return Matching(outcome, reason, best, gt_index, matched_score)
    g_crowd = np.asarray(g_crowd, dtype=bool)
    n_img = int(max(d_img.max(), g_img.max())) + 1
    g_order = np.argsort(g_img, kind="stable")  # by image, annotation order within
    g_start = np.searchsorted(g_img[g_order], np.arange(n_img + 1))
    per_det = (g_start[1:] - g_start[:-1])[d_img]  # GT boxes on each detection's image
    # Chunks of whole images, about PAIR_CHUNK pairs each (images are independent).
    d_start = np.searchsorted(d_img, np.arange(n_img + 1))
    pairs = np.concatenate([[0], np.cumsum((d_start[1:] - d_start[:-1]) * (g_start[1:] - g_start[:-1]))])
    inner = np.searchsorted(pairs, np.arange(PAIR_CHUNK, pairs[-1], PAIR_CHUNK))
    cuts = d_start[np.unique(np.concatenate([[0], inner, [n_img]]))].tolist()
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        _match_chunk(a, b, d_img, d_score, d_lab, d_xywh, g_order, g_start, per_det, g_lab, g_xywh, g_crowd, iou,
                     outcome, reason, best, gt_index, matched_score)  # fmt: skip
    return Matching(outcome, reason, best, gt_index, matched_score)


def _match_chunk(a, b, d_img, d_score, d_lab, d_xywh, g_order, g_start, per_det, g_lab, g_xywh, g_crowd, iou,
                 outcome, reason, best, gt_index, matched_score) -> None:  # fmt: skip
    """`greedy_match` of detections a..b (whole images), writing into the output arrays."""
    counts = per_det[a:b]
    total = int(counts.sum())
    if not total:
        return
    pd_ = np.repeat(np.arange(a, b), counts)  # each detection once per GT box of its image
    first = np.cumsum(counts) - counts
    within = np.arange(total) - np.repeat(first, counts)
    pg = g_order[np.repeat(g_start[d_img[a:b]], counts) + within]  # GT index, annotation order within the image
    ious = coco_pair_ious(d_xywh[pd_], g_xywh[pg], g_crowd[pg])
    same = d_lab[pd_] == g_lab[pg]
    crowd = g_crowd[pg]
    over = ious >= iou
    plain = same & ~crowd
    cand = plain & over
    crowd_over = same & crowd & over
    wrong_over = ~same & ~crowd & over
    # Per detection with at least one pair: segment reductions over its contiguous pairs.
    has = np.flatnonzero(counts) + a
    starts = first[has - a]
    any_plain = np.logical_or.reduceat(plain, starts)
    best_plain = np.maximum.reduceat(np.where(plain, ious, -np.inf), starts)
    best[has] = np.where(any_plain, best_plain, math.nan)
    any_cand = np.logical_or.reduceat(cand, starts)
    any_crowd = np.logical_or.reduceat(crowd_over, starts)
    any_wrong = np.logical_or.reduceat(wrong_over, starts)
    first_crowd = np.minimum.reduceat(np.where(crowd_over, np.arange(total), total), starts)
    # The sequential part: candidate pairs by detection (score order), then decreasing IoU, then GT order.
    c = np.flatnonzero(cand)
    c = c[np.lexsort((within[c], -ious[c], pd_[c]))]
    matched: dict[int, int] = {}  # detection -> pair
    taken: set[int] = set()
    for k, d, g in zip(c.tolist(), pd_[c].tolist(), pg[c].tolist(), strict=True):
        if d not in matched and g not in taken:
            matched[d] = k
            taken.add(g)
    tp_det = np.fromiter(matched.keys(), dtype=np.int64, count=len(matched))
    tp_pair = np.fromiter(matched.values(), dtype=np.int64, count=len(matched))
    tp = np.zeros(b - a, dtype=bool)
    tp[tp_det - a] = True
    tp_h = tp[has - a]
    crowd_hit = any_crowd & ~tp_h
    duplicate = any_cand & ~tp_h & ~crowd_hit
    wrong = any_wrong & ~tp_h & ~crowd_hit & ~duplicate
    outcome[has] = np.where(crowd_hit, OUT_IGNORED, OUT_FP)
    reason[has] = np.select([crowd_hit, duplicate, wrong], [WHY_CROWD, WHY_DUPLICATE, WHY_WRONG_CLASS], WHY_LOW_IOU)
    gt_index[has[crowd_hit]] = pg[first_crowd[crowd_hit]]
    outcome[tp_det], reason[tp_det] = OUT_TP, WHY_NONE
    best[tp_det] = ious[tp_pair]
    gt_index[tp_det] = pg[tp_pair]
    matched_score[pg[tp_pair]] = d_score[tp_det]


def match_order(d_img: np.ndarray, d_score: np.ndarray) -> np.ndarray:
    """Detection order for `greedy_match`: by image, then decreasing score, ties in the given order."""
    return np.lexsort((-d_score, d_img))


def matched_rows(m: Matching, d_img: np.ndarray, g_img: np.ndarray, g_crowd: np.ndarray) -> np.ndarray:
    """Row order of `match_all`'s frame (image by image: its detections, then its non-crowd GT boxes) as indices into
    the concatenation [detections (matching order), non-crowd GT boxes (annotation order)]."""
    missed = ~np.asarray(g_crowd, dtype=bool)
    keys = np.concatenate([d_img, g_img[missed]])
    section = np.concatenate([np.zeros(len(d_img), np.int64), np.ones(int(missed.sum()), np.int64)])
    return np.lexsort((section, keys))
