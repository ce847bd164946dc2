"""The aggregations the pages show, computed on a RunFrame: small frames out, never the whole detections table.

Each gives the numbers of the pandas expression named in its docstring (tests/test_analytics.py checks them against
that expression on random runs). A `threshold` is a float or per-class thresholds (`core.analytics.thresholds`): a box
counts when its score is at or above its own (model, class) threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from core.analytics.frame import BIN_EDGES, SCORE_BINS, RunFrame, threshold_bin
from core.analytics.thresholds import ClassThresholds, Threshold, above, global_threshold
from core.compare.matching import Agreement, CodedBoxes, agreement_of_groups
from core.config import AGREEMENT_IOU


def _bin(threshold: Threshold) -> int | None:
    """The histogram bin of a plain threshold on the 0.01 grid; None (a mask instead) for per-class thresholds."""
    return None if isinstance(threshold, ClassThresholds) else threshold_bin(threshold)


def box_mask(
    rf: RunFrame,
    threshold: Threshold = 0.0,
    models: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    image_ids: Sequence[str] | None = None,
) -> np.ndarray:
    """Boxes with score >= threshold (their own, for per-class thresholds), of the given models, classes (None or
    empty: all) and images."""
    keep = above(rf, threshold)
    if models is not None:
        keep &= np.isin(rf.model, rf.model_codes(list(models)))
    codes = rf.label_codes(list(classes) if classes else None)
    if codes is not None:
        keep &= np.isin(rf.label, codes)
    if image_ids is not None:
        wanted = np.isin(rf.image_ids, np.asarray(list(image_ids), dtype=object))
        keep &= wanted[rf.img]
    return keep


def boxes(rf: RunFrame, threshold: float = 0.0, models=None, classes=None, image_ids=None) -> pd.DataFrame:
    """Detection rows at or above the threshold (pandas: `det[det.score >= t]` with the filters), stored order."""
    return rf.rows(np.flatnonzero(box_mask(rf, threshold, models, classes, image_ids)))


def image_boxes(rf: RunFrame, image_id: str, threshold: Threshold | None = None) -> pd.DataFrame:
    """Every box of one image (any score; with `threshold`, only those at or above it), stored order: a slice, no
    scan."""
    part = rf.image_slice(image_id)
    if threshold is None:
        return rf.rows(part)
    return rf.rows(np.arange(part.start, part.stop)[above(rf, threshold, part)])


def count_matrix(
    rf: RunFrame, threshold: Threshold, classes: Sequence[str] | None = None, models: Sequence[str] | None = None
) -> np.ndarray:
    """[image code, model code] boxes with score >= threshold (pandas: groupby([image_id, model]).size())."""
    keep = box_mask(rf, threshold, models, classes)
    n_models = max(len(rf.models), 1)
    flat = rf.img[keep].astype(np.int64) * n_models + rf.model[keep]
    return np.bincount(flat, minlength=len(rf.image_ids) * n_models).reshape(len(rf.image_ids), n_models)


def counts_above(rf: RunFrame, threshold: Threshold) -> pd.DataFrame:
    """Successful inference rows with `count`, their boxes with score >= threshold (figures.count_points)."""
    ok = rf.ok_inferences().reset_index(drop=True)
    matrix = count_matrix(rf, threshold)
    img = _codes_of(rf.image_ids, ok["image_id"].astype(object).to_numpy())
    mod = _codes_of(np.asarray(rf.models, dtype=object), ok["model"].astype(object).to_numpy())
    latest = _codes_of(rf.run_ids, ok["run_id"].astype(object).to_numpy())
    counts = np.where((img >= 0) & (mod >= 0), matrix[np.maximum(img, 0), np.maximum(mod, 0)], 0)
    # a (run, image, model) whose boxes are not the kept (latest) run's has none counted, as in the pandas merge
    box_run = _pair_runs(rf)
    if box_run:
        counts = np.array(
            [c if box_run.get((i, m), r) == r else 0 for c, i, m, r in zip(counts, img, mod, latest, strict=True)],
            dtype=np.int64,
        )
    return ok.assign(count=counts.astype("int64"))


def _pair_runs(rf: RunFrame) -> dict[tuple[int, int], int]:
    """(image code, model code) -> run code of its boxes, only where a view holds several runs."""
    if rf.run_ids.size <= 1:
        return {}
    keys = np.unique(np.column_stack([rf.img, rf.model, rf.run]), axis=0)
    return {(int(i), int(m)): int(r) for i, m, r in keys}


def _codes_of(dictionary: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each value in `dictionary` (-1 when absent)."""
    lookup = {v: i for i, v in enumerate(dictionary)}
    return np.fromiter((lookup.get(v, -1) for v in values), dtype=np.int64, count=len(values))


def class_counts(rf: RunFrame, threshold: Threshold) -> pd.DataFrame:
    """(label, model, boxes) at or above the threshold, non-zero only (pandas: groupby([label, model]).size())."""
    k = _bin(threshold)
    if k is not None:
        matrix = rf.hist[:, :, k:].sum(axis=2)  # [model, label]: the pre-aggregated histogram's tail
    else:
        keep = above(rf, threshold)
        n_labels = max(len(rf.labels), 1)
        flat = rf.model[keep].astype(np.int64) * n_labels + rf.label[keep]
        matrix = np.bincount(flat, minlength=max(len(rf.models), 1) * n_labels).reshape(-1, n_labels)
    rows = [
        (rf.labels[lab], rf.models[m], int(matrix[m, lab]))
        for m in range(len(rf.models))
        for lab in range(len(rf.labels))
        if matrix[m, lab]
    ]
    return pd.DataFrame(rows, columns=["label", "model", "boxes"]).astype({"boxes": "int64"})


def score_histogram(rf: RunFrame, width: int = 2) -> pd.DataFrame:
    """(model, score, boxes): boxes per score bin of `width`/100 (score = left edge), every bin of every model that
    has boxes; from the pre-aggregated histogram (the last bin also holds score 1.0, like a plotly histogram)."""
    out = []
    per_model = rf.hist.sum(axis=1)  # [model, bin]
    for m, name in enumerate(rf.models):
        counts = per_model[m].copy()
        if not counts.sum():
            continue
        counts[SCORE_BINS - 1] += counts[SCORE_BINS]  # score 1.0 into the last bin
        grouped = counts[:SCORE_BINS].reshape(-1, width).sum(axis=1)
        out.extend((name, float(BIN_EDGES[i * width]), int(c)) for i, c in enumerate(grouped))
    return pd.DataFrame(out, columns=["model", "score", "boxes"])


def mean_count_curve(rf: RunFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """model -> (thresholds 0, 0.01 .. 1, mean boxes per successful image at or above each), as
    figures.count_curves: boxes of (image, model) pairs with a successful inference only."""
    ok = rf.ok_inferences()
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if ok.empty:
        return curves
    okpairs = np.zeros((len(rf.image_ids), max(len(rf.models), 1)), dtype=bool)
    img = _codes_of(rf.image_ids, ok["image_id"].astype(object).to_numpy())
    mod = _codes_of(np.asarray(rf.models, dtype=object), ok["model"].astype(object).to_numpy())
    okpairs[img[img >= 0], mod[img >= 0]] = True
    keep = okpairs[rf.img, rf.model] if rf.n_boxes else np.zeros(0, dtype=bool)
    bins = np.clip(np.searchsorted(BIN_EDGES, rf.score[keep], side="right") - 1, 0, SCORE_BINS)
    models_kept = rf.model[keep]
    for name in dict.fromkeys(ok["model"].astype(str)):
        m = rf.models.index(name)
        hist = np.bincount(bins[models_kept == m], minlength=SCORE_BINS + 1)
        above = hist[::-1].cumsum()[::-1]  # boxes with score >= BIN_EDGES[k]
        curves[name] = (BIN_EDGES.copy(), above / int((ok["model"] == name).sum()))
    return curves


def labels_above(rf: RunFrame, threshold: Threshold) -> list[str]:
    """Sorted class names with any box at or above the threshold."""
    k = _bin(threshold)
    if k is not None:
        present = rf.hist[:, :, k:].sum(axis=(0, 2)) > 0
    else:
        present = np.zeros(len(rf.labels), dtype=bool)
        present[np.unique(rf.label[above(rf, threshold)])] = True
    return sorted(str(x) for x in rf.labels[present[: len(rf.labels)]])


def agreement(
    rf: RunFrame,
    model_a: str,
    model_b: str,
    threshold: Threshold,
    image_ids: Sequence[str],
    classes: Sequence[str] | None = None,
    iou: float = AGREEMENT_IOU,
) -> Agreement:
    """matching.compare_models(boxes(rf, threshold, [a, b], classes), a, b, image_ids=image_ids) in one vectorised
    pass over the frame's arrays: no detection rows built, no loop over images. With per-class thresholds the
    Agreement's `threshold` is them (it formats as text in captions)."""
    index = pd.Index(list(image_ids), dtype=object)
    position = index.get_indexer(rf.image_ids)  # image code -> position in image_ids, -1 when left out
    sides = []
    for model in (model_a, model_b):
        keep = np.flatnonzero(box_mask(rf, threshold, [model], classes))
        group = position[rf.img[keep]] if len(position) else np.empty(0, np.int64)
        kept = group >= 0
        keep = keep[kept]
        sides.append(CodedBoxes(group[kept], rf.label[keep], rf.boxes[keep]))
    result = agreement_of_groups(index, model_a, model_b, global_threshold(threshold), iou, *sides)
    return replace(result, threshold=threshold) if isinstance(threshold, ClassThresholds) else result


def disagreement(
    rf: RunFrame,
    models: Sequence[str],
    threshold: Threshold,
    image_ids: Sequence[str],
    classes: Sequence[str] | None = None,
) -> pd.Series:
    """matching.disagreement_per_image on the frame: image_id -> unmatched boxes over consecutive model pairs."""
    ids = list(dict.fromkeys(image_ids))
    total = np.zeros(len(ids), dtype=np.int64)
    for model_a, model_b in zip(models, models[1:]):
        per_image = agreement(rf, model_a, model_b, threshold, ids, classes).per_image
        total += (per_image["only_a"] + per_image["only_b"]).to_numpy(np.int64)
    return pd.Series(total, index=pd.Index(ids, dtype="string", name="image_id"), name="disagreement")
