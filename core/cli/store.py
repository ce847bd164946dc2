"""The run store's commands: `runs`, `export`, `import` and `reviews`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.cli.common import (
    EXIT_OK,
    STORE_HELP,
    open_store,
    store_path,
)
from core.config import (
    DEFAULT_THRESHOLD,
)


def cmd_runs(args: argparse.Namespace) -> int:
    from core.config import STORE_DB_NAME

    path = store_path(args.store)
    rows = open_store(args.store).list_runs().to_dict("records") if (path / STORE_DB_NAME).is_file() else []
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return EXIT_OK
    if not rows:
        print(f"no runs in {path}")
        return EXIT_OK
    header = f"{'run_id':24} {'created_at':25} {'status':8} {'records':>7} {'errors':>6} {'images':>6}  models"
    print(header)
    print("-" * len(header))
    for r in rows:
        mark = "  (untrained)" if r["untrained"] else ""
        print(
            f"{r['run_id']:24} {r['created_at']:25} {r['status']:8} {r['n_inferences']:>7} {r['n_errors']:>6} "
            f"{r['n_images']:>6}  {r['models']}{mark}"
        )
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    path = open_store(args.store, create=False).export_run(args.run_id, Path(args.zip))
    print(f"exported run {args.run_id} to {path}")
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    run_id = store.import_run(Path(args.zip), replace=args.replace)
    print(f"imported run {run_id} into {store.path}")
    return EXIT_OK


def cmd_reviews(args: argparse.Namespace) -> int:
    import pandas as pd

    from core.compare.reviews import runs_of, summarize

    store = open_store(args.store, create=False)
    reviews = store.reviews(args.run_id, as_run_b=True)  # its own pairs and the cross-run pairs it is part of
    runs = [r for r in dict.fromkeys([args.run_id, *runs_of(reviews)]) if store.has_run(r)]
    det = pd.concat([store.load_run(r)[1] for r in runs], ignore_index=True)
    summary = summarize(args.run_id, reviews, det, args.threshold)
    if args.json:
        print(summary.to_json())
        return EXIT_OK
    if reviews.empty:
        print(f"no reviews of run {args.run_id}")
        return EXIT_OK
    for name, how in summary.reviewers.items():
        print(f"reviewer {name}: {'signed in' if how == 'signed-in' else 'typed name (unverified)'}")
    print()
    width = max(40, *(len(p) for p in summary.pairs["pair"]))
    header = (
        f"{'A vs B':{width}} {'n':>4} {'A wins':>6} {'B wins':>6} {'ties':>5} {'both wrong':>10}  "
        "A win rate (95% Wilson)"
    )
    print(header)
    print("-" * len(header))
    for r in summary.pairs.itertuples():
        rate = "   -" if r.win_rate != r.win_rate else f"{r.win_rate:.2f} [{r.win_low:.2f}, {r.win_high:.2f}]"
        print(f"{r.pair:{width}} {r.n:>4} {r.wins:>6} {r.losses:>6} {r.ties:>5} {r.both_wrong:>10}  {rate}")
    print()
    for r in summary.agreement.itertuples():
        value = (
            "not enough reviewers"
            if not r.statistic
            else (f"{r.statistic} {r.value:.3f}" if r.value == r.value else f"{r.statistic} undefined")
        )
        print(f"agreement {r.pair}: {r.reviewers} reviewers, {r.images} shared images, {value}")
    if len(summary.classes):
        print()
        print(f"{'A vs B':{width}} {'class':16} {'n':>4} {'A wins':>6} {'B wins':>6} {'ties':>5} {'both wrong':>10}")
        for r in summary.classes.itertuples():
            print(f"{r.pair:{width}} {r.label:16} {r.n:>4} {r.wins:>6} {r.losses:>6} {r.ties:>5} {r.both_wrong:>10}")
    if len(summary.disagreements):
        print("\nreviewers disagree:")
        for r in summary.disagreements.itertuples():
            print(f"  {r.image_id} ({r.pair}): {r.verdicts}")
    return EXIT_OK


def add_cli(sub: argparse._SubParsersAction) -> None:
    """Register `runs`, `export`, `import` and `reviews`."""
    store_help = f"run store folder (default: {STORE_HELP})"
    p_runs = sub.add_parser("runs", help="list the runs in the run store")
    p_runs.add_argument("--store", metavar="DIR", help=store_help)
    p_runs.add_argument("--json", action="store_true", help="print JSON")
    p_runs.set_defaults(func=cmd_runs)

    p_exp = sub.add_parser("export", help="write one run (tables, reviews, images) to a zip")
    p_exp.add_argument("run_id")
    p_exp.add_argument("zip", help="the zip file to write")
    p_exp.add_argument("--store", metavar="DIR", help=store_help)
    p_exp.set_defaults(func=cmd_export)

    p_imp = sub.add_parser("import", help="add a run from a zip written by export")
    p_imp.add_argument("zip")
    p_imp.add_argument("--store", metavar="DIR", help=store_help)
    p_imp.add_argument("--replace", action="store_true", help="replace a run with the same id")
    p_imp.set_defaults(func=cmd_import)

    p_rev = sub.add_parser("reviews", help="a run's review results: wins per pair, agreement, per class")
    p_rev.add_argument("run_id")
    p_rev.add_argument("--store", metavar="DIR", help=store_help)
    p_rev.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="score of the classes found")
    p_rev.add_argument("--json", action="store_true", help="print JSON")
    p_rev.set_defaults(func=cmd_reviews)
