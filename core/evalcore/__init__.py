"""Array-level COCO evaluation and greedy matching: numpy in, numpy out, no pandas, no torch.

What core.evaluate (metrics, outcomes) and the evaluation worker (`python -m core.evalcore`, started by
core.analytics.evaluation) share, one area per module:

- `matching`: pycocotools' box IoU bit for bit (`coco_pair_ious`) and `match_all`'s greedy matching of every image at
  once (`greedy_match`);
- `vector`: COCOeval in numpy over every image at once, pycocotools' figures bit for bit (`vector_cocoeval`, the
  default backend: ~1 s per million boxes where faster-coco-eval takes ~6 s);
- `cocoeval`: COCOeval (that one, faster-coco-eval's or pycocotools') on detections given as arrays
  (`evaluate_arrays`) or dicts (`run_cocoeval`), and the summary `Metrics` needs of it (`coco_summary`);
- `job`: one variant's evaluation (ArrayJob -> ArrayEval, `evaluate_job`) and the worker process that runs it.

The package imports only numpy (and, when evaluating, the COCOeval package): the worker process starts in a fraction
of a second, where importing core.evaluate would import torch (core.inference.models) for seconds.
"""

from __future__ import annotations

from core.evalcore.cocoeval import (
    ARRAY_PATH_VERSIONS,
    FASTER,
    PYCOCOTOOLS,
    CocoSummary,
    coco_classes,
    coco_summary,
    evaluate_arrays,
    loaded_results,
    run_cocoeval,
    run_cocoeval_arrays,
)
from core.evalcore.job import ArrayEval, ArrayJob, evaluate_job, gc_paused, worker_main
from core.evalcore.matching import (
    OUT_FN,
    OUT_FP,
    OUT_IGNORED,
    OUT_TP,
    WHY_CROWD,
    WHY_DUPLICATE,
    WHY_LOW_IOU,
    WHY_NONE,
    WHY_WRONG_CLASS,
    Matching,
    coco_pair_ious,
    greedy_match,
    key_pairs,
    match_order,
    matched_rows,
)
from core.evalcore.vector import VECTOR, VectorEval, vector_cocoeval

__all__ = [
    "ARRAY_PATH_VERSIONS",
    "FASTER",
    "OUT_FN",
    "OUT_FP",
    "OUT_IGNORED",
    "OUT_TP",
    "PYCOCOTOOLS",
    "VECTOR",
    "WHY_CROWD",
    "WHY_DUPLICATE",
    "WHY_LOW_IOU",
    "WHY_NONE",
    "WHY_WRONG_CLASS",
    "ArrayEval",
    "ArrayJob",
    "CocoSummary",
    "Matching",
    "VectorEval",
    "coco_classes",
    "coco_pair_ious",
    "loaded_results",
    "coco_summary",
    "evaluate_arrays",
    "evaluate_job",
    "gc_paused",
    "greedy_match",
    "key_pairs",
    "match_order",
    "matched_rows",
    "run_cocoeval",
    "run_cocoeval_arrays",
    "vector_cocoeval",
    "worker_main",
]
