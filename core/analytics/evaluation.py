"""COCO evaluation of the boxes a RunFrame holds, without the whole detections table.

A variant's boxes (one model, the (run, image) pairs of its inference rows) are cut out of the frame as arrays
(`RunFrame.columns`: codes and floats, no string per box) and turned into a core.evalcore ArrayJob (image and label
codes looked up once per code): COCOeval on result dicts made in one pass from the arrays, and `match_all`'s greedy
matching of every image at once, the same kernels the pandas path (`evaluate`, `match_all`) runs, so the figures are
the same. Past EVAL_WORKER_MIN_BOXES boxes each variant is evaluated in its own worker process (`python -m
core.evalcore`, the job pickled on its stdin and the result on its stdout; at most EVAL_WORKERS at a time): COCOeval
builds a Python dict per box (about 2.5 GB at a million boxes), which then never lands in the server process, and two
variants use the two cores. The worker imports numpy and the COCOeval package only (core.evaluate would import torch:
seconds). Not multiprocessing: its spawned children import the `__main__` module, which under Streamlit is the app
script itself. What comes back is small: the COCOeval summary, and per `match_all` row only its outcome, score and
matched score (what the precision/recall/F1 at a threshold needs), with the image each row belongs to.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.analytics import evalcache
from core.analytics.frame import RunFrame
from core.config import EVAL_IOU, EVAL_MAX_DETS
from core.evalcore import ArrayEval, ArrayJob, evaluate_job
from core.evaluate import FN, PRF, GroundTruth, Metrics, prf_at
from core.evaluate.coco import check_max_dets, evaluator_backend, evaluator_version, metrics_from, no_match_message
from core.evaluate.outcomes import OUTCOME_NAMES

EVAL_WORKER_MIN_BOXES = 200_000  # below this many boxes in all, variants are evaluated in this process
EVAL_WORKERS = 2  # worker processes at a time (one per core of the reference machine)
MATCHED_COLUMNS: tuple[str, ...] = ("image_id", "outcome", "score", "matched_score")
ROOT = Path(__file__).resolve().parents[2]
MALLOC_ENV = {
    "MALLOC_TOP_PAD_": str(256 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(4 << 30),
    "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
}


@dataclass(frozen=True)
class BoxEval:
    """One variant's evaluation: metrics (None with `error` when COCOeval refused), and the `match_all` rows cut to
    MATCHED_COLUMNS (None when none of its images matched the ground truth)."""

    metrics: Metrics | None
    error: str
    matched: pd.DataFrame | None


def variant_index(rf: RunFrame, model: str, rows: pd.DataFrame) -> np.ndarray:
    """Indices of `model`'s boxes whose (run, image) is one of `rows` (inference rows: run_id, image_id), in stored
    order: the pandas path's `det[model == m & (run_id, image_id) in rows]`."""
    if model not in rf.models or rows.empty:
        return np.empty(0, dtype=np.int64)
    images = {v: k for k, v in enumerate(rf.image_ids)}
    runs = {v: k for k, v in enumerate(rf.run_ids)}
    n_runs = max(len(rf.run_ids), 1)
    pairs = [
        images[i] * n_runs + runs[r]
        for i, r in zip(rows["image_id"].astype(str), rows["run_id"].astype(str), strict=True)
        if i in images and r in runs
    ]
    keep = rf.model == rf.models.index(model)
    keep &= np.isin(rf.img.astype(np.int64) * n_runs + rf.run, np.asarray(pairs, dtype=np.int64))
    return np.flatnonzero(keep)


def array_job(gt: GroundTruth, columns: dict[str, np.ndarray], iou: float = EVAL_IOU) -> ArrayJob:
    """One variant's boxes (`RunFrame.columns`) and `gt` matched to its images, as the arrays core.evalcore evaluates:
    image and label codes looked up once per code, no string per box."""
    c = columns
    position = {image_id: k for k, image_id in enumerate(gt.image_id_map)}
    ours = {gid: k for k, gid in enumerate(gt.image_id_map.values())}  # GT image id -> its (last) position
    code_position = np.array([position.get(str(i), -1) for i in c["image_ids"]] + [-1], dtype=np.int64)
    code_gt = np.array([gt.image_id_map.get(str(i), -1) for i in c["image_ids"]] + [-1], dtype=np.int64)
    label_ids = np.append(np.asarray(c["label_ids"], dtype=np.int64), 0)
    anns = [a for a in gt.coco["annotations"] if a["image_id"] in ours]
    return ArrayJob(
        coco=gt.coco,
        img_ids=sorted(set(gt.image_id_map.values())),
        max_dets=check_max_dets(EVAL_MAX_DETS),
        backend=evaluator_backend(),
        iou=iou,
        gt_image=code_gt[c["img"]],
        position=code_position[c["img"]],
        label_id=label_ids[c["label"]],
        score=np.asarray(c["score"], dtype=np.float64),
        boxes=np.asarray(c["boxes"], dtype=np.float64),
        g_position=np.array([ours[a["image_id"]] for a in anns], dtype=np.int64),
        g_label=np.array([a["category_id"] for a in anns], dtype=np.int64),
        g_xywh=np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4),
        g_crowd=np.array([bool(a["iscrowd"]) for a in anns], dtype=bool),
    )


def box_eval(gt: GroundTruth, job: ArrayJob, result: ArrayEval) -> BoxEval:
    """The BoxEval of an ArrayJob's result: `evaluate`'s Metrics and `match_all`'s MATCHED_COLUMNS."""
    metrics = None
    if result.summary is not None:
        metrics = metrics_from(result.summary, gt.coco, job.max_dets, 0.0, result.n_results, job.backend)
    matched = pd.DataFrame(
        {
            "image_id": row_images(gt, job, len(result.outcome)),
            "outcome": pd.Categorical.from_codes(result.outcome.astype(np.int8), categories=list(OUTCOME_NAMES)),
            "score": result.score,
            "matched_score": result.matched_score,
        }
    )
    return BoxEval(metrics, result.error, matched)


def row_images(gt: GroundTruth, job: ArrayJob, n_rows: int) -> pd.Categorical:
    """The image (our image_id) of each `match_all` row of `job`, whose categories are every image matched to the
    ground truth. The rows run image by image in `gt.image_id_map` order (core.evalcore.matched_rows): each image's
    detections (matched ones: a score, not NaN), then its non-crowd GT boxes, so counting those per image gives them
    without the matching having to say."""
    images = list(gt.image_id_map)
    n = len(images)
    detections = job.position[(job.position >= 0) & ~np.isnan(job.score)]
    gt_boxes = job.g_position[~np.asarray(job.g_crowd, dtype=bool)]
    per_image = np.bincount(detections, minlength=n) + np.bincount(gt_boxes, minlength=n)
    if int(per_image.sum()) != n_rows:
        raise ValueError(f"{n_rows} matched rows, but {int(per_image.sum())} boxes on the matched images")
    return pd.Categorical.from_codes(np.repeat(np.arange(n), per_image), categories=images)


def evaluate_columns(
    gt: GroundTruth, model: str, columns: dict[str, np.ndarray], *, cache_dir: Path | None = None
) -> BoxEval:
    """COCO metrics and `match_all` of one variant's boxes (`RunFrame.columns`) against `gt` matched to its images
    (`model` names the variant; its boxes are all of that model). `cache_dir`: finished evaluations kept there
    (core.analytics.evalcache) are read instead of evaluated, and new ones kept."""
    if not gt.image_id_map:
        return BoxEval(None, no_match_message(gt), None)
    job = array_job(gt, columns)
    key, result = _cached(cache_dir, job)
    if result is None:
        result = evaluate_job(job)
        _keep(cache_dir, key, result)
    return box_eval(gt, job, result)


def _cached(cache_dir: Path | None, job: ArrayJob) -> tuple[str, ArrayEval | None]:
    """(key, the kept evaluation or None) of a job; ("", None) without a cache."""
    if cache_dir is None:
        return "", None
    key = evalcache.job_key(job, evaluator_version(job.backend))
    return key, evalcache.load_entry(cache_dir, key)


def _keep(cache_dir: Path | None, key: str, result: ArrayEval) -> None:
    if cache_dir is not None and key:
        evalcache.save_entry(cache_dir, key, result)


def _start_worker() -> subprocess.Popen:
    """A `python -m core.evalcore` process (numpy and the COCOeval package, no torch), waiting for its job on stdin.
    glibc's malloc is told to keep what it frees (MALLOC_*, unless set already): the worker makes and drops a million
    small objects and large arrays, and giving pages back to the kernel only to fault them in again cost about 10% of
    its time."""
    env = {**MALLOC_ENV, **os.environ}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", "core.evalcore"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )


def _run_worker(worker: subprocess.Popen, job: ArrayJob) -> ArrayEval:
    """`core.evalcore.evaluate_job(job)` in a started worker; RuntimeError (its last error line) when it fails. The
    job is pickled straight into the worker's stdin (no second copy of its arrays in this process)."""
    with tempfile.TemporaryFile() as err:
        drain = threading.Thread(target=shutil.copyfileobj, args=(worker.stderr, err), daemon=True)
        drain.start()  # a chatty worker never blocks on a full stderr pipe
        with contextlib.suppress(BrokenPipeError):  # a worker that died early: its exit status says why
            pickle.dump(job, worker.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            worker.stdin.close()
        result = worker.stdout.read()
        worker.stdout.close()
        status = worker.wait()
        drain.join()
        if status != 0:
            err.seek(0)
            lines = err.read().decode(errors="replace").strip().splitlines() or [f"exit status {status}"]
            raise RuntimeError(f"evaluation worker failed: {lines[-1]}")
    return pickle.loads(result)  # noqa: S301 (our own child's output)


def _evaluate_in_worker(job: tuple[GroundTruth, str, dict[str, np.ndarray]], cache_dir: Path | None) -> BoxEval:
    """`evaluate_columns(*job)` in a worker process, started before the job's arrays are made (its interpreter
    starts meanwhile; stopped unused when the evaluation is found in `cache_dir`)."""
    gt, _, columns = job
    if not gt.image_id_map:
        return BoxEval(None, no_match_message(gt), None)
    worker = _start_worker()
    try:
        arrays = array_job(gt, columns)
        key, result = _cached(cache_dir, arrays)
        if result is None:
            result = _run_worker(worker, arrays)
            _keep(cache_dir, key, result)
    finally:
        if worker.poll() is None:  # not used (found in the cache), or stopped by an error: no process left behind
            worker.kill()
            worker.communicate()
    return box_eval(gt, arrays, result)


def evaluate_all(
    jobs: list[tuple[GroundTruth, str, dict[str, np.ndarray]]],
    *,
    workers: int | None = None,
    cache_dir: Path | None = None,
) -> list:
    """`evaluate_columns` of every (gt, model, columns), in order: in worker processes when the boxes are many
    (`workers`: None picks by EVAL_WORKER_MIN_BOXES, 0 forces this process). `cache_dir`: evaluations kept there are
    read instead of made again, new ones kept (core.analytics.evalcache)."""
    boxes = sum(len(j[2]["score"]) for j in jobs)
    if workers is None:
        workers = EVAL_WORKERS if boxes >= EVAL_WORKER_MIN_BOXES else 0
    if workers <= 0 or not jobs:
        return [evaluate_columns(*j, cache_dir=cache_dir) for j in jobs]
    with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:  # each thread waits on its process
        return list(pool.map(lambda job: _evaluate_in_worker(job, cache_dir), jobs))


def rows_at(matched: pd.DataFrame, threshold: float) -> np.ndarray:
    """Which MATCHED_COLUMNS rows are `match_outcomes` rows at `threshold` (`outcomes_at`'s filter): the detections
    scored at or above it, and the GT boxes no such detection took."""
    is_gt = (matched["outcome"] == FN).to_numpy(bool)
    taken_at = matched["matched_score"].to_numpy(np.float64)
    return np.where(is_gt, ~(taken_at >= threshold), matched["score"].to_numpy(np.float64) >= threshold)


def prf_matched(matched: pd.DataFrame, threshold: float) -> PRF:
    """`prf_at(outcomes_at(match_all rows, threshold))` on the MATCHED_COLUMNS cut."""
    return prf_at(matched.loc[rows_at(matched, threshold), ["outcome"]].astype({"outcome": "string"}))


def evaluate_frame(
    rf: RunFrame,
    gt: GroundTruth,
    *,
    model: str | None = None,
    score_floor: float = 0.0,
    cache_dir: Path | None = None,
) -> dict[str, Metrics]:
    """COCO metrics of every model of a RunFrame (or only `model`), each against `gt` matched to the images it
    processed, from the frame's arrays (a stored run's segment: no detections table in pandas, the boxes of a large
    run evaluated in worker processes). The same figures as `core.evaluate.evaluate` on the run's pandas tables.
    GroundTruthError when a model's images match no ground-truth image."""
    from dataclasses import replace

    from core.evaluate import GroundTruthError, image_names_from, image_sizes_from, with_images

    inferences = rf.inferences
    present = list(dict.fromkeys(inferences["model"].astype(str)))
    models = [model] if model else present
    jobs = []
    for name in models:
        rows = inferences[inferences["model"].astype(str) == name]
        matched = with_images(gt, image_names_from(rows), image_sizes=image_sizes_from(rows))
        index = variant_index(rf, name, rows)
        if score_floor > 0:
            index = index[rf.score[index] >= score_floor]
        jobs.append((matched, name, rf.columns(index)))
    out = {}
    for name, result in zip(models, evaluate_all(jobs, cache_dir=cache_dir), strict=True):
        if result.metrics is None:
            raise GroundTruthError(f"{name}: {result.error}")
        out[name] = replace(result.metrics, score_floor=score_floor)
    return out
