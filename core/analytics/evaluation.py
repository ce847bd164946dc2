"""COCO evaluation of the boxes a RunFrame holds, without the whole detections table.

A variant's boxes (one model, the (run, image) pairs of its inference rows) are cut out of the frame as arrays
(`RunFrame.columns`: codes and floats, no string per box), turned into rows only where they are evaluated, and given to
the same core.evaluate functions as the pandas path (`evaluate`, `match_all`), so the figures are the same. Past
EVAL_WORKER_MIN_BOXES boxes each variant is evaluated in its own worker process (`python -m core.analytics.evaluation`,
the job pickled on its stdin and the result on its stdout; at most EVAL_WORKERS at a time): COCOeval builds a Python
dict per box (about 2.5 GB at a million boxes), which then never lands in the server process, and two variants use the
two cores. Not multiprocessing: its spawned children import the `__main__` module, which under Streamlit is the app
script itself. What comes back is small: the metrics, and per `match_all` row only its
outcome, score and matched score (what the precision/recall/F1 at a threshold needs).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.analytics.frame import RunFrame, rows_of
from core.evaluate import FN, PRF, GroundTruth, GroundTruthError, Metrics, evaluate, match_all, prf_at

EVAL_WORKER_MIN_BOXES = 200_000  # below this many boxes in all, variants are evaluated in this process
EVAL_WORKERS = 2  # worker processes at a time (one per core of the reference machine)
MATCHED_COLUMNS: tuple[str, ...] = ("outcome", "score", "matched_score")
ROOT = Path(__file__).resolve().parents[2]


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


def evaluate_columns(gt: GroundTruth, model: str, columns: dict[str, np.ndarray]) -> BoxEval:
    """COCO metrics and `match_all` of one variant's boxes (`RunFrame.columns`) against `gt` matched to its images."""
    det = rows_of(columns)
    metrics, error = None, ""
    try:
        metrics = evaluate(gt, det, model=model)
    except (GroundTruthError, ValueError) as exc:
        error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    matched = None
    if gt.image_id_map:
        frame = match_all(gt, det, model=model)
        matched = frame[list(MATCHED_COLUMNS)].astype({"outcome": "category"}).reset_index(drop=True)
    return BoxEval(metrics, error, matched)


def _evaluate_job(job: tuple[GroundTruth, str, dict[str, np.ndarray]]) -> BoxEval:
    """`evaluate_columns(*job)` in a worker process; RuntimeError (its last error line) when the worker fails. The
    job is pickled straight into the worker's stdin (no second copy of its arrays in this process)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryFile() as err:
        worker = subprocess.Popen(
            [sys.executable, "-m", "core.analytics.evaluation"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=ROOT,
            env=env,
        )
        with contextlib.suppress(BrokenPipeError):  # a worker that died early: its exit status says why
            pickle.dump(job, worker.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            worker.stdin.close()
        result = worker.stdout.read()
        worker.stdout.close()
        if worker.wait() != 0:
            err.seek(0)
            lines = err.read().decode(errors="replace").strip().splitlines() or [f"exit status {worker.returncode}"]
            raise RuntimeError(f"evaluation worker failed: {lines[-1]}")
    return pickle.loads(result)  # noqa: S301 (our own child's output)


def evaluate_all(jobs: list[tuple[GroundTruth, str, dict[str, np.ndarray]]], *, workers: int | None = None) -> list:
    """`evaluate_columns` of every (gt, model, columns), in order: in worker processes when the boxes are many
    (`workers`: None picks by EVAL_WORKER_MIN_BOXES, 0 forces this process)."""
    boxes = sum(len(j[2]["score"]) for j in jobs)
    if workers is None:
        workers = EVAL_WORKERS if boxes >= EVAL_WORKER_MIN_BOXES else 0
    if workers <= 0 or not jobs:
        return [evaluate_columns(*j) for j in jobs]
    with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:  # each thread waits on its process
        return list(pool.map(_evaluate_job, jobs))


def prf_matched(matched: pd.DataFrame, threshold: float) -> PRF:
    """`prf_at(outcomes_at(match_all rows, threshold))` on the MATCHED_COLUMNS cut: the detections scored at or above
    the threshold, and the GT boxes no such detection took."""
    is_gt = (matched["outcome"] == FN).to_numpy(bool)
    taken_at = matched["matched_score"].to_numpy(np.float64)
    keep = np.where(is_gt, ~(taken_at >= threshold), matched["score"].to_numpy(np.float64) >= threshold)
    return prf_at(matched.loc[keep, ["outcome"]].astype({"outcome": "string"}))


def _worker_main() -> None:
    """One pickled job on stdin, its BoxEval pickled on stdout; anything else written to stdout goes to stderr."""
    result_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    job = pickle.load(sys.stdin.buffer)  # noqa: S301 (sent by our own parent)
    result_out.write(pickle.dumps(evaluate_columns(*job), protocol=pickle.HIGHEST_PROTOCOL))
    result_out.close()


if __name__ == "__main__":  # run as a module: pickle with the classes' real module names
    from core.analytics.evaluation import _worker_main as worker_main

    worker_main()
