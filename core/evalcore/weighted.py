"""COCO AP with every image weighted by how often a bootstrap resample drew it, many resamples at once.

A resample that draws image i w times is the dataset with w copies of it: every detection of i counts w times as a
true or a false positive, and every ground-truth box of i w times in the recall's denominator. The matching does not
change (it is per image), so `core.evalcore.vector.coco_flags` matches once and this module only accumulates, with
pycocotools' arithmetic: weights of 1 give COCOeval's AP (tests/test_significance.py).

Only a detection that can be a true positive (a "point": one with a candidate ground-truth box), and the first of its
category, are looked at: between two of them precision only falls, so the precision envelope at the recall thresholds
is read there; the false positives between two points are summed per image first. The recall threshold a point
reaches is counted, not searched, so no resample's rows are mixed.
"""

from __future__ import annotations

import numpy as np

from core.evalcore.vector import CocoFlags

CELL_BUDGET = 4_000_000  # (resample, threshold, point) cells held at once per category


def _points(flags: CocoFlags, a: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (accumulation order) of the points of area range `a`, and each category's first point index."""
    n_k = len(flags.cat_ids)
    varies = flags.tp[a].any(axis=0) | (flags.fp[a] != flags.fp[a, :1]).any(axis=0)
    k_start = np.searchsorted(flags.k, np.arange(n_k + 1), side="left")
    first = np.zeros(len(flags.k), dtype=bool)
    first[k_start[:-1][k_start[:-1] < k_start[1:]]] = True
    pos = np.flatnonzero(varies | first)
    return pos, np.searchsorted(flags.k[pos], np.arange(n_k + 1), side="left")


def _between_fp(flags: CocoFlags, a: int, pos: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B, P): the weighted false positives that are not points, up to and including each point, per segment."""
    not_point = np.ones(len(flags.k), dtype=bool)
    not_point[pos] = False
    q = np.flatnonzero(not_point & flags.fp[a, 0])  # a non-point is a false positive at every threshold or at none
    seg = np.searchsorted(pos, q, side="left")
    ok = seg < len(pos)
    ok[ok] = flags.k[pos[seg[ok]]] == flags.k[q[ok]]  # trailing false positives of a category do not count
    seg, img = seg[ok], flags.img[q[ok]]
    out = np.zeros((weights.shape[0], len(pos)))
    if not len(seg):
        return out
    pair = seg * (len(flags.img_ids) + 1) + img
    keys, counts = np.unique(pair, return_counts=True)
    k_seg, k_img = keys // (len(flags.img_ids) + 1), keys % (len(flags.img_ids) + 1)
    starts = np.flatnonzero(np.r_[True, k_seg[1:] != k_seg[:-1]])
    out[:, k_seg[starts]] = np.add.reduceat(weights[:, k_img] * counts[None, :], starts, axis=1)
    return out


def weighted_ap(flags: CocoFlags, weights: np.ndarray, areas: tuple[int, ...] = (0,)) -> np.ndarray:
    """Per resample, area range, IoU threshold and category, COCO's AP (maxDets 100) with `weights` (B, I) per
    image: (B, len(areas), T, K), NaN where the category has no box that counts in that resample."""
    weights = np.asarray(weights, dtype=np.float64)
    n_b = weights.shape[0]
    n_t, n_k = len(flags.iou_thresholds), len(flags.cat_ids)
    rec = flags.recall_thresholds
    out = np.full((n_b, len(areas), n_t, n_k), np.nan)
    for ai, a in enumerate(areas):
        npig = weights @ flags.gt_counted[a].astype(np.float64)  # (B, K)
        pos, k_start = _points(flags, a)
        base = _between_fp(flags, a, pos, weights)
        tp_f, fp_f = flags.tp[a][:, pos], flags.fp[a][:, pos]
        point_img = flags.img[pos]
        for k in range(n_k):
            lo, hi = k_start[k], k_start[k + 1]
            has = npig[:, k] > 0
            out[has, ai, :, k] = 0.0
            if hi == lo:
                continue
            chunk = max(1, CELL_BUDGET // (n_t * (hi - lo)))
            for b0 in range(0, n_b, chunk):
                b1 = min(n_b, b0 + chunk)
                w = weights[b0:b1][:, point_img[lo:hi]]  # (b, S)
                tps = np.cumsum(w[:, None, :] * tp_f[None, :, lo:hi], axis=2)
                fps = np.cumsum(w[:, None, :] * fp_f[None, :, lo:hi], axis=2)
                fps = fps + np.cumsum(base[b0:b1, lo:hi], axis=1)[:, None, :]
                with np.errstate(invalid="ignore", divide="ignore"):
                    rc = tps / npig[b0:b1, k][:, None, None]
                pr = tps / (fps + tps + np.spacing(1))
                env = np.maximum.accumulate(pr[:, :, ::-1], axis=2)[:, :, ::-1]
                reached = np.searchsorted(rec, np.nan_to_num(rc, nan=-1.0).ravel(), side="right").reshape(rc.shape)
                gained = np.diff(reached, axis=2, prepend=0)
                ap = (env * gained).sum(axis=2) / len(rec)  # (b, T)
                keep = has[b0:b1]
                out[b0:b1][keep, ai, :, k] = ap[keep]
    return out
