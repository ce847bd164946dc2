"""Is a difference real? A paired bootstrap over images of B - A in AP, AP50 (COCO's, maxDets 100) and median latency.

Images are resampled with replacement (the same draw for both series: paired), `resamples` times, from a seeded
generator; each resample's AP is COCOeval's on the resampled images (`core.evalcore.weighted`: every image weighted by
how often it was drawn, all resamples at once). The interval is the percentile one (2.5 %, 97.5 %). The verdict reads
the AP interval: above 0 "B better", below 0 "A better", else "no significant difference at these images". Per
class and per size (COCO's small, medium, large area ranges) the same resamples give an interval too; an image slice
(a tag, a folder) is resampled within its own images.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.config import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, EVAL_MAX_DETS
from core.evalcore.vector import CocoFlags, ResultArrays, coco_flags
from core.evalcore.weighted import weighted_ap
from core.evaluate.errors import json_number
from core.evaluate.series import Series, SeriesError, SeriesSet, paired

BOOTSTRAP_LEVEL = 0.95
A_BETTER, B_BETTER, NO_DIFFERENCE = "A better", "B better", "no significant difference at these images"
SIZE_AREAS = {"small": 1, "medium": 2, "large": 3}  # pycocotools' area range index


@dataclass(frozen=True)
class Interval:
    """B - A on all the images (`diff`) and its bootstrap interval; `a` and `b` the figures themselves."""

    a: float
    b: float
    diff: float
    low: float
    high: float

    def to_json(self) -> dict[str, float | None]:
        return {k: json_number(getattr(self, k), None) for k in ("a", "b", "diff", "low", "high")}


@dataclass
class Comparison:
    """A paired comparison of series `b` against `a`: AP, AP50, median latency (ms) and per class and slice AP."""

    a: str
    b: str
    n_images: int
    resamples: int
    seed: int
    metrics: dict[str, Interval]  # "AP", "AP50", "latency_ms"
    per_class: dict[str, dict[str, Interval]] = field(default_factory=dict)  # class -> {"AP", "AP50"}
    per_slice: dict[str, dict[str, Interval]] = field(default_factory=dict)  # "size: small", "tag: x" -> {"AP", ..}
    verdict: str = NO_DIFFERENCE

    def to_json(self) -> dict[str, Any]:
        def table(rows: Mapping[str, Mapping[str, Interval]]) -> dict:
            return {k: {m: iv.to_json() for m, iv in v.items()} for k, v in rows.items()}

        return {"a": self.a, "b": self.b, "n_images": self.n_images, "resamples": self.resamples, "seed": self.seed,
                "level": BOOTSTRAP_LEVEL, "metrics": {k: v.to_json() for k, v in self.metrics.items()},
                "per_class": table(self.per_class), "per_slice": table(self.per_slice), "verdict": self.verdict}  # fmt: skip


def resample_weights(n_images: int, resamples: int, seed: int) -> np.ndarray:
    """(1 + resamples, n_images): row 0 all ones (the data itself), then how often each resample drew each image."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_images, size=(resamples, n_images))
    rows = np.repeat(np.arange(resamples), n_images)
    counts = np.bincount(rows * n_images + draws.ravel(), minlength=resamples * n_images)
    return np.vstack([np.ones((1, n_images)), counts.reshape(resamples, n_images).astype(np.float64)])


def flags_of(ss: SeriesSet, s: Series, image_ids: np.ndarray) -> CocoFlags:
    """COCOeval's per-detection outcomes of a series on `image_ids`."""
    on = np.isin(s.img, image_ids)
    arrays = ResultArrays.from_xyxy(s.img[on], s.cls[on], s.score[on], s.boxes[on])
    return coco_flags(ss.coco, image_ids.tolist(), EVAL_MAX_DETS, arrays)


def _ap_rows(per_class: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, T, K) per class AP -> per resample AP and AP50 (pycocotools' means over the classes measured)."""
    with np.errstate(invalid="ignore"), _quiet():
        return np.nanmean(per_class.mean(axis=1), axis=1), np.nanmean(per_class[:, 0, :], axis=1)


class _quiet:
    """Silence numpy's 'mean of empty slice' warnings (a class absent from a resample is NaN by design)."""

    def __enter__(self) -> None:
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._w.__exit__(*exc)


def _interval(a: np.ndarray, b: np.ndarray) -> Interval:
    """Row 0: the data; rows 1..: resamples (NaN rows left out)."""
    d = b[1:] - a[1:]
    d = d[np.isfinite(d)]
    tail = (1 - BOOTSTRAP_LEVEL) / 2 * 100
    low, high = np.percentile(d, [tail, 100 - tail]).tolist() if len(d) else [math.nan, math.nan]
    return Interval(float(a[0]), float(b[0]), float(b[0] - a[0]), low, high)


def weighted_median(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per row of `weights` (B, n), the median of the sample holding each value that many times (np.median's:
    the mean of the two middle values of an even count); NaN for an empty row."""
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[:, order]
    cw = np.cumsum(w, axis=1)
    n = cw[:, -1] if len(values) else np.zeros(len(w))
    lo = (cw <= np.floor((n - 1) / 2)[:, None]).sum(axis=1)
    hi = (cw <= np.floor(n / 2)[:, None]).sum(axis=1)
    ok = (n > 0) & (hi < len(v))
    out = np.full(len(w), math.nan)
    out[ok] = (v[np.minimum(lo[ok], len(v) - 1)] + v[hi[ok]]) / 2
    return out


def _latency(sa: Series, sb: Series, ids: np.ndarray, weights: np.ndarray) -> Interval | None:
    la = np.array([sa.latency_ms.get(int(i), math.nan) for i in ids])
    lb = np.array([sb.latency_ms.get(int(i), math.nan) for i in ids])
    both = np.isfinite(la) & np.isfinite(lb)
    if not both.any():
        return None
    return _interval(weighted_median(la[both], weights[:, both]), weighted_median(lb[both], weights[:, both]))


def ap_verdict(ap: Interval) -> str:
    """The words for an AP interval of B - A."""
    if ap.low > 0:
        return B_BETTER
    if ap.high < 0:
        return A_BETTER
    return NO_DIFFERENCE


def compare(
    ss: SeriesSet,
    a: str,
    b: str,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    sizes: bool = True,
    slices: Mapping[str, np.ndarray] | None = None,
) -> Comparison:
    """Paired bootstrap of series `b` against `a` on their shared images (SeriesError when they differ, or when
    `resamples` < 1). `slices`: name -> the image ids of an image slice (each resampled within itself)."""
    if resamples < 1:
        raise SeriesError("--resamples must be at least 1")
    sa, sb = paired(ss, a, b)
    ids = sa.images
    weights = resample_weights(len(ids), resamples, seed)
    areas = (0, *SIZE_AREAS.values()) if sizes else (0,)
    fa, fb = flags_of(ss, sa, ids), flags_of(ss, sb, ids)
    pa, pb = weighted_ap(fa, weights, areas), weighted_ap(fb, weights, areas)
    ap_a, ap50_a = _ap_rows(pa[:, 0])
    ap_b, ap50_b = _ap_rows(pb[:, 0])
    metrics = {"AP": _interval(ap_a, ap_b), "AP50": _interval(ap50_a, ap50_b)}
    lat = _latency(sa, sb, ids, weights)
    if lat is not None:
        metrics["latency_ms"] = lat
    names = ss.class_names
    per_class: dict[str, dict[str, Interval]] = {}
    for k, cid in enumerate(fa.cat_ids.tolist()):
        if not np.isfinite(pa[0, 0, 0, k]):
            continue
        with _quiet():
            per_class[names.get(cid, str(cid))] = {
                "AP": _interval(pa[:, 0, :, k].mean(axis=1), pb[:, 0, :, k].mean(axis=1)),
                "AP50": _interval(pa[:, 0, 0, k], pb[:, 0, 0, k]),
            }
    per_slice: dict[str, dict[str, Interval]] = {}
    for n, (size, _) in enumerate(SIZE_AREAS.items(), start=1):
        if sizes:
            sa_ap, sa_50 = _ap_rows(pa[:, n])
            sb_ap, sb_50 = _ap_rows(pb[:, n])
            if np.isfinite(sa_ap[0]):
                per_slice[f"size: {size}"] = {"AP": _interval(sa_ap, sb_ap), "AP50": _interval(sa_50, sb_50)}
    for name, members in (slices or {}).items():
        sub = np.intersect1d(ids, np.asarray(members, dtype=np.int64))
        if not len(sub):
            continue
        w = resample_weights(len(sub), resamples, seed)
        a_ap, a_50 = _ap_rows(weighted_ap(flags_of(ss, sa, sub), w)[:, 0])
        b_ap, b_50 = _ap_rows(weighted_ap(flags_of(ss, sb, sub), w)[:, 0])
        per_slice[name] = {"AP": _interval(a_ap, b_ap), "AP50": _interval(a_50, b_50)}
    return Comparison(a, b, len(ids), resamples, seed, metrics, per_class, per_slice, ap_verdict(metrics["AP"]))
