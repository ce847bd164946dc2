"""TIDE error decomposition (Bolya et al. 2020) exactly as `tidecv` 1.0.1 computes it, on numpy arrays.

Per image (tidecv's `TIDEExample`): predictions by decreasing score (stable), cut to 100; each takes the unused
same-class ground-truth box of highest IoU (first on ties) at IoU >= 0.5; an unmatched prediction inside a crowd
region of its class (intersection over its own area > 0.5) is ignored for AP. Each unmatched or ignored prediction
gets one error, tested in tidecv's order: Loc (best same-class IoU in [0.1, 0.5]), Cls (IoU >= 0.5 with a box of
another class), Dupe (IoU >= 0.5 with a same-class box already taken), Bkg (every IoU <= 0.1), else Both; an
unmatched ground-truth box no Cls/Loc error points at is Miss. AP is tidecv's: per class, 101-point interpolated,
classes that have a box or a prediction averaged (a class with predictions and no box counts as 0).

Each main error's dAP is the AP with only that error fixed by tidecv's oracle (Cls/Loc: the highest-scoring error per
box becomes a true positive, the others are removed; Dupe/Bkg/Both: removed; Miss: the box leaves the count) minus
the AP, floored at 0; FalsePos: every false positive scored 0; FalseNeg: every unmatched box leaves the count. All in
AP points (0-100). Ties in score keep tidecv's insertion order (errors first, then the true positives). Where a fix
leaves no class to average (tidecv divides by zero) the dAP is NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.evalcore import coco_pair_ious

TIDE_POS_IOU = 0.5
TIDE_BG_IOU = 0.1
TIDE_MAX_DETS = 100
# tidecv's TIDE._error_types order, then its two special errors; JSON keys as DetLens names them.
CLS, LOC, BOTH, DUPE, BKG, MISS = "cls", "loc", "both", "dupe", "bkg", "miss"
MAIN_ERRORS: tuple[str, ...] = (CLS, LOC, BOTH, DUPE, BKG, MISS)
SPECIAL_ERRORS: tuple[str, ...] = ("fp", "fn")
ERROR_NAMES: dict[str, str] = {CLS: "Cls", LOC: "Loc", BOTH: "Both", DUPE: "Dupe", BKG: "Bkg", MISS: "Miss",
                               "fp": "FalsePos", "fn": "FalseNeg"}  # fmt: skip
_CODE = {name: k for k, name in enumerate(MAIN_ERRORS)}


@dataclass
class TideInput:
    """One series against its ground truth, as arrays. Images are indices 0..n_images-1 in the order tidecv walks
    them (the ground truth's image order); predictions in results-file order."""

    n_images: int
    g_img: np.ndarray
    g_cls: np.ndarray
    g_xywh: np.ndarray
    g_crowd: np.ndarray
    d_img: np.ndarray
    d_cls: np.ndarray
    d_score: np.ndarray
    d_xywh: np.ndarray
    gt_classes: tuple[int, ...] = ()  # the ground truth's categories (tidecv's false-negative dict keys)

    def subset(self, g_keep: np.ndarray, d_keep: np.ndarray) -> TideInput:
        """The same images with only the kept boxes and predictions."""
        return TideInput(self.n_images, self.g_img[g_keep], self.g_cls[g_keep], self.g_xywh[g_keep],
                         self.g_crowd[g_keep], self.d_img[d_keep], self.d_cls[d_keep], self.d_score[d_keep],
                         self.d_xywh[d_keep], self.gt_classes)  # fmt: skip


@dataclass
class TideResult:
    """AP50 and the dAP of each error (AP points), the count of each error, per class too; `errors` lists each
    error: (type, image index, prediction index or -1, ground-truth index or -1)."""

    ap50: float
    dap: dict[str, float]
    counts: dict[str, int]
    per_class: dict[int, dict[str, float]] = field(default_factory=dict)  # class -> {"ap50": .., "cls": dAP, ...}
    errors: np.ndarray = field(default_factory=lambda: np.empty((0, 4), np.int64))

    def to_json(self) -> dict[str, Any]:
        """{"ap50", "dAP": {cls, loc, both, dupe, bkg, miss, fp, fn}, "counts": {...}} (JSON-ready)."""
        return {
            "ap50": json_number(self.ap50),
            "dAP": {k: json_number(v) for k, v in self.dap.items()},
            "counts": dict(self.counts),
        }


def json_number(v: float | None, digits: int | None = 6) -> float | None:
    """A figure for JSON: None for NaN/inf/None, else a float (rounded to `digits`, None: as it is)."""
    if v is None or not math.isfinite(v):
        return None
    return float(v) if digits is None else round(float(v), digits)


@dataclass
class _Points:
    """AP data points: class, score, correct, insertion sequence (ties), and per class the count of positives."""

    cls: np.ndarray
    score: np.ndarray
    correct: np.ndarray
    seq: np.ndarray


def _tide_class_ap(score: np.ndarray, correct: np.ndarray, seq: np.ndarray, n_pos: int) -> float:
    """tidecv's APDataObject.get_ap (0-100)."""
    if n_pos == 0:
        return 0.0
    order = np.lexsort((seq, -score))
    c = correct[order]
    tp = np.cumsum(c)
    fp = np.cumsum(~c)
    precision = tp / (tp + fp)
    recall = tp / n_pos
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, np.arange(101) / 100, side="left")
    y = [float(precision[i]) if i < len(precision) else 0 for i in idx.tolist()]
    return sum(y) / len(y) * 100


def _aps(points: _Points, n_pos: dict[int, int]) -> dict[int, float]:
    """Per class AP of the classes that are not empty (a point or a positive), tidecv's is_empty."""
    out = {}
    for k, npos in n_pos.items():
        on = points.cls == k
        if not on.any() and npos == 0:
            continue
        out[k] = _tide_class_ap(points.score[on], points.correct[on], points.seq[on], npos)
    return out


def _mean(aps: dict[int, float]) -> float:
    return sum(aps.values()) / len(aps) if aps else math.nan


@dataclass
class _Run:
    """One TIDERun's bookkeeping: AP points pushed (predictions used or not, not ignored), errors in order."""

    n_pos: dict[int, int]
    points: _Points
    err_type: np.ndarray  # per error, its code
    err_pred: np.ndarray  # prediction index (-1 for Miss)
    err_gt: np.ndarray  # ground-truth index (Cls/Loc/Miss; -1 otherwise)
    err_cls: np.ndarray  # the class its unfixed point is pushed in (-1: no point: Miss, ignored prediction)
    err_score: np.ndarray
    err_fix_cls: np.ndarray  # the class its fixed point is pushed in (-1: removed)
    err_img: np.ndarray
    err_gcls: np.ndarray  # the class of its ground-truth box (-1 none)
    fn_count: dict[int, int]


def _image(inp: TideInput, d: np.ndarray, g: np.ndarray, c: np.ndarray, acc: dict) -> None:  # noqa: C901
    """tidecv's `_eval_image` on one image: `d` its predictions (score order, cut), `g` its boxes, `c` its crowds."""
    for j in g.tolist():
        k = int(inp.g_cls[j])
        acc["n_pos"][k] = acc["n_pos"].get(k, 0) + 1
    if not len(d):
        for j in g.tolist():
            acc["fn"].append(j)
            acc["err"].append((_CODE[MISS], -1, j, -1, 0.0, -1))
        return
    d_cls, g_cls = inp.d_cls[d], inp.g_cls[g]
    n_d, n_g = len(d), len(g)
    iou = coco_pair_ious(np.repeat(inp.d_xywh[d], n_g, axis=0), np.tile(inp.g_xywh[g], (n_d, 1)),
                         np.zeros(n_d * n_g, bool)).reshape(n_d, n_g)  # fmt: skip
    same = d_cls[:, None] == g_cls[None, :]
    cls_iou = iou * same
    used = np.zeros(n_d, dtype=np.int8)  # 0 False, 1 True, 2 None (ignored)
    g_used = np.zeros(n_g, bool)
    if n_g:
        buf = cls_iou.copy()
        for p in np.flatnonzero(cls_iou.max(axis=1) >= TIDE_POS_IOU).tolist():
            j = int(np.argmax(buf[p]))
            if buf[p, j] >= TIDE_POS_IOU:
                used[p], g_used[j] = 1, True
                buf[:, j] = 0
    for r in c.tolist():
        crowd_iou = coco_pair_ious(inp.d_xywh[d], np.repeat(inp.g_xywh[[r]], n_d, axis=0), np.ones(n_d, bool))
        hit = (used != 1) & (crowd_iou > TIDE_POS_IOU) & (d_cls == inp.g_cls[r])
        used[hit] = 2
    base = len(acc["pts"])
    for p in range(n_d):
        if used[p] != 2:
            acc["pts"].append((int(d_cls[p]), float(inp.d_score[d[p]]), bool(used[p] == 1), base + p))
    best: dict[int, tuple[float, int]] = acc["best"]
    usable = np.zeros(n_g, bool)
    noncls_iou = iou * ~same
    used_cls = g_used[None, :] * iou * same
    for p in np.flatnonzero(used != 1).tolist():
        pred = int(d[p])
        orig_cls = int(d_cls[p]) if used[p] == 0 else -1
        score = float(inp.d_score[pred])
        if not n_g:
            acc["err"].append((_CODE[BKG], pred, -1, orig_cls, score, -1))
            continue
        j = int(np.argmax(cls_iou[p]))
        kind = None
        if TIDE_BG_IOU <= cls_iou[p, j] <= TIDE_POS_IOU:
            kind, fix_cls = LOC, int(d_cls[p])
        else:
            j = int(np.argmax(noncls_iou[p]))
            if noncls_iou[p, j] >= TIDE_POS_IOU:
                kind, fix_cls = CLS, int(g_cls[j])
        if kind is not None:
            gj = int(g[j])
            if g_used[j]:
                fix_cls = -1  # tidecv: no BestGTMatch when the box is taken: the fix removes the point
            else:
                usable[j] = True
                if best.get(gj, (-1.0, -1))[0] < score:
                    best[gj] = (score, pred)
            acc["err"].append((_CODE[kind], pred, gj, orig_cls, score, fix_cls))
            continue
        j = int(np.argmax(used_cls[p]))
        if used_cls[p, j] >= TIDE_POS_IOU:
            acc["err"].append((_CODE[DUPE], pred, -1, orig_cls, score, -1))
        elif iou[p, int(np.argmax(iou[p]))] <= TIDE_BG_IOU:
            acc["err"].append((_CODE[BKG], pred, -1, orig_cls, score, -1))
        else:
            acc["err"].append((_CODE[BOTH], pred, -1, orig_cls, score, -1))
    for jj in np.flatnonzero(~g_used).tolist():
        acc["fn"].append(int(g[jj]))
        if not usable[jj]:
            acc["err"].append((_CODE[MISS], -1, int(g[jj]), -1, 0.0, -1))


def _take(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """values[idx], -1 where idx is -1."""
    if not len(values):
        return np.full(len(idx), -1, dtype=np.int64)
    return np.where(idx >= 0, values[np.maximum(idx, 0)], -1)


def _run(inp: TideInput) -> _Run:
    """A TIDERun: every image in order, then the errors' fixed points (BestGTMatch decided at the end)."""
    order = np.lexsort((np.arange(len(inp.d_img)), -inp.d_score, inp.d_img))  # by image, score desc, stable
    d_starts = np.searchsorted(inp.d_img[order], np.arange(inp.n_images + 1))
    g_order = np.argsort(inp.g_img, kind="stable")
    g_starts = np.searchsorted(inp.g_img[g_order], np.arange(inp.n_images + 1))
    acc: dict[str, Any] = {"n_pos": {}, "pts": [], "err": [], "fn": [], "best": {}}
    for i in range(inp.n_images):
        d = order[d_starts[i] : d_starts[i + 1]][:TIDE_MAX_DETS]
        gi = g_order[g_starts[i] : g_starts[i + 1]]
        crowd = inp.g_crowd[gi]
        g, c = gi[~crowd], gi[crowd]
        if not len(d) and not len(g):
            continue
        _image(inp, d, g, c, acc)
    n_pos = acc["n_pos"]
    pts = np.array(acc["pts"], dtype=np.float64).reshape(-1, 4)
    points = _Points(pts[:, 0].astype(np.int64), pts[:, 1], pts[:, 2].astype(bool), pts[:, 3].astype(np.int64))
    for k in np.unique(points.cls).tolist():
        n_pos.setdefault(int(k), 0)
    err = np.array([e[:4] for e in acc["err"]], dtype=np.int64).reshape(-1, 4)
    e_score = np.array([e[4] for e in acc["err"]], dtype=np.float64)
    e_fix = np.array([e[5] for e in acc["err"]], dtype=np.int64)
    for n, (code, pred, gj) in enumerate(err[:, :3].tolist()):
        if code in (_CODE[CLS], _CODE[LOC]) and e_fix[n] >= 0 and acc["best"].get(gj, (0, -2))[1] != pred:
            e_fix[n] = -1  # not the highest-scoring error on its box: suppressed
    fn_count: dict[int, int] = {}
    for j in acc["fn"]:
        fn_count[int(inp.g_cls[j])] = fn_count.get(int(inp.g_cls[j]), 0) + 1
    img = np.where(err[:, 1] >= 0, _take(inp.d_img, err[:, 1]), _take(inp.g_img, err[:, 2]))
    g_cls = _take(inp.g_cls, err[:, 2])
    return _Run(n_pos, points, err[:, 0], err[:, 1], err[:, 2], err[:, 3], e_score, e_fix,
                img if len(err) else np.empty(0, np.int64), g_cls, fn_count)  # fmt: skip


def _fixed(run: _Run, fix: np.ndarray | None, *, fp_zero: bool = False, drop_fn: bool = False) -> tuple[_Points, dict]:
    """tidecv's fix_errors: error points first (fixed where `fix`), then the true positives, with the counts."""
    n_pos = dict(run.n_pos)
    fix = np.zeros(len(run.err_type), bool) if fix is None else fix
    cls = np.where(fix, run.err_fix_cls, run.err_cls)
    miss = fix & (run.err_type == _CODE[MISS])
    for k, n in zip(*np.unique(run.err_gcls[miss], return_counts=True), strict=True):
        n_pos[int(k)] -= int(n)
    keep = cls >= 0
    correct = fix[keep]
    tp = run.points.correct
    pts = _Points(
        np.concatenate([cls[keep], run.points.cls[tp]]),
        np.concatenate([run.err_score[keep], run.points.score[tp]]),
        np.concatenate([correct, np.ones(int(tp.sum()), bool)]),
        np.arange(int(keep.sum()) + int(tp.sum())),
    )
    if fp_zero:
        pts.score = np.where(pts.correct, 1.0, 0.0)
    if drop_fn:
        n_pos = {k: v - run.fn_count.get(k, 0) for k, v in n_pos.items()}
    return pts, n_pos


def _delta(base: dict[int, float], fixed: dict[int, float]) -> dict[int, float]:
    """Per class AP change (NaN where the fix empties the class)."""
    return {k: fixed[k] - v if k in fixed else math.nan for k, v in base.items()}


def tide(inp: TideInput, *, per_class: bool = True) -> TideResult:
    """TIDE's AP50, main and special dAP (AP points) and error counts of one series, as tidecv 1.0.1 prints them."""
    run = _run(inp)
    base = _aps(run.points, run.n_pos)
    ap = _mean(base)
    dap: dict[str, float] = {}
    class_rows: dict[int, dict[str, float]] = {k: {"ap50": v} for k, v in base.items()}
    variants = [(name, run.err_type == _CODE[name], {}) for name in MAIN_ERRORS]
    variants += [("fp", None, {"fp_zero": True}), ("fn", None, {"drop_fn": True})]
    for name, fix, kw in variants:
        aps = _aps(*_fixed(run, fix, **kw))
        change = _mean(aps) - ap
        dap[name] = max(change, 0.0) if name in MAIN_ERRORS else change
        if per_class:
            for k, d in _delta(base, aps).items():
                class_rows[k][name] = max(d, 0.0) if name in MAIN_ERRORS and math.isfinite(d) else d
    counts = {name: int((run.err_type == _CODE[name]).sum()) for name in MAIN_ERRORS}
    errors = np.stack([run.err_type, run.err_img, run.err_pred, run.err_gt], axis=1) if len(run.err_type) else None
    return TideResult(ap, dap, counts, class_rows if per_class else {},
                      errors if errors is not None else np.empty((0, 4), np.int64))  # fmt: skip
