"""Array-level COCO evaluation and greedy matching: numpy in, numpy out, no pandas, no torch.

What core.evaluate (metrics, outcomes) and the evaluation worker (`python -m core.evalcore`, started by
core.analytics.evaluation) share:

- `coco_pair_ious`: pycocotools' box IoU (`maskApi.c` `bbIou`, the one COCOeval uses) of given (detection, GT) pairs, the
  same float operations in the same order, so the values are bit for bit pycocotools'.
- `greedy_match`: `core.evaluate.match_all`'s matching of every detection of many images at once: every same-image
  (detection, GT) pair's IoU in one numpy pass, and a Python step only over the candidate pairs (same class, not crowd,
  IoU >= the threshold), in score order: the detection takes its best free candidate.
- `coco_results` and `run_cocoeval`: COCOeval (faster-coco-eval's or pycocotools') on result dicts made in one pass
  from arrays, with the fields `COCO.loadRes` would add; `coco_summary` keeps what `Metrics` needs of the COCOeval.

This module imports only numpy and core.config (and, when evaluating, the COCOeval package): the worker process that
runs it starts in a fraction of a second, where importing core.evaluate would import torch (core.models) for seconds.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import io
import math
import os
import pickle
import sys
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

FASTER, PYCOCOTOOLS = "faster-coco-eval", "pycocotools"

# Outcome and reason codes of `greedy_match` (core.evaluate.outcomes names them).
OUT_TP, OUT_FP, OUT_IGNORED, OUT_FN = 0, 1, 2, 3
WHY_NONE, WHY_CROWD, WHY_DUPLICATE, WHY_WRONG_CLASS, WHY_LOW_IOU = 0, 1, 2, 3, 4
PAIR_CHUNK = 4_000_000  # (detection, GT) pairs held at once by greedy_match (a few hundred MB at most)

# pycocotools prints as it goes; its output is swallowed by swapping sys.stdout, which is process-wide: one evaluation
# at a time, so that two threads (two dashboard sessions) never restore each other's stdout.
_COCO_LOCK = threading.Lock()


# --- IoU and greedy matching ------------------------------------------------------------------------------------------


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


# --- COCOeval from arrays ---------------------------------------------------------------------------------------------


def coco_results(
    image_id: np.ndarray, category_id: np.ndarray, score: np.ndarray, boxes: np.ndarray
) -> list[dict[str, Any]]:
    """COCO result dicts ([x, y, w, h] from x1, y1, x2, y2; full precision) with the fields `COCO.loadRes` adds
    (id = position + 1, area = w * h, iscrowd 0), made in one pass, for `run_cocoeval(..., owned=True)`."""
    x1, y1 = boxes[:, 0].astype(np.float64), boxes[:, 1].astype(np.float64)
    w, h = boxes[:, 2].astype(np.float64) - x1, boxes[:, 3].astype(np.float64) - y1
    return [
        {"image_id": i, "category_id": c, "bbox": bb, "score": s, "id": k, "area": ar, "iscrowd": 0}
        for k, i, c, bb, s, ar in zip(
            range(1, len(score) + 1),
            np.asarray(image_id, dtype=np.int64).tolist(),
            np.asarray(category_id, dtype=np.int64).tolist(),
            np.column_stack([x1, y1, w, h]).tolist(),
            np.asarray(score, dtype=np.float64).tolist(),
            (w * h).tolist(),
            strict=True,
        )
    ]


def _silent(*args: Any, **kwargs: Any) -> None:
    """faster-coco-eval's print_function: nothing printed."""


def coco_classes(backend: str) -> tuple[type, type]:
    """(COCO, COCOeval) of a backend; the same API (faster-coco-eval is a drop-in for pycocotools)."""
    if backend == FASTER:
        from faster_coco_eval import COCO, COCOeval_faster

        return COCO, COCOeval_faster
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return COCO, COCOeval


def _coco_api(coco_class: type, dataset: dict[str, Any]):
    api = coco_class()
    api.dataset = dataset
    api.createIndex()
    return api


def run_cocoeval(
    gt_dict: dict[str, Any],
    results: list[dict[str, Any]],
    img_ids: list[int],
    max_dets: tuple[int, int, int],
    backend: str,
    *,
    owned: bool = False,
):
    """COCOeval (bbox) on dicts; prints swallowed. Results need image_id, category_id, bbox, score.

    The results are indexed the way `COCO.loadRes` does it (area = w*h, id = position + 1, iscrowd 0), without its
    failure on an empty list. Copies go in, as COCOeval writes flags into the dicts it is given; `owned`: the caller
    made `results` for this call alone with those fields (`coco_results`), so they are used as they are.
    """
    coco_class, eval_class = coco_classes(backend)
    gt_copy = _gt_copy(gt_dict)
    if owned:
        dts = results
    else:
        dts = [
            {
                "id": i + 1,
                "image_id": r["image_id"],
                "category_id": r["category_id"],
                "bbox": list(r["bbox"]),
                "score": r["score"],
                "area": r["bbox"][2] * r["bbox"][3],
                "iscrowd": 0,
            }
            for i, r in enumerate(results)
        ]
    with _COCO_LOCK, contextlib.redirect_stdout(io.StringIO()):
        coco_gt = _coco_api(coco_class, gt_copy)
        coco_dt = _coco_api(
            coco_class, {"images": gt_copy["images"], "categories": gt_copy["categories"], "annotations": dts}
        )
        extra = {"print_function": _silent} if backend == FASTER else {}
        return _evaluated(eval_class(coco_gt, coco_dt, iouType="bbox", **extra), img_ids, max_dets)


def _gt_copy(gt_dict: dict[str, Any]) -> dict[str, Any]:
    """A copy of a ground-truth dict's lists of dicts (COCOeval writes flags into the dicts it is given)."""
    return {key: [dict(item) for item in gt_dict[key]] for key in ("images", "annotations", "categories")}


def _evaluated(ev, img_ids: list[int], max_dets: tuple[int, int, int]):
    """A COCOeval (bbox) on `img_ids` with `max_dets`, evaluated, accumulated and summarized."""
    ev.params.imgIds = sorted(img_ids)
    ev.params.maxDets = list(max_dets)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    if max_dets[2] != 100:
        # summarize() reads AP@[.5:.95] at maxDets=100 whatever the settings; take it at the last max_dets instead.
        p = ev.eval["precision"][:, :, :, 0, -1]
        ev.stats[0] = np.mean(p[p > -1]) if (p > -1).any() else -1
    return ev


def run_cocoeval_arrays(
    gt_dict: dict[str, Any],
    img_ids: list[int],
    max_dets: tuple[int, int, int],
    image_id: np.ndarray,
    category_id: np.ndarray,
    score: np.ndarray,
    boxes: np.ndarray,
):
    """`run_cocoeval(gt_dict, coco_results(image_id, category_id, score, boxes), img_ids, max_dets, FASTER)`, the same
    figures, without a COCO index of the results or a bbox list per box: faster-coco-eval's C++ evaluation reads only
    id, score and area of a detection, and the IoUs its `computeIoU` would make per (image, category) are made here for
    all pairs at once (`coco_pair_ious`, pycocotools' operations). Used where faster-coco-eval is the backend."""
    from faster_coco_eval import COCO, faster_eval_api_cpp
    from faster_coco_eval.core.faster_eval_api import COCOeval_faster

    class ArrayCOCOeval(COCOeval_faster):
        """COCOeval_faster over detection arrays: `_prepare` fills its datasets from them, `computeIoU` looks up."""

        def _prepare(self) -> None:
            p = self.params
            self.gt_dataset.clean()
            self.dt_dataset.clean()
            gts = self.cocoGt.loadAnns(self.cocoGt.getAnnIds(imgIds=p.imgIds, catIds=p.catIds or None))
            gt_pairs = set()
            for gt in gts:  # as COCOeval_faster._prepare: iscrowd is the ignore flag
                gt["ignore"] = int(gt.get("iscrowd", 0))
                self.gt_dataset.append_ref(gt["image_id"], gt["category_id"], gt)
                gt_pairs.add((gt["image_id"], gt["category_id"]))
            keep = np.ones(len(score), dtype=bool)
            if p.imgIds:
                keep &= np.isin(image_id, np.asarray(p.imgIds, dtype=np.int64))
            if p.catIds:
                keep &= np.isin(category_id, np.asarray(p.catIds, dtype=np.int64))
            idx = np.flatnonzero(keep)
            img, cat = image_id[idx], category_id[idx]
            dts = [
                {"id": k, "score": sc, "area": ar}
                for k, sc, ar in zip((idx + 1).tolist(), score[idx].tolist(), area[idx].tolist(), strict=True)
            ]
            self._array_dts = dts  # the datasets hold references only
            # All detections in one call (the dataset's pickle state: (image, category, its detections in order)
            # per pair), not one call per box; the same references as append_ref would keep.
            low, width = (int(cat.min()), int(cat.max() - cat.min()) + 1) if len(cat) else (0, 1)
            key = img * width + (cat - low)
            order = np.argsort(key, kind="stable")
            keys, starts = np.unique(key[order], return_index=True)  # the (image, category) pairs with detections
            ends = np.append(starts[1:], len(order)).tolist() if len(keys) else []
            grouped = [dts[i] for i in order.tolist()]
            pair_img, pair_cat = (keys // width).tolist(), (keys % width + low).tolist()
            self.dt_dataset.load_tuple(
                (
                    len(keys),
                    [
                        (float(i), float(c), grouped[a:b])
                        for i, c, a, b in zip(pair_img, pair_cat, starts.tolist(), ends, strict=True)
                    ],
                )
            )
            dt_pairs = zip(pair_img, pair_cat, strict=True)
            self._nonempty_iou_pairs = gt_pairs & set(dt_pairs)
            self._array_ious = _keyed_ious(
                gts, img, cat, score[idx], xywh[idx], p.maxDets[-1], self._nonempty_iou_pairs
            )

        def computeIoU(self, imgId: int, catId: int):  # noqa: N802 (COCOeval's name)
            return self._array_ious.get((imgId, catId), [])

        def evaluate(self) -> None:
            """COCOeval_faster.evaluate's steps for bbox with categories, less its dict of an empty IoU list per
            (image, category) (a million of them at 10,000 images): the C++ gets the same nested lists."""
            p = self.params
            if not p.useCats or self.separate_eval or p.iouType != "bbox":
                return super().evaluate()
            p.imgIds = list(np.unique(p.imgIds))
            p.catIds = list(np.unique(p.catIds))
            p.maxDets = sorted(p.maxDets)
            self._prepare()
            table = self._array_ious
            cat_at = {c: k for k, c in enumerate(np.asarray(p.catIds, dtype=np.int64).tolist())}
            img_at = {i: k for k, i in enumerate(np.asarray(p.imgIds, dtype=np.int64).tolist())}
            none: list = []  # one empty list for every (image, category) without both GT and detections
            ious = [[none] * len(cat_at) for _ in img_at]
            for (i, c), matrix in table.items():
                if i in img_at and c in cat_at:
                    ious[img_at[i]][cat_at[c]] = matrix
            self.ious = table
            self._paramsEval = copy.deepcopy(self.params)
            self.eval = faster_eval_api_cpp.COCOevalEvaluateAccumulate(
                self._paramsEval, ious, self.gt_dataset, self.dt_dataset, p.imgIds, p.catIds, True
            )
            return None

    image_id = np.asarray(image_id, dtype=np.int64)
    category_id = np.asarray(category_id, dtype=np.int64)
    score = np.asarray(score, dtype=np.float64)
    x1, y1 = boxes[:, 0].astype(np.float64), boxes[:, 1].astype(np.float64)
    w, h = boxes[:, 2].astype(np.float64) - x1, boxes[:, 3].astype(np.float64) - y1
    xywh, area = np.stack([x1, y1, w, h], axis=1), w * h
    with _COCO_LOCK, contextlib.redirect_stdout(io.StringIO()):
        coco_gt = _coco_api(COCO, _gt_copy(gt_dict))
        return _evaluated(ArrayCOCOeval(coco_gt, None, iouType="bbox", print_function=_silent), img_ids, max_dets)


# run_cocoeval_arrays overrides internals of faster-coco-eval (its datasets' pickle state, the C++ entry point's
# arguments), checked equal to its dict path by tests/test_evalcore.py on these versions only; any other version
# takes the dict path (the same figures, slower).
ARRAY_PATH_VERSIONS: tuple[str, ...] = ("1.8.0",)


def _array_path_fits() -> bool:
    """Whether the installed faster-coco-eval is one `run_cocoeval_arrays` was checked against."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("faster-coco-eval") in ARRAY_PATH_VERSIONS
    except PackageNotFoundError:
        return False


def evaluate_arrays(
    gt_dict: dict[str, Any],
    img_ids: list[int],
    max_dets: tuple[int, int, int],
    backend: str,
    image_id: np.ndarray,
    category_id: np.ndarray,
    score: np.ndarray,
    boxes: np.ndarray,
):
    """The finished COCOeval of detections given as arrays (GT image ids, label ids, scores, x1..y2 boxes):
    `run_cocoeval_arrays` with faster-coco-eval, else `run_cocoeval` on `coco_results`."""
    if backend == FASTER and _array_path_fits():
        return run_cocoeval_arrays(gt_dict, img_ids, max_dets, image_id, category_id, score, boxes)
    results = coco_results(image_id, category_id, score, boxes)
    return run_cocoeval(gt_dict, results, img_ids, max_dets, backend, owned=True)


def _keyed_ious(
    gts: list[dict[str, Any]],
    img: np.ndarray,
    cat: np.ndarray,
    score: np.ndarray,
    xywh: np.ndarray,
    max_det: int,
    pairs: set[tuple[int, int]],
) -> dict[tuple[int, int], np.ndarray]:
    """COCOeval's `computeIoU` for every (image, category) in `pairs`: the (detections, GT) IoU matrix, detections by
    decreasing score (stable) cut to `max_det`, GT boxes in dataset order."""
    if not pairs:
        return {}
    g_img = np.array([g["image_id"] for g in gts], dtype=np.int64)
    g_cat = np.array([g["category_id"] for g in gts], dtype=np.int64)
    g_xywh = np.array([g["bbox"] for g in gts], dtype=np.float64).reshape(-1, 4)
    g_crowd = np.array([bool(g.get("iscrowd", 0)) for g in gts], dtype=bool)
    # Keys as one integer: (image, category) codes over the union of both sides' values.
    imgs, cats = np.unique(np.concatenate([img, g_img])), np.unique(np.concatenate([cat, g_cat]))
    d_key = np.searchsorted(imgs, img) * len(cats) + np.searchsorted(cats, cat)
    g_key = np.searchsorted(imgs, g_img) * len(cats) + np.searchsorted(cats, g_cat)
    pair_img, pair_cat = (np.array(v, dtype=np.int64) for v in zip(*pairs, strict=True))
    wanted = np.sort(np.searchsorted(imgs, pair_img) * len(cats) + np.searchsorted(cats, pair_cat))
    ends = np.append(wanted, np.iinfo(np.int64).max)  # a sentinel past the last key
    d = np.flatnonzero(np.isin(d_key, wanted))
    d = d[np.lexsort((-score[d], d_key[d]))]  # by key, decreasing score, ties in dataset order (mergesort's)
    d_start = np.searchsorted(d_key[d], ends)
    rank = np.arange(len(d)) - np.repeat(d_start[:-1], np.diff(d_start))
    d = d[rank < max_det]
    g = np.flatnonzero(np.isin(g_key, wanted))
    g = g[np.argsort(g_key[g], kind="stable")]  # by key, dataset order within
    n_d = np.diff(np.searchsorted(d_key[d], ends))
    g_bounds = np.searchsorted(g_key[g], ends)
    n_g = np.diff(g_bounds)
    per_det = np.repeat(n_g, n_d)
    first = np.cumsum(per_det) - per_det
    within = np.arange(int(per_det.sum())) - np.repeat(first, per_det)
    pd_ = np.repeat(d, per_det)
    pg = g[np.repeat(np.repeat(g_bounds[:-1], n_d), per_det) + within]
    ious = coco_pair_ious(xywh[pd_], g_xywh[pg], g_crowd[pg])
    out, at = {}, 0
    for key, nd, ng in zip(wanted.tolist(), n_d.tolist(), n_g.tolist(), strict=True):
        out[(int(imgs[key // len(cats)]), int(cats[key % len(cats)]))] = ious[at : at + nd * ng].reshape(nd, ng)
        at += nd * ng
    return out


@dataclass(frozen=True)
class CocoSummary:
    """What `Metrics` needs of a finished COCOeval (small, picklable): its stats, settings and the precision and
    score arrays at area "all" and the last maxDets (T, R, K)."""

    stats: np.ndarray
    cat_ids: tuple[int, ...]
    img_ids: tuple[int, ...]
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray
    precision: np.ndarray
    scores: np.ndarray


def coco_summary(ev) -> CocoSummary:
    """The CocoSummary of a COCOeval after summarize()."""
    return CocoSummary(
        stats=np.asarray(ev.stats, dtype=np.float64).copy(),
        cat_ids=tuple(int(c) for c in ev.params.catIds),
        img_ids=tuple(np.asarray(ev.params.imgIds, dtype=np.int64).tolist()),
        iou_thresholds=np.asarray(ev.params.iouThrs, dtype=np.float64),
        recall_thresholds=np.asarray(ev.params.recThrs, dtype=np.float64),
        precision=np.array(np.asarray(ev.eval["precision"])[:, :, :, 0, -1]),
        scores=np.array(np.asarray(ev.eval["scores"])[:, :, :, 0, -1]),
    )


# --- one variant's evaluation (what the worker process runs) ----------------------------------------------------------


@dataclass(frozen=True)
class ArrayJob:
    """One variant's boxes against its matched ground truth, as arrays.

    Boxes (stored order): `gt_image` (GT image id, -1: no GT image), `position` (index of the image in the ground
    truth's image_id_map, -1: none), `label_id`, `score`, `boxes` (x1, y1, x2, y2). GT boxes of the matched images
    (annotation order): `g_position`, `g_label`, `g_xywh`, `g_crowd`. `coco`: the ground truth's COCOeval dict;
    `img_ids`: the matched GT image ids; COCOeval sees the boxes scored at least `score_floor` (`evaluate`'s)."""

    coco: dict[str, Any]
    img_ids: list[int]
    max_dets: tuple[int, int, int]
    backend: str
    iou: float
    gt_image: np.ndarray
    position: np.ndarray
    label_id: np.ndarray
    score: np.ndarray
    boxes: np.ndarray
    g_position: np.ndarray
    g_label: np.ndarray
    g_xywh: np.ndarray
    g_crowd: np.ndarray
    score_floor: float = 0.0


@dataclass(frozen=True)
class ArrayEval:
    """An ArrayJob's result: the COCOeval summary (None with `error` when COCOeval refused), the number
    of boxes evaluated, and `match_all`'s rows in its order as outcome codes (OUT_*), score and matched score."""

    summary: CocoSummary | None
    error: str
    n_results: int
    outcome: np.ndarray
    score: np.ndarray
    matched_score: np.ndarray


@contextlib.contextmanager
def gc_paused():
    """The cyclic garbage collector off for a block (when it was on): COCOeval makes a Python object per box and per
    (image, category), and each collection would rescan them and the rest of the heap (in the dashboard's process, a
    large one). Process-wide, so a block in another thread may run without it too: collection is only deferred."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def evaluate_job(job: ArrayJob, *, keep: list | None = None) -> ArrayEval:
    """COCOeval and the threshold-free matching of one ArrayJob (the garbage collector paused). `keep`: a list that
    takes the COCOeval, so that a process about to exit does not spend a fraction of a second freeing its dicts."""
    with gc_paused():
        return _evaluate_job(job, [] if keep is None else keep)


def _evaluate_job(job: ArrayJob, keep: list) -> ArrayEval:
    summary, error = None, ""
    on = (job.gt_image >= 0) & (job.score >= job.score_floor)
    arrays = (job.gt_image[on], job.label_id[on], job.score[on], job.boxes[on])
    n_results = int(on.sum())
    try:
        keep.append(evaluate_arrays(job.coco, job.img_ids, job.max_dets, job.backend, *arrays))
        summary = coco_summary(keep[-1])
    except ValueError as exc:
        error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    keep = np.flatnonzero((job.position >= 0) & ~np.isnan(job.score))
    d_img, score = job.position[keep], job.score[keep].astype(np.float64)
    order = match_order(d_img, score)
    d_img, score = d_img[order], score[order]
    b = job.boxes[keep[order]].astype(np.float64)
    d_xywh = np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)
    m = greedy_match(d_img, score, job.label_id[keep[order]], d_xywh, job.g_position, job.g_label, job.g_xywh,
                     job.g_crowd, job.iou, wrong_class=False)  # fmt: skip
    missed = ~np.asarray(job.g_crowd, dtype=bool)
    rows = matched_rows(m, d_img, job.g_position, job.g_crowd)
    outcome = np.concatenate([m.outcome, np.full(int(missed.sum()), OUT_FN, dtype=np.int8)])[rows]
    scores = np.concatenate([score, np.full(int(missed.sum()), math.nan)])[rows]
    taken = np.concatenate([np.full(len(score), math.nan), m.matched_score[missed]])[rows]
    return ArrayEval(summary, error, n_results, outcome, scores, taken)


def worker_main() -> None:
    """One pickled ArrayJob on stdin, its ArrayEval pickled on stdout; anything else written to stdout goes to
    stderr."""
    result_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    gc.disable()  # a short-lived process making a million dicts: the cyclic collector would rescan them (3 s -> 0.6 s)
    job = pickle.load(sys.stdin.buffer)  # noqa: S301 (sent by our own parent)
    result_out.write(pickle.dumps(evaluate_job(job, keep=[]), protocol=pickle.HIGHEST_PROTOCOL))
    result_out.close()
    sys.stderr.flush()
    os._exit(0)  # nothing left to clean up: leave without freeing a million objects one by one


if __name__ == "__main__":  # run as a module: pickle with the classes' real module names
    from core.evalcore import worker_main as main

    main()
