"""Ground-truth evaluation: COCO instances JSON in, COCO metrics, PR curves and per-box outcomes out.

- `validate`: reading a COCO JSON file safely and checking it (one-line `GroundTruthError`/`ResultsError`s naming the
  offending ids); `load_results` for COCO results lists.
- `groundtruth`: `load_ground_truth` maps a COCO instances file's category names to a model's label ids and matches
  its images to ours by file name and size (`with_images`).
- `coco`: `evaluate` scores one model's detections (the records schema) with COCOeval: AP, AP50, AP75, APs/m/l,
  AR1/10/100, AP per class and the 101-point precision curves; `evaluate_results_file` does the same for any COCO
  results JSON; `pr_curve` reads one curve out.
- `outcomes`: `match_outcomes` labels each box above a threshold as a true positive, a false positive (with its
  reason) or a missed ground-truth box, COCO-style, for overlays; `match_all` does it for every threshold at once and
  `outcomes_at` picks one threshold's rows out; `prf_at` turns those into precision, recall and F1.
- Error analysis and decisions (docs/evaluation-errors.md): `series` (results files by stem, a run's models),
  `errors` (TIDE exactly as tidecv 1.0.1), `report`, `boxlevel` (confusion matrix, worst images), `slices`,
  `significance` (paired bootstrap), `calibration` (ECE), `operating` (per-class thresholds). Their commands, `errors`
  and `gate`, are core.cli.errors.

Only images that have both ground truth and a processed image of ours are evaluated; an image that a model saw and
found nothing on counts (its ground-truth boxes are misses), an image it never saw does not.
"""

from __future__ import annotations

from core.config import EVAL_IOU, EVAL_MAX_DETS
from core.evaluate.coco import (
    JSON_KEYS,
    METRIC_KEYS,
    Metrics,
    detections_to_results,
    evaluate,
    evaluate_results_file,
    evaluator_version,
    pr_curve,
)
from core.evaluate.groundtruth import (
    GT_BOX_COLUMNS,
    NAME_ALIASES,
    GroundTruth,
    default_categories,
    gt_boxes,
    image_names_from,
    image_sizes_from,
    load_ground_truth,
    map_categories,
    with_images,
)
from core.evaluate.outcomes import (
    CROWD,
    DUPLICATE,
    FN,
    FP,
    IGNORED,
    LOW_IOU,
    MISSED,
    OUTCOME_COLUMNS,
    OUTCOME_DTYPES,
    PRF,
    TP,
    WRONG_CLASS,
    match_all,
    match_outcomes,
    outcomes_at,
    prf_at,
)
from core.evaluate.validate import GroundTruthError, ResultsError, load_results

__all__ = [
    "CROWD", "DUPLICATE", "EVAL_IOU", "EVAL_MAX_DETS", "FN", "FP", "GT_BOX_COLUMNS",
    "IGNORED", "JSON_KEYS", "LOW_IOU", "METRIC_KEYS", "MISSED", "NAME_ALIASES", "OUTCOME_COLUMNS", "OUTCOME_DTYPES",
    "PRF", "TP", "WRONG_CLASS", "GroundTruth", "GroundTruthError", "Metrics", "ResultsError",
    "default_categories", "detections_to_results", "evaluate", "evaluate_results_file", "evaluator_version",
    "gt_boxes", "image_names_from", "image_sizes_from", "load_ground_truth",
    "load_results", "map_categories", "match_all", "match_outcomes", "outcomes_at", "pr_curve", "prf_at", "with_images",
]  # fmt: skip
