"""`python -m core evaluate`: COCO metrics of a results JSON or a stored run against a COCO instances JSON."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import GALLERY_ANNOTATIONS

if TYPE_CHECKING:
    from core.evaluate.coco import Metrics

# core.evaluate (pandas, COCOeval) is imported when `evaluate` runs, not by every `python -m core` command.

EXIT_OK = 0
EXIT_USAGE = 2


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register `evaluate` on the `python -m core` sub-command parsers (handler: `main_evaluate`)."""
    p = subparsers.add_parser(
        "evaluate",
        help="COCO mAP of detections against COCO-format ground truth (COCOeval)",
        description="COCO box metrics (COCOeval: faster-coco-eval, else pycocotools) of a COCO results JSON, or of a stored run, against a COCO "
        "instances JSON. Exit status 2 with a one-line message when a file cannot be used.",
    )
    p.add_argument("--gt", default=str(GALLERY_ANNOTATIONS), help="COCO instances JSON (default: the gallery's)")
    p.add_argument("--results", help="COCO results JSON (image and category ids as in the ground truth)")
    p.add_argument("--label-ids", choices=("gt", "model"), default="gt",
                   help="category ids in --results: the ground truth's (gt) or torchvision label ids (model)")  # fmt: skip
    p.add_argument("--run", help="a stored run's id (with --store)")
    p.add_argument("--store", help="the run store folder (with --run; default: the store's own default)")
    p.add_argument("--model", help="with --run: only this model")
    p.add_argument("--score-floor", type=float, default=0.0, help="drop boxes below this score first (default 0)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=main_evaluate)


def _fmt(v: float) -> str:
    return "   -  " if v is None or not math.isfinite(v) else f"{v:6.3f}"


def _print_table(rows: dict[str, Metrics]) -> None:
    from core.evaluate.coco import METRIC_KEYS

    header = f"{'model':40} " + " ".join(f"{k:>6}" for k in METRIC_KEYS)
    print(header)
    print("-" * len(header))
    for name, m in rows.items():
        print(f"{name:40} " + " ".join(_fmt(getattr(m, k)) for k in METRIC_KEYS))
    first = next(iter(rows.values()), None)
    if first is not None:
        print(f"\n{first.evaluator}, maxDets {list(first.max_dets)}, score floor {first.score_floor:g}")
    for name, m in rows.items():
        measured = {k: v for k, v in m.per_class.items() if math.isfinite(v)}
        if measured:
            prefix = f"{name}: " if len(rows) > 1 else ""
            print(prefix + "AP per class: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(measured.items())))


def _evaluate_run(args: argparse.Namespace) -> dict[str, Metrics]:
    """A stored run from its columnar segment (written at import or finish; from SQLite once if missing), evaluated
    as the Evaluate page does: the same figures as `evaluate` on the pandas tables, in a fraction of the memory."""
    from core.analytics import load_run_frame
    from core.analytics.evaluation import evaluate_frame
    from core.config import EVAL_CACHE_DIR
    from core.evaluate.groundtruth import load_ground_truth
    from core.evaluate.validate import GroundTruthError
    from core.store import Store, StoreError, default_store_dir

    try:
        store = Store(args.store or default_store_dir(), create=False)
        rf = load_run_frame(store, args.run)
    except StoreError as exc:
        raise GroundTruthError(f"run {args.run}: {exc}") from None
    present = list(dict.fromkeys(rf.inferences["model"].astype(str)))
    if args.model and args.model not in present:
        raise GroundTruthError(f"run {args.run} has no model {args.model!r} (it has {', '.join(present) or 'none'})")
    if not present:
        raise GroundTruthError(f"run {args.run} is empty")
    gt = load_ground_truth(args.gt)
    return evaluate_frame(rf, gt, model=args.model, score_floor=args.score_floor, cache_dir=store.path / EVAL_CACHE_DIR)


def main_evaluate(args: argparse.Namespace) -> int:
    """`python -m core evaluate`: 0 with the table or JSON; 2 with a one-line message for unusable input."""
    from core.evaluate.coco import evaluate_results_file
    from core.evaluate.validate import GroundTruthError, ResultsError

    results = getattr(args, "results", None)
    run = getattr(args, "run", None)
    try:
        if bool(results) == bool(run):
            raise GroundTruthError("give exactly one of --results RESULTS.json and --run RUN_ID")
        if results:
            rows = {
                Path(results).name: evaluate_results_file(
                    args.gt,
                    results,
                    label_ids=getattr(args, "label_ids", "gt"),
                    score_floor=getattr(args, "score_floor", 0.0),
                )
            }
        else:
            rows = _evaluate_run(args)
    except (GroundTruthError, ResultsError, ValueError) as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return EXIT_USAGE
    if getattr(args, "json", False):
        payload: Any = next(iter(rows.values())).to_json() if results else {k: m.to_json() for k, m in rows.items()}
        print(json.dumps(payload, indent=2))
    else:
        _print_table(rows)
    return EXIT_OK
