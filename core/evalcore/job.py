"""One variant's evaluation as arrays (ArrayJob -> ArrayEval): COCOeval and the threshold-free matching, and the worker
process that runs it (`python -m core.evalcore`: one pickled job on stdin, its result pickled on stdout)."""

from __future__ import annotations

import contextlib
import gc
import math
import os
import pickle
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.evalcore.cocoeval import CocoSummary, coco_summary, evaluate_arrays
from core.evalcore.matching import OUT_FN, greedy_match, match_order, matched_rows


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
