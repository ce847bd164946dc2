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

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from core.evalcore.vector import CocoFlags

WEIGHTED_AP_THREADS = 2  # categories accumulated at once (numpy's loops run outside the GIL)
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


def _between_fp(flags: CocoFlags, a: int, pos: np.ndarray, weights_t: np.ndarray) -> np.ndarray:
    """(P, B): the weighted false positives that are not points, after the previous point and up to this one
    (`weights_t`: the weights, image-major)."""
    not_point = np.ones(len(flags.k), dtype=bool)
    not_point[pos] = False
    q = np.flatnonzero(not_point & flags.fp[a, 0])  # a non-point is a false positive at every threshold or at none
    seg = np.searchsorted(pos, q, side="left")
    ok = seg < len(pos)
    ok[ok] = flags.k[pos[seg[ok]]] == flags.k[q[ok]]  # trailing false positives of a category do not count
    seg, img = seg[ok], flags.img[q[ok]]
    out = np.zeros((len(pos), weights_t.shape[1]), dtype=weights_t.dtype)
    if not len(seg):
        return out
    pair = seg * (len(flags.img_ids) + 1) + img
    keys, counts = np.unique(pair, return_counts=True)
    k_seg, k_img = keys // (len(flags.img_ids) + 1), keys % (len(flags.img_ids) + 1)
    starts = np.flatnonzero(np.r_[True, k_seg[1:] != k_seg[:-1]])
    gathered = weights_t[k_img]  # (pairs, B): rows, so the segment sums run over whole rows
    if (counts != 1).any():
        gathered *= counts.astype(gathered.dtype)[:, None]
    out[k_seg[starts]] = np.add.reduceat(gathered, starts, axis=0)
    return out


def _targets(rec: np.ndarray, npig: np.ndarray) -> np.ndarray:
    """(b, R): the least true-positive count v with `rec[q] <= v / npig` in float64 (pycocotools' test), per row."""
    v = np.ceil(rec[None, :] * npig[:, None])
    v -= (v - 1 >= 0) & ((v - 1) / npig[:, None] >= rec[None, :])
    v += v / npig[:, None] < rec[None, :]
    return v.astype(np.int64)


def _class_ap(w, tp_f, valid, base, npig, rec, dtype) -> np.ndarray:  # noqa: ANN001
    """(b, T) AP of one category: `w` (b, S) int the points' image weights, `tp_f`/`valid` (T, S) their flags (a
    true positive; a true or false positive), `base` (b, S) int the false positives between points, `npig` (b,)."""
    n_s, n_r = tp_f.shape[1], len(rec)
    tps = np.multiply(w[:, None, :], tp_f[None, :, :], dtype=w.dtype)
    np.cumsum(tps, axis=2, out=tps)
    if (valid == valid[:1]).all():
        den = np.cumsum(w * valid[0] + base, axis=1, dtype=dtype)[:, None, :]
    else:
        den = np.cumsum(w[:, None, :] * valid[None, :, :], axis=2, dtype=dtype)
        den += np.cumsum(base, axis=1, dtype=dtype)[:, None, :]
    den += np.spacing(dtype(1))
    prec = np.divide(tps, den, dtype=dtype)
    if dtype != np.float64:
        return _ap_by_arithmetic(tps, prec, npig, n_r)
    target = _targets(rec, npig.astype(np.float64))  # (b, R)
    if n_s < n_r:
        return _ap_by_counts(tps, prec, target, n_r)
    return _ap_by_positions(tps, prec, target, n_r)


def _ap_by_arithmetic(tps: np.ndarray, prec: np.ndarray, npig: np.ndarray, n_r: int) -> np.ndarray:
    """A resample's AP in float32: recall threshold q/(R-1) is reached where (R-1) * tps / npig >= q, counted as
    floor((R-1) * tps / npig) + 1 (a hair of slack so that an exact hit counts; pycocotools compares with its own
    rounded thresholds, which can differ at an exact hit by one threshold)."""
    scale = ((n_r - 1) / npig.astype(np.float64)).astype(np.float32)[:, None, None]
    reached = np.multiply(tps, scale, dtype=np.float32)
    reached += np.float32(1e-4)
    np.floor(reached, out=reached)
    np.minimum(reached, np.float32(n_r - 1), out=reached)
    gained = np.diff(reached, axis=2, prepend=np.float32(-1))
    env = np.maximum.accumulate(prec[:, :, ::-1], axis=2)[:, :, ::-1]
    return np.einsum("bts,bts->bt", env, gained, dtype=np.float64) / n_r


def _ap_by_positions(tps: np.ndarray, prec: np.ndarray, target: np.ndarray, n_r: int) -> np.ndarray:
    """AP from the first point reaching each recall threshold (tps >= target), every row searched at once (rows
    offset); the envelope there is the maximum precision of the segment up to the next threshold's point, then
    accumulated from the right. For categories with more points than thresholds."""
    n_b, n_t, n_s = tps.shape
    off = int(target.max(initial=0)) + int(tps.max(initial=0)) + 2
    int_t = np.int32 if n_b * n_t * off < 2**31 - off else np.int64
    rows = np.arange(n_b * n_t, dtype=int_t).reshape(n_b, n_t, 1)
    flat = tps.astype(int_t, copy=False)
    flat += rows * int_t(off)
    queries = (target.astype(int_t)[:, None, :] + rows * int_t(off)).ravel()
    at = np.searchsorted(flat.ravel(), queries, side="left").reshape(n_b, n_t, n_r) - rows * n_s
    reached = at < n_s
    idx = np.minimum(at + rows * n_s, flat.size - 1).ravel()
    seg_max = np.maximum.reduceat(prec.ravel(), idx).reshape(n_b, n_t, n_r)
    seg_max[~reached] = 0.0
    env = np.maximum.accumulate(seg_max[:, :, ::-1], axis=2)[:, :, ::-1]
    return env.sum(axis=2, dtype=np.float64) / n_r


def _ap_by_counts(tps: np.ndarray, prec: np.ndarray, target: np.ndarray, n_r: int) -> np.ndarray:
    """AP from how many recall thresholds each point reaches first (the targets <= tps, counted by one search of
    every point in its row's targets): the precision envelope at a point counts once per threshold it reaches
    first. For categories with fewer points than thresholds."""
    n_b, n_t, n_s = tps.shape
    off = int(target.max(initial=0)) + int(tps.max(initial=0)) + 2
    rows = np.arange(n_b, dtype=np.int64).reshape(n_b, 1)
    hay = (target.astype(np.int64) + rows * off).ravel()  # each row's targets, ascending, rows apart
    reached = np.searchsorted(hay, (tps.astype(np.int64) + rows[:, :, None] * off).ravel(), side="right")
    reached = reached.reshape(n_b, n_t, n_s) - rows[:, :, None] * n_r
    gained = np.diff(reached, axis=2, prepend=0)
    env = np.maximum.accumulate(prec[:, :, ::-1], axis=2)[:, :, ::-1]
    return (env * gained).sum(axis=2, dtype=np.float64) / n_r


def _threads() -> int:
    return max(1, min(WEIGHTED_AP_THREADS, os.cpu_count() or 1))


def _class_job(weights, rec, ai, k, sel, exact, tp_k, valid_k, point_img, base, npig):  # noqa: ANN001
    """One category's AP on the resamples `sel` (float64 where `exact`)."""
    dtype = np.float64 if exact else np.float32
    int_t = np.int64 if exact else np.int32
    w = weights[sel][:, point_img].astype(int_t)
    return ai, k, sel, _class_ap(w, tp_k, valid_k, base[:, sel].T.astype(int_t), npig[sel], rec, dtype)


def weighted_ap(
    flags: CocoFlags, weights: np.ndarray, areas: tuple[int, ...] = (0,), *, exact_rows: int = 1
) -> np.ndarray:
    """Per resample, area range, IoU threshold and category, COCO's AP (maxDets 100) with integer `weights` (B, I)
    per image: (B, len(areas), T, K), NaN where the category has no box that counts in that resample.

    The first `exact_rows` rows are computed in float64, pycocotools' arithmetic (weights of 1: COCOeval's AP to
    1e-15); the others, resamples, with float32 precision (counts are exact integers; a precision differs by ~1e-7)."""
    weights = np.asarray(weights).astype(np.int32 if np.max(weights, initial=0) < 2**20 else np.int64)
    weights_t = np.ascontiguousarray(weights.T)
    n_b = weights.shape[0]
    n_t, n_k = len(flags.iou_thresholds), len(flags.cat_ids)
    rec = flags.recall_thresholds
    out = np.full((n_b, len(areas), n_t, n_k), np.nan)
    for ai, a in enumerate(areas):
        npig = np.rint(weights.astype(np.float64) @ flags.gt_counted[a].astype(np.float64)).astype(np.int64)  # (B, K)
        pos, k_start = _points(flags, a)
        base = _between_fp(flags, a, pos, weights_t)
        tp_all, fp_all = flags.tp[a][:, pos], flags.fp[a][:, pos]
        point_img = flags.img[pos]
        jobs = []
        for k in range(n_k):
            lo, hi = k_start[k], k_start[k + 1]
            has = npig[:, k] > 0
            out[has, ai, :, k] = 0.0
            if hi == lo or not has.any():
                continue
            chunk = max(1, CELL_BUDGET // (n_t * (hi - lo)))
            tp_k, valid_k = tp_all[:, lo:hi], tp_all[:, lo:hi] | fp_all[:, lo:hi]
            rows = np.flatnonzero(has)
            cuts = sorted({0, min(exact_rows, n_b), *range(exact_rows, n_b, chunk), n_b})
            for b0, b1 in zip(cuts[:-1], cuts[1:], strict=True):
                sel = rows[(rows >= b0) & (rows < b1)]
                if len(sel):
                    jobs.append((ai, k, sel, b0 < exact_rows, tp_k, valid_k, point_img[lo:hi], base[lo:hi], npig[:, k]))
        with ThreadPoolExecutor(max_workers=_threads()) as pool:  # numpy lets go of the GIL in its loops
            for ai_, k, sel, ap in pool.map(lambda job: _class_job(weights, rec, *job), jobs):
                out[sel, ai_, :, k] = ap
    return out
