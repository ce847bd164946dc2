"""COCO box metrics with COCOeval: AP, AP50, AP75, APs/m/l, AR1/10/100, AP per class, PR curves.

The COCOeval is DetLens' own vectorised one (`core.evalcore.vector`: pycocotools' figures bit for bit, every image
at once, ~6x faster than faster-coco-eval at a million boxes); DETLENS_COCOEVAL=faster-coco-eval or =pycocotools picks
one of those instead (faster-coco-eval's C++ gives pycocotools' figures to 1e-12; tests/test_evaluate.py,
tests/test_vector_cocoeval.py and scripts/bench_eval.py compare them). `Metrics.evaluator` names the one that
computed the figures.

`evaluate` scores one model's detections (the records schema: pixels, label ids, our content-hash image ids) on the
images matched in a GroundTruth; `evaluate_results_file` does the same for any COCO results JSON (image and category
ids of the ground truth).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from core.config import EVAL_IOU, EVAL_MAX_DETS
from core.evalcore import FASTER, PYCOCOTOOLS, VECTOR, CocoSummary, coco_summary, evaluate_arrays, run_cocoeval
from core.evaluate.groundtruth import GroundTruth, load_ground_truth, one_model
from core.evaluate.validate import GroundTruthError, load_results
from core.text import fmt_ids

METRIC_KEYS: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")
JSON_KEYS: tuple[str, ...] = (*METRIC_KEYS, "per_class", "evaluator", "maxDets", "score_floor")


COCOEVAL_ENV = "DETLENS_COCOEVAL"
VECTOR_VERSION = 1  # core.evalcore.vector's version: part of every cached evaluation's key


@dataclass
class Metrics:
    """COCOeval's box metrics for one model (NaN where there is nothing to measure, e.g. APs without small GT)."""

    AP: float
    AP50: float
    AP75: float
    APs: float
    APm: float
    APl: float
    AR1: float
    AR10: float
    AR100: float
    per_class: dict[str, float]  # class name -> AP@[.5:.95] (NaN for classes without GT)
    evaluator: str
    max_dets: tuple[int, int, int]
    score_floor: float
    iou_thresholds: np.ndarray  # (T,) 0.50, 0.55, ... 0.95
    recall_thresholds: np.ndarray  # (R,) 0.00, 0.01, ... 1.00
    precision: np.ndarray  # (T, R, K) interpolated precision, area "all", the last max_dets; -1 for classes without GT
    scores: np.ndarray  # (T, R, K) score at which each precision point is reached (0 where never)
    class_ids: tuple[int, ...]  # (K,) category ids in the order of the last axis
    class_names: tuple[str, ...]
    n_images: int = 0
    n_gt: int = 0
    n_detections: int = 0

    def to_json(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict (NaN -> None), keys JSON_KEYS exactly."""
        out: dict[str, Any] = {k: _json_float(getattr(self, k)) for k in METRIC_KEYS}
        out["per_class"] = {name: _json_float(ap) for name, ap in self.per_class.items()}
        out["evaluator"] = self.evaluator
        out["maxDets"] = list(self.max_dets)
        out["score_floor"] = self.score_floor
        return out


def evaluator_backend() -> str:
    """The COCOeval in use: DetLens' vectorised COCOeval (pycocotools' figures bit for bit), unless DETLENS_COCOEVAL
    names faster-coco-eval (when installed) or pycocotools."""
    wanted = os.environ.get(COCOEVAL_ENV, "").strip().lower()
    if wanted == PYCOCOTOOLS:
        return PYCOCOTOOLS
    if wanted == FASTER and importlib.util.find_spec("faster_coco_eval") is not None:
        return FASTER
    return VECTOR


def evaluator_version(backend: str | None = None) -> str:
    """'detlens-vector 1 (pycocotools 2.0.10 figures)', 'faster-coco-eval 1.8.0' or 'pycocotools 2.0.10': what
    computed the metrics, with its version."""
    backend = backend or evaluator_backend()
    if backend == VECTOR:
        return f"{VECTOR} {VECTOR_VERSION} (pycocotools {importlib.metadata.version('pycocotools')} figures)"
    dist = "faster-coco-eval" if backend == FASTER else "pycocotools"
    return f"{dist} {importlib.metadata.version(dist)}"


def _json_float(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _nan(v: float) -> float:
    """pycocotools' -1 ('nothing to measure') -> NaN."""
    return math.nan if v < 0 else float(v)


def check_max_dets(max_dets: Sequence[int]) -> tuple[int, int, int]:
    md = tuple(int(m) for m in max_dets)
    if len(md) != 3 or md[0] < 1 or not md[0] < md[1] < md[2]:
        raise ValueError(f"max_dets must be three increasing positive counts, e.g. (1, 10, 100), not {max_dets}")
    return md  # type: ignore[return-value]


def _run_cocoeval(
    gt_dict: dict[str, Any],
    results: list[dict[str, Any]],
    img_ids: list[int],
    max_dets: tuple[int, int, int],
    backend: str | None = None,
    *,
    owned: bool = False,
):
    """`core.evalcore.run_cocoeval` with the backend in use by default (`owned`: results made by `loaded_results`)."""
    return run_cocoeval(gt_dict, results, img_ids, max_dets, backend or evaluator_backend(), owned=owned)


def metrics_from(
    ev, gt_dict: dict[str, Any], max_dets, score_floor: float, n_dets: int, backend: str | None = None
) -> Metrics:
    """Metrics of a finished COCOeval, or of its CocoSummary (what an evaluation worker sends back)."""
    s = ev if isinstance(ev, CocoSummary) else coco_summary(ev)
    stats = [_nan(v) for v in s.stats[:9]]
    names = {c["id"]: c["name"] for c in gt_dict["categories"]}
    per_class = {}
    for k, cid in enumerate(s.cat_ids):
        p = s.precision[:, :, k]
        per_class[names[cid]] = float(np.mean(p[p > -1])) if (p > -1).any() else math.nan
    img_ids = set(s.img_ids)
    n_gt = sum(1 for a in gt_dict["annotations"] if a["image_id"] in img_ids and not a["iscrowd"])
    return Metrics(
        *stats,
        per_class=per_class,
        evaluator=evaluator_version(backend),
        max_dets=max_dets,
        score_floor=float(score_floor),
        iou_thresholds=s.iou_thresholds,
        recall_thresholds=s.recall_thresholds,
        precision=s.precision,
        scores=s.scores,
        class_ids=s.cat_ids,
        class_names=tuple(names[c] for c in s.cat_ids),
        n_images=len(img_ids),
        n_gt=n_gt,
        n_detections=n_dets,
    )


def detections_to_results(detections: pd.DataFrame, image_id_map: Mapping[str, int]) -> list[dict[str, Any]]:
    """Schema rows (pixels x1..y2, our image ids) -> COCO results (GT image ids, [x, y, w, h]), full precision."""
    rows = detections[detections["image_id"].astype(str).isin(list(image_id_map))]
    if rows.empty:
        return []
    x1, y1 = rows["x1"].to_numpy(np.float64), rows["y1"].to_numpy(np.float64)
    w, h = rows["x2"].to_numpy(np.float64) - x1, rows["y2"].to_numpy(np.float64) - y1
    img = [int(image_id_map[i]) for i in rows["image_id"].astype(str)]
    boxes = np.column_stack([x1, y1, w, h]).tolist()  # Python floats, as float() of each value gives
    labels = rows["label_id"].to_numpy(np.int64).tolist()
    scores = rows["score"].to_numpy(np.float64).tolist()
    return [
        {"image_id": i, "category_id": c, "bbox": b, "score": s}
        for i, c, b, s in zip(img, labels, boxes, scores, strict=True)
    ]


def evaluate(
    gt: GroundTruth,
    detections: pd.DataFrame,
    *,
    model: str | None = None,
    score_floor: float = 0.0,
    max_dets: Sequence[int] = EVAL_MAX_DETS,
) -> Metrics:
    """COCO box metrics of one model's detections (records schema) on the images matched in `gt.image_id_map`.

    `model` picks one model's rows (needed when the frame holds several). Boxes below `score_floor` are dropped
    first (COCO's own protocol keeps every box: leave it at 0 for figures comparable with published mAP).
    """
    md = check_max_dets(max_dets)
    if not gt.image_id_map:
        raise GroundTruthError(no_match_message(gt))
    dets, _ = one_model(detections, model)
    dets = dets[dets["score"] >= score_floor]
    ids = dets["image_id"].astype(str)
    on = ids.isin(list(gt.image_id_map)).to_numpy()
    rows = dets[on]
    backend = evaluator_backend()
    ev = evaluate_arrays(
        gt.coco,
        sorted(set(gt.image_id_map.values())),
        md,
        backend,
        ids[on].map(gt.image_id_map).to_numpy(np.int64),
        rows["label_id"].to_numpy(np.int64),
        rows["score"].to_numpy(np.float64),
        rows[["x1", "y1", "x2", "y2"]].to_numpy(np.float64),
    )
    return metrics_from(ev, gt.coco, md, score_floor, len(rows), backend)


def no_match_message(gt: GroundTruth) -> str:
    """Why a variant was not evaluated when none of its images matches the ground truth."""
    return "none of the images matches a ground-truth file name" + (
        f" (ground truth has {fmt_ids(gt.unmatched_gt_images)})" if gt.unmatched_gt_images else ""
    )


def evaluate_results_file(
    gt_path: object,
    results_path: object,
    *,
    label_ids: Literal["gt", "model"] = "gt",
    score_floor: float = 0.0,
    max_dets: Sequence[int] = EVAL_MAX_DETS,
    categories: Sequence[str] | None = None,
) -> Metrics:
    """Any COCO results JSON against a COCO instances JSON, on every GT image (what pycocotools does with the pair).

    Image ids are the ground truth's. Category ids are the ground truth's (`label_ids="gt"`, the COCO convention)
    or the model's label ids (`"model"`: DetLens's own export with a GT of another numbering; the same for a GT
    with the standard COCO ids).
    """
    md = check_max_dets(max_dets)
    gt = load_ground_truth(gt_path, categories=categories)
    results = load_results(results_path, (im["id"] for im in gt.raw["images"]))
    results = [r for r in results if r["score"] >= score_floor]
    target = gt.raw if label_ids == "gt" else gt.coco
    backend = evaluator_backend()
    ev = _run_cocoeval(target, results, [im["id"] for im in gt.raw["images"]], md, backend)
    return metrics_from(ev, target, md, score_floor, len(results), backend)


def pr_curve(metrics: Metrics, class_name: str | None = None, iou: float = EVAL_IOU) -> pd.DataFrame:
    """The 101-point interpolated precision/recall curve at one IoU threshold (pycocotools' accumulate()).

    `class_name=None` averages the precision over the classes that have GT (the curve whose area is AP at `iou`).
    Precision is NaN where nothing can be measured (no GT for the class).
    """
    t = np.flatnonzero(np.isclose(metrics.iou_thresholds, iou))
    if not len(t):
        raise ValueError(f"no IoU threshold {iou} in {np.round(metrics.iou_thresholds, 2).tolist()}")
    p = metrics.precision[t[0]]  # R, K
    if class_name is not None:
        if class_name not in metrics.class_names:
            raise ValueError(f"unknown class {class_name!r}")
        col = p[:, metrics.class_names.index(class_name)]
        prec = np.where(col > -1, col, np.nan)
    else:
        valid = (p > -1).all(axis=0)
        prec = p[:, valid].mean(axis=1) if valid.any() else np.full(p.shape[0], np.nan)
    return pd.DataFrame({"recall": metrics.recall_thresholds.copy(), "precision": prec.astype(np.float64)})
