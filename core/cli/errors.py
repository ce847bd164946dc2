"""`python -m core errors` (TIDE error decomposition per series) and `python -m core gate` (a CI gate: is the
candidate significantly worse than the baseline by more than --max-drop AP?).

Exit status: 0 done / the gate passes; 1 the gate fails; 2 bad input, with a one-line error on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    DEFAULT_THRESHOLD,
    GALLERY_ANNOTATIONS,
    MAX_F1,
    TARGET_PRECISION,
    UNTRAINED_MARK,
)

if TYPE_CHECKING:
    from core.evaluate.series import SeriesSet
    from core.evaluate.significance import Comparison

# core.evaluate (pandas, COCOeval) is imported by the two commands when they run, not by every `python -m core`
# command that registers them: detect's and the worker's start stay free of it.

EXIT_OK, EXIT_GATE_FAILED, EXIT_BAD_INPUT = 0, 1, 2
GATE_MAX_DROP = 0.01  # AP (0-1) the candidate may lose before the gate fails


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register `errors` and `gate` on the `python -m core` sub-command parsers."""
    p = subparsers.add_parser(
        "errors",
        help="TIDE error decomposition (Cls, Loc, Both, Dupe, Bkg, Miss, FalsePos, FalseNeg dAP) per series",
        description="Where the AP50 goes: TIDE's dAP per error type (tidecv 1.0.1's definitions, AP points 0-100) "
        "of COCO results files (each a series named by its file stem) or of a stored run's models. Exit 2 with one "
        "line on bad input.",
    )
    _inputs(p, gt_required=False)
    p.add_argument("--series", action="append", help="only this series (repeatable)")
    p.add_argument("--no-sizes", action="store_true", help="skip the per-size decomposition")
    p.add_argument(
        "--analyses",
        action="store_true",
        help="also the confusion matrix, slices, worst images, calibration and per-class operating points",
    )
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="score threshold of --analyses (0.5)")
    p.add_argument("--tags", help="with --analyses: a CSV of image name, tags (separated by ;) to slice by")
    p.add_argument(
        "--objective",
        choices=(MAX_F1, TARGET_PRECISION),
        default=MAX_F1,
        help="per-class thresholds: maximise F1, or reach --target precision",
    )
    p.add_argument("--target", type=float, default=0.9, help="the precision of --objective precision (0.9)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=main_errors)

    g = subparsers.add_parser(
        "gate",
        help="CI gate: exit 1 when the candidate is significantly worse than the baseline by more than --max-drop AP",
        description="Paired bootstrap (images resampled) of candidate - baseline AP. Exit 0 when the upper end of "
        "the 95% interval is at or above -max-drop (not significantly worse by more than that), 1 when it is "
        "below, 2 on bad input (one line).",
    )
    _inputs(g, gt_required=True)
    g.add_argument("--baseline", required=True, help="the baseline series")
    g.add_argument("--candidate", required=True, help="the candidate series")
    g.add_argument("--max-drop", type=float, default=GATE_MAX_DROP, help="AP (0-1) the candidate may lose (0.01)")
    g.add_argument("--resamples", type=int, default=BOOTSTRAP_RESAMPLES, help="bootstrap resamples (1000)")
    g.add_argument("--seed", type=int, default=BOOTSTRAP_SEED, help="bootstrap seed (0)")
    g.add_argument("--per-size", action="store_true", help="intervals per COCO size too (about 4x the AP work)")
    g.add_argument("--tags", help="a CSV of image name, tags: an interval per tag and per folder too")
    g.add_argument("--json", action="store_true", help="print JSON")
    g.set_defaults(func=main_gate)


def _inputs(p: argparse.ArgumentParser, *, gt_required: bool) -> None:
    p.add_argument("--run", help="a stored run's id (its models are the series)")
    p.add_argument("--results", action="append", help="a COCO results JSON (repeatable; series = file stem)")
    p.add_argument("--store", help="the run store folder (with --run)")
    if gt_required:
        p.add_argument("--gt", required=True, help="COCO instances JSON")
    else:
        p.add_argument("--gt", default=str(GALLERY_ANNOTATIONS), help="COCO instances JSON (default: the gallery's)")


def load_series(args: argparse.Namespace) -> SeriesSet:
    """The series the arguments name (SeriesError on bad input)."""
    from core.evaluate.series import SeriesError, from_results, from_run

    run, results = getattr(args, "run", None), getattr(args, "results", None) or []
    if bool(run) == bool(results):
        raise SeriesError("give exactly one of --run RUN_ID and --results FILE.json")
    if run:
        return from_run(run, args.gt, getattr(args, "store", None))
    return from_results(args.gt, results)


def _fail(exc: BaseException) -> int:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    print(f"error: {text}", file=sys.stderr)
    return EXIT_BAD_INPUT


def main_errors(args: argparse.Namespace) -> int:
    """`python -m core errors`."""
    from core.evaluate.report import analyses_json, error_report, error_table
    from core.evaluate.series import SeriesError
    from core.evaluate.slices import read_tags

    try:
        ss = load_series(args)
        names = args.series or list(ss.series)
        reports = [error_report(ss, n, sizes=not args.no_sizes) for n in names]
        extra = {}
        if args.analyses:
            tags = read_tags(Path(args.tags), ss) if args.tags else None
            extra = {n: analyses_json(ss, n, threshold=args.threshold, tags=tags, objective=args.objective,
                                      target=args.target) for n in names}  # fmt: skip
    except (SeriesError, ValueError, OSError) as exc:
        return _fail(exc)
    if args.json:
        print(json.dumps({r.series: r.to_json() | extra.get(r.series, {}) for r in reports}, indent=2))
        return EXIT_OK
    for line in error_table(reports):
        print(line)
    for name, doc in extra.items():
        for line in analyses_lines(name, doc):
            print(line)
    untrained = [r.series for r in reports if r.untrained]
    if untrained:
        print(f"{', '.join(untrained)}: {UNTRAINED_MARK}")
    return EXIT_OK


def analyses_lines(name: str, doc: dict[str, Any]) -> list[str]:
    """A few text lines of `analyses_json`: ECE, slices, the worst images, the per-class thresholds."""
    lines = ["", f"{name} at score >= {doc['threshold']:g}: ECE {_f(doc['calibration']['ece'])} over "
             f"{doc['calibration']['detections']} detections"]  # fmt: skip
    lines += [f"  {r['slice']:24} {r['images']:6d} images  AP {_f(r['AP'])}  AP50 {_f(r['AP50'])}  "
              f"recall50 {_f(r['recall50'])}" for r in doc["slices"]]  # fmt: skip
    worst = doc["worst_images"][:5]
    lines.append("  worst images (F1): " + ", ".join(f"{r['name']} ({_f(r['f1'])})" for r in worst))
    pts = doc["operating_points"]["points"]
    lines.append(f"  per-class thresholds ({doc['operating_points']['objective']}): "
                 + ", ".join(f"{p['label']} {_f(p['threshold'])}" for p in pts))  # fmt: skip
    return lines


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def gate_passes(c: Comparison, max_drop: float) -> bool:
    """The candidate (b) passes unless the upper end of its AP interval against the baseline is below -max_drop."""
    return not c.metrics["AP"].high < -max_drop


def gate_lines(c: Comparison, max_drop: float) -> list[str]:
    """The figures and the verdict, in words."""
    lines = [f"candidate {c.b} vs baseline {c.a}: {c.n_images} images, {c.resamples} paired bootstrap resamples "
             f"(seed {c.seed}), 95% intervals of candidate - baseline"]  # fmt: skip
    for name, iv in c.metrics.items():
        unit = " ms" if name == "latency_ms" else ""
        label = "median latency" if name == "latency_ms" else name
        lines.append(f"  {label:15} baseline {iv.a:.4f}{unit}  candidate {iv.b:.4f}{unit}  "
                     f"diff {iv.diff:+.4f}{unit} [{iv.low:+.4f}, {iv.high:+.4f}]")  # fmt: skip
    for name, row in c.per_slice.items():
        iv = row["AP"]
        lines.append(f"  AP {name:12} diff {iv.diff:+.4f} [{iv.low:+.4f}, {iv.high:+.4f}]")
    ok = gate_passes(c, max_drop)
    word = "PASS" if ok else "FAIL"
    why = "not significantly worse" if ok else "significantly worse"
    lines.append(f"{word}: the candidate is {why} than the baseline by more than {max_drop:g} AP "
                 f"(upper end {c.metrics['AP'].high:+.4f} vs {-max_drop:+.4f})")  # fmt: skip
    return lines


def main_gate(args: argparse.Namespace) -> int:
    """`python -m core gate`: 0 pass, 1 fail, 2 bad input."""
    from core.evaluate.series import SeriesError
    from core.evaluate.significance import compare
    from core.evaluate.slices import folder_tags, read_tags

    try:
        if args.max_drop < 0:
            raise SeriesError("--max-drop must be >= 0")
        ss = load_series(args)
        slices = folder_tags(ss) | (read_tags(Path(args.tags), ss) if args.tags else {})
        c = compare(ss, args.baseline, args.candidate, resamples=args.resamples, seed=args.seed, sizes=args.per_size,
                    slices=slices if len(slices) > 1 or args.tags else None)  # fmt: skip
    except (SeriesError, ValueError, OSError) as exc:
        return _fail(exc)
    ok = gate_passes(c, args.max_drop)
    if args.json:
        doc: dict[str, Any] = {"baseline": c.a, "candidate": c.b, "max_drop": args.max_drop, "pass": ok,
                               "exit": EXIT_OK if ok else EXIT_GATE_FAILED, **c.to_json()}  # fmt: skip
        print(json.dumps(doc, indent=2))
    else:
        for line in gate_lines(c, args.max_drop):
            print(line)
    untrained = [n for n in (c.a, c.b) if ss.series[n].untrained]
    if untrained:
        print(f"{', '.join(untrained)}: {UNTRAINED_MARK}", file=sys.stderr)
    return EXIT_OK if ok else EXIT_GATE_FAILED
