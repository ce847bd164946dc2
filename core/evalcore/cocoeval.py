"""COCOeval (DetLens' vectorised one, faster-coco-eval's or pycocotools') on detections given as arrays or dicts.

`loaded_results` and `run_cocoeval`: result dicts made in one pass from arrays, with the fields `COCO.loadRes` would add;
`run_cocoeval_arrays`: faster-coco-eval's C++ datasets filled straight from the arrays (no result dict per box);
`evaluate_arrays` picks between them (`core.evalcore.vector` for the default backend); `coco_summary` keeps what
`Metrics` needs of the COCOeval.
"""

from __future__ import annotations

import contextlib
import copy
import io
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.evalcore.matching import coco_pair_ious
from core.evalcore.vector import VECTOR, ResultArrays, coco_xywh, vector_cocoeval_results

FASTER, PYCOCOTOOLS = "faster-coco-eval", "pycocotools"

# pycocotools prints as it goes; its output is swallowed by swapping sys.stdout, which is process-wide: one evaluation
# at a time, so that two threads (two dashboard sessions) never restore each other's stdout.
_COCO_LOCK = threading.Lock()


def loaded_results(
    image_id: np.ndarray, category_id: np.ndarray, score: np.ndarray, boxes: np.ndarray
) -> list[dict[str, Any]]:
    """COCO result dicts ([x, y, w, h] from x1, y1, x2, y2; full precision) with the fields `COCO.loadRes` adds
    (id = position + 1, area = w * h, iscrowd 0), made in one pass, for `run_cocoeval(..., owned=True)`."""
    xywh, area = coco_xywh(boxes)
    return [
        {"image_id": i, "category_id": c, "bbox": bb, "score": s, "id": k, "area": ar, "iscrowd": 0}
        for k, i, c, bb, s, ar in zip(
            range(1, len(score) + 1),
            np.asarray(image_id, dtype=np.int64).tolist(),
            np.asarray(category_id, dtype=np.int64).tolist(),
            xywh.tolist(),
            np.asarray(score, dtype=np.float64).tolist(),
            area.tolist(),
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
    made `results` for this call alone with those fields (`loaded_results`), so they are used as they are.
    """
    if backend == VECTOR:
        return _vector_on_dicts(gt_dict, results, img_ids, max_dets, owned=owned)
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


def _vector_on_dicts(
    gt_dict: dict[str, Any],
    results: list[dict[str, Any]],
    img_ids: list[int],
    max_dets: tuple[int, int, int],
    *,
    owned: bool,
):
    """`vector_cocoeval` of result dicts: their boxes as given ([x, y, w, h]) and areas as `COCO.loadRes` makes them
    (w * h, or the `area` that `loaded_results` put there)."""
    n = len(results)
    xywh = np.array([r["bbox"] for r in results], dtype=np.float64).reshape(n, 4)
    area = (
        np.array([r["area"] for r in results], dtype=np.float64)
        if owned
        else np.array([r["bbox"][2] * r["bbox"][3] for r in results], dtype=np.float64)
    )
    image_id = np.array([r["image_id"] for r in results], dtype=np.int64)
    category_id = np.array([r["category_id"] for r in results], dtype=np.int64)
    score = np.array([r["score"] for r in results], dtype=np.float64)
    return vector_cocoeval_results(gt_dict, img_ids, max_dets, ResultArrays(image_id, category_id, score, xywh, area))


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


def run_cocoeval_arrays(gt_dict: dict[str, Any], img_ids: list[int], max_dets: tuple[int, int, int], res: ResultArrays):
    """`run_cocoeval(gt_dict, loaded_results(...), img_ids, max_dets, FASTER)` of the results `res`, the same
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

    image_id = np.asarray(res.image_id, dtype=np.int64)
    category_id = np.asarray(res.category_id, dtype=np.int64)
    score = np.asarray(res.score, dtype=np.float64)
    xywh, area = np.asarray(res.xywh, dtype=np.float64), np.asarray(res.area, dtype=np.float64)
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
    `vector_cocoeval` (the default backend), `run_cocoeval_arrays` with faster-coco-eval, else `run_cocoeval` on
    `loaded_results`."""
    if backend in (VECTOR, FASTER):
        res = ResultArrays.from_xyxy(image_id, category_id, score, boxes)
        if backend == VECTOR:
            return vector_cocoeval_results(gt_dict, img_ids, max_dets, res)
        if _array_path_fits():
            return run_cocoeval_arrays(gt_dict, img_ids, max_dets, res)
    results = loaded_results(image_id, category_id, score, boxes)
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
