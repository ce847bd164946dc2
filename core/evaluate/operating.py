"""Operating points per class: the score threshold that maximises F1, or the lowest one whose precision reaches a
target, beside the global threshold; exported as JSON ("per-class thresholds").

At a threshold s a class's detections with score >= s count: true positives are those matched at IoU 0.5
(`core.evaluate.boxlevel`'s greedy matching, whose outcomes do not depend on the threshold), the recall's
denominator is its non-crowd ground-truth boxes. Candidate thresholds are the scores themselves (a threshold between
two scores gives the figures of the higher one). Ties in F1 go to the higher threshold (fewer boxes for the same F1).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from core.config import MAX_F1, TARGET_PRECISION


@dataclass(frozen=True)
class OperatingPoint:
    """One class's threshold and its figures there (NaN where undefined), with the figures at the global one."""

    label: str
    threshold: float
    precision: float
    recall: float
    f1: float
    n_gt: int
    global_precision: float
    global_recall: float
    global_f1: float
    reached: bool = True  # False: no threshold reaches the target precision (the max-F1 one is given)


def _curve(score: np.ndarray, tp: np.ndarray, n_gt: int) -> tuple[np.ndarray, ...]:
    """Thresholds (distinct scores, decreasing) and precision, recall, F1 at each."""
    order = np.argsort(-score, kind="stable")
    s, t = score[order], tp[order].astype(np.int64)
    ctp, cfp = np.cumsum(t), np.cumsum(1 - t)
    last = np.r_[s[1:] != s[:-1], True]  # a threshold takes every box of its score
    s, ctp, cfp = s[last], ctp[last], cfp[last]
    precision = ctp / (ctp + cfp)
    recall = ctp / n_gt if n_gt else np.full(len(s), math.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(ctp > 0, 2 * ctp / (2 * ctp + cfp + (n_gt - ctp)), 0.0)
    return s, precision, recall, f1


def _at(score: np.ndarray, tp: np.ndarray, n_gt: int, threshold: float) -> tuple[float, float, float]:
    on = score >= threshold
    n_tp, n_fp = int(tp[on].sum()), int((~tp[on]).sum())
    p = n_tp / (n_tp + n_fp) if n_tp + n_fp else math.nan
    r = n_tp / n_gt if n_gt else math.nan
    f = 2 * n_tp / (2 * n_tp + n_fp + n_gt - n_tp) if (2 * n_tp + n_fp + n_gt - n_tp) else math.nan
    return p, r, f


def operating_points(
    score: np.ndarray,
    cls: np.ndarray,
    tp: np.ndarray,
    gt_cls: np.ndarray,
    names: Mapping[int, str],
    *,
    objective: str = MAX_F1,
    target: float = 0.9,
    global_threshold: float = 0.5,
) -> list[OperatingPoint]:
    """Per class (those with a ground-truth box or a detection), the threshold for `objective`: MAX_F1, or
    TARGET_PRECISION (the lowest threshold whose precision is >= `target`, the most recall at that precision)."""
    if objective not in (MAX_F1, TARGET_PRECISION):
        raise ValueError(f"objective must be {MAX_F1!r} or {TARGET_PRECISION!r}, not {objective!r}")
    score, cls, tp = np.asarray(score, np.float64), np.asarray(cls), np.asarray(tp, bool)
    out = []
    for c in sorted(set(np.unique(cls).tolist()) | set(np.unique(gt_cls).tolist())):
        on = cls == c
        n_gt = int((gt_cls == c).sum())
        gp, gr, gf = _at(score[on], tp[on], n_gt, global_threshold)
        label = names.get(c, str(c))
        if not on.any():
            out.append(OperatingPoint(label, math.nan, math.nan, 0.0, 0.0, n_gt, gp, gr, gf, objective == MAX_F1))
            continue
        s, p, r, f = _curve(score[on], tp[on], n_gt)
        reached = True
        if objective == TARGET_PRECISION and (p >= target).any():
            k = int(np.flatnonzero(p >= target)[-1])
        else:
            reached = objective == MAX_F1
            k = int(np.flatnonzero(f == f.max())[0])  # the highest threshold of the best F1
        out.append(OperatingPoint(label, float(s[k]), float(p[k]), float(r[k]), float(f[k]), n_gt, gp, gr, gf,
                                  reached))  # fmt: skip
    return out


def thresholds_json(points: list[OperatingPoint], *, series: str, objective: str, target: float | None) -> str:
    """The per-class thresholds as JSON: {"series", "objective", "target", "iou", "thresholds": {class: t},
    "points": [...]} (NaN as null)."""

    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and not math.isfinite(v) else v

    doc = {
        "series": series,
        "objective": objective,
        "target": target if objective == TARGET_PRECISION else None,
        "iou": 0.5,
        "thresholds": {p.label: clean(p.threshold) for p in points},
        "points": [{k: clean(v) for k, v in asdict(p).items()} for p in points],
    }
    return json.dumps(doc, indent=2)


class ThresholdsFileError(ValueError):
    """A per-class thresholds file that `thresholds_json` did not write (one line)."""


def read_thresholds_json(data: bytes | str) -> tuple[str, dict[str, float | None]]:
    """(series, {class: threshold or None}) of a file `thresholds_json` wrote; ThresholdsFileError otherwise."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ThresholdsFileError(f"not a per-class thresholds file: not JSON ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("thresholds"), dict):
        raise ThresholdsFileError('not a per-class thresholds file: no "thresholds" object {class: threshold}')
    series = doc.get("series")
    if not isinstance(series, str) or not series:
        raise ThresholdsFileError('not a per-class thresholds file: no "series" name')
    out: dict[str, float | None] = {}
    for label, t in doc["thresholds"].items():
        ok = t is None or (isinstance(t, int | float) and not isinstance(t, bool) and 0.0 <= t <= 1.0)
        if not ok:
            raise ThresholdsFileError(f"threshold of class {label!r} is {t!r}: give a number from 0 to 1, or null")
        out[str(label)] = None if t is None else float(t)
    return series, out
