"""The error analysis of a series as one report: TIDE (all, per class, per size), for the CLI's `errors` and the
Evaluate page. TIDE walks the images in the ground truth's order, as tidecv does."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.evaluate.boxlevel import confusion, match_series, worst_images
from core.evaluate.calibration import calibration
from core.evaluate.errors import ERROR_NAMES, MAIN_ERRORS, TideInput, TideResult, json_number, tide
from core.evaluate.operating import operating_points
from core.evaluate.series import Series, SeriesSet
from core.evaluate.slices import folder_tags, size_slices, tag_slices

# COCO's area bounds (pycocotools' areaRng), on box area w * h for ground truth and predictions alike.
SIZE_BOUNDS: dict[str, tuple[float, float]] = {"small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2),
                                               "large": (96.0**2, float("inf"))}  # fmt: skip


@dataclass
class ErrorReport:
    """TIDE of one series: on all its boxes, per class (name -> figures) and per size (TIDE on that size's boxes)."""

    series: str
    result: TideResult
    image_ids: np.ndarray  # TIDE's image index -> ground-truth image id
    rows: np.ndarray  # TIDE's prediction index -> the series' row
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    per_size: dict[str, TideResult] = field(default_factory=dict)
    untrained: bool = False
    gt_rows: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # TIDE's box index -> annotation

    def to_json(self) -> dict[str, Any]:
        out = self.result.to_json()
        out["per_class"] = {k: {m: json_number(v) for m, v in row.items()} for k, row in self.per_class.items()}
        out["per_size"] = {k: r.to_json() for k, r in self.per_size.items()}
        out["untrained"] = self.untrained
        return out

    def error_boxes(self) -> pd.DataFrame:
        """One row per main error, in TIDE's order: `error` (MAIN_ERRORS' key), `image` (ground-truth image id),
        `row` (the series' detection row; -1 for Miss), `gt` (the ground-truth box's position in the ground truth's
        annotations: the box a Cls/Loc error points at, a Miss's box; -1 otherwise)."""
        errs = self.result.errors
        code, img, pred, gt = (errs[:, k] for k in range(4))
        return pd.DataFrame(
            {
                "error": pd.Series(np.asarray(MAIN_ERRORS, dtype=object)[code], dtype=object),
                "image": self.image_ids[img].astype(np.int64) if len(img) else np.empty(0, np.int64),
                "row": np.where(pred >= 0, self.rows[np.maximum(pred, 0)], -1) if len(pred) else pred,
                "gt": np.where(gt >= 0, self.gt_rows[np.maximum(gt, 0)], -1) if len(gt) else gt,
            }
        )

    def error_images(self) -> dict[str, list[int]]:
        """Ground-truth image ids per main error type, in TIDE's order, each image once."""
        out: dict[str, list[int]] = {}
        errs = self.result.errors
        for code, name in enumerate(MAIN_ERRORS):
            imgs = errs[errs[:, 0] == code, 1]
            out[name] = [int(self.image_ids[i]) for i in dict.fromkeys(imgs.tolist())]
        return out


def tide_input(ss: SeriesSet, s: Series) -> tuple[TideInput, np.ndarray, np.ndarray]:
    """The series on its images as TIDE's arrays, with TIDE's image ids and the series rows of its predictions
    (TIDE's boxes are `ss.gt_arrays(ids)`, in that order)."""
    ids = ss.image_order(s.images)
    index = {int(i): k for k, i in enumerate(ids.tolist())}
    gt = ss.gt_arrays(ids)
    rows = np.flatnonzero(np.isin(s.img, ids))
    to_idx = np.vectorize(index.__getitem__, otypes=[np.int64])
    inp = TideInput(
        n_images=len(ids),
        g_img=to_idx(gt["img"]) if len(gt["img"]) else np.empty(0, np.int64),
        g_cls=gt["cls"],
        g_xywh=gt["xywh"],
        g_crowd=gt["crowd"],
        d_img=to_idx(s.img[rows]) if len(rows) else np.empty(0, np.int64),
        d_cls=s.cls[rows],
        d_score=s.score[rows],
        d_xywh=s.xywh[rows],
        gt_classes=tuple(ss.class_names),
    )
    return inp, ids, rows


def error_report(ss: SeriesSet, name: str, *, sizes: bool = True) -> ErrorReport:
    """TIDE of series `name`, per class and (`sizes`) per COCO size."""
    s = ss.get(name)
    inp, ids, rows = tide_input(ss, s)
    result = tide(inp)
    names = ss.class_names
    per_class = {names.get(k, str(k)): v for k, v in sorted(result.per_class.items())}
    per_size = {}
    if sizes:
        g_area = inp.g_xywh[:, 2] * inp.g_xywh[:, 3]
        d_area = inp.d_xywh[:, 2] * inp.d_xywh[:, 3]
        for size, (lo, hi) in SIZE_BOUNDS.items():
            g_keep = inp.g_crowd | ((g_area >= lo) & (g_area < hi))
            d_keep = (d_area >= lo) & (d_area < hi)
            if (g_keep & ~inp.g_crowd).any() or d_keep.any():
                per_size[size] = tide(inp.subset(g_keep, d_keep), per_class=False)
    gt_rows = ss.gt_arrays(ids)["index"]
    return ErrorReport(name, result, ids, rows, per_class, per_size, s.untrained, gt_rows)


def error_table(reports: list[ErrorReport]) -> list[str]:
    """Text lines: per series AP50 and every dAP (tidecv's short names), then the counts."""
    keys = [*MAIN_ERRORS, "fp", "fn"]
    head = f"{'series':32} {'AP50':>6} " + " ".join(f"{ERROR_NAMES[k]:>8}" for k in keys)
    lines = [head, "-" * len(head)]
    for r in reports:
        d = r.result.dap
        lines.append(f"{r.series[:32]:32} {r.result.ap50:6.2f} " + " ".join(f"{d[k]:8.2f}" for k in keys))
    lines.append("")
    lines.append("error counts: " + "; ".join(
        f"{r.series}: " + ", ".join(f"{ERROR_NAMES[k]} {r.result.counts[k]}" for k in MAIN_ERRORS) for r in reports
    ))  # fmt: skip
    return lines


def analyses_json(
    ss: SeriesSet, name: str, *, threshold: float, tags: dict[str, np.ndarray] | None = None, worst: int = 20,
    objective: str = "max-f1", target: float = 0.9,
) -> dict[str, Any]:  # fmt: skip
    """The other analyses of a series as JSON: confusion matrix (IoU 0.5, score >= threshold), slices (sizes,
    folders, tags), worst images by F1, calibration (reliability bins and ECE), per-class operating points."""
    s = ss.get(name)
    m = match_series(ss, s)
    conf = confusion(ss, m, threshold)
    slice_tags = folder_tags(ss) | (tags or {})
    slices = size_slices(ss, s)
    if len(slice_tags) > 1 or tags:
        slices = pd.concat([slices, tag_slices(ss, s, slice_tags)], ignore_index=True)
    cal = calibration(m.d_score[~m.ignored], m.tp[~m.ignored])
    keep = ~m.ignored
    points = operating_points(m.d_score[keep], m.d_cls[keep], m.tp[keep], m.g_cls[~m.g_crowd], ss.class_names,
                              objective=objective, target=target, global_threshold=threshold)  # fmt: skip

    def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
        return json.loads(frame.to_json(orient="records"))

    return {
        "threshold": threshold,
        "confusion": {"labels": conf.labels, "counts": conf.counts.tolist(),
                      "images": {f"{conf.labels[r]} -> {conf.labels[c]}": ids for (r, c), ids in conf.images.items()}},
        "slices": records(slices),
        "worst_images": records(worst_images(ss, m, threshold, n=worst)),
        "calibration": {"ece": json_number(cal.ece), "detections": cal.n, "bins": records(cal.bins)},
        "operating_points": {"objective": objective, "target": target if objective != "max-f1" else None,
                             "points": [{k: json_number(v) if isinstance(v, float) else v for k, v in p.__dict__.items()}
                                        for p in points]},
    }  # fmt: skip
