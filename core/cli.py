"""Command line: `python -m core models`, `detect [PATHS...] [--runtime ...] [--store DIR]`, the run store's `runs`,
`export`, `import` (see core.store), and the job queue's `submit`, `jobs`, `cancel`, `resume` and `worker`
(see core.jobs)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from core.config import (
    AGREEMENT_IOU,
    DEFAULT_BATCH_SIZE,
    DEFAULT_THRESHOLD,
    DEFAULT_WARMUP,
    DEVICES,
    GALLERY_ANNOTATIONS,
    HEADLINE_MODELS,
    PRECISIONS,
    RUNTIME_EAGER,
    RUNTIMES,
    STORE_ENV,
    UNTRAINED_MARK,
    WEIGHTS_DEFAULT,
    WEIGHTS_UNTRAINED,
    WORKER_IDLE_EXIT_S,
)
from core.devices import DeviceError
from core.models import UnknownModelError, list_models, parse_model_list
from core.runtimes import RuntimeRefusedError, parse_variants
from core.weights import WeightsError

EXIT_OK = 0
EXIT_USAGE = 2
_STORE_HELP = f"${STORE_ENV}, else ~/.local/share/detlens"


def _models_table() -> list[dict[str, object]]:
    return [s.as_row() for s in list_models()]


def cmd_models(args: argparse.Namespace) -> int:
    rows = _models_table()
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    header = f"{'model':40} {'box mAP':>7} {'GFLOPS':>8} {'params M':>8} {'file MB':>8} {'classes':>7}  note"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['model']:40} {r['box_map']:>7} {r['gflops']:>8.2f} {r['params_m']:>8} {r['file_size_mb']:>8.1f} "
            f"{r['classes']:>7}  {r['note']}"
        )
    print("\nFigures are torchvision's published COCO val2017 numbers (weights.meta).")
    return EXIT_OK


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", disable=not enabled, file=sys.stderr, dynamic_ncols=True)


def _download_progress(model: str):
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def update(done: int, total: int | None) -> None:
        bar = bars.get("bar")
        if bar is None:
            bar = bars["bar"] = tqdm(
                total=total, unit="B", unit_scale=True, desc=f"weights {model}", file=sys.stderr, leave=False
            )
        bar.update(done - bar.n)
        if total and done >= total:
            bar.close()

    return update


def _export_progress(series: str, step: str) -> None:
    print(f"  {series}: {step} ...", file=sys.stderr, flush=True)


def cmd_detect(args: argparse.Namespace) -> int:
    if args.engine == "ray":
        from core.distributed import cli_detect

        return cli_detect(args)
    from core.images import gallery_paths, sources_from_paths
    from core.records import write_run
    from core.runner import run
    from core.store import current_user

    paths = [Path(p) for p in args.paths] if args.paths else gallery_paths()
    settings = _settings_from(args)
    n_series = len(settings.series())
    images = sources_from_paths(paths)
    if not images:
        print("error: no images found in the given paths", file=sys.stderr)
        return EXIT_USAGE
    store = _open_store(args.store) if args.store else None
    show = sys.stderr.isatty() and not args.quiet
    bar = _progress_bar(len(images) * n_series, show)

    def on_result(result, done, total):
        bar.set_postfix_str(f"{result.model} {result.image_name}"[:60], refresh=False)
        bar.update(1)

    options = {
        "user": current_user(),
        "on_result": on_result,
        "on_download": _download_progress if show else None,
        "on_export": _export_progress if not args.quiet else None,
    }
    try:
        if store is None:
            output = run(images, settings, **options)
        else:  # the run is a job this process holds (core.jobs.run_here): a killed detect leaves it resumable
            from core.jobs import run_here
            from core.runner import plan

            output = run_here(store, plan(settings, images), images, **options)
    finally:
        bar.close()
    written = write_run(Path(args.out), output.inferences, output.detections, output.info, parquet=args.parquet)
    _print_summary(output, len(images), args.threshold, gt_path=args.gt)
    print("wrote " + ", ".join(str(p) for p in written))
    if store is not None:
        print(f"stored run {output.info.run_id} in {store.path}")
    return EXIT_OK


def _runtime_ap(summary, output, gt_path: str | None):
    """The agreement summary with AP against the ground truth at `gt_path` (AP columns NaN without one); a line
    saying why the ground truth is not used when it is unreadable."""
    from core.agreement import ap_against_eager, with_ap
    from core.evaluate import GroundTruthError, load_ground_truth

    if not gt_path or gt_path == "none" or not len(summary):
        return summary, ""
    try:
        gt = load_ground_truth(Path(gt_path))
    except (GroundTruthError, OSError) as exc:
        return summary, f"  AP: ground truth {gt_path} not used: {str(exc).splitlines()[0]}"
    return with_ap(summary, ap_against_eager(gt, output.inferences, output.detections)), ""


def _print_summary(output, n_images: int, threshold: float, gt_path: str | None = None) -> None:
    """Per model: median and p95 latency and detections at the threshold; the untrained mark; failed images; each
    runtime's agreement with eager, with its AP and ΔAP where the images have ground truth at `gt_path`."""
    from core.agreement import ap_text, runtime_agreement, verdict
    from core.records import failed_rows, succeeded

    inf = output.inferences
    n_models = len(output.info.settings["models"])
    print(f"run {output.info.run_id}: {n_images} images x {n_models} models on {output.info.settings['device']}")
    for model, grp in succeeded(inf).groupby("model", sort=False):
        print(
            f"  {model:40} median {grp['total_ms'].median():8.1f} ms  p95 {grp['total_ms'].quantile(0.95):8.1f} ms"
            f"  detections >= {threshold}: {int(grp['n_detections'].sum())}"
        )
    if (inf["weights"] == WEIGHTS_UNTRAINED).any():
        print(f"  NOTE: {UNTRAINED_MARK}")
    for name, variant in output.info.settings.get("variants", {}).items():
        if variant.get("runtime", RUNTIME_EAGER) == RUNTIME_EAGER:
            continue
        if variant.get("error"):
            print(f"  {name}: {variant['error']}")
        else:
            made = "cached artifact" if variant.get("cache_hit") else f"exported in {variant.get('export_s', 0):.1f} s"
            size = variant.get("artifact_bytes", 0) / 1e6
            print(
                f"  {name}: {made}, loaded in {variant.get('load_s', 0):.1f} s" + (f", {size:.1f} MB" if size else "")
            )
    summary, gt_note = _runtime_ap(runtime_agreement(inf, output.detections, threshold=threshold), output, gt_path)
    if len(summary):
        print(f"agreement with eager (same label, IoU >= {AGREEMENT_IOU}, score >= {threshold}; AP: COCO, every box):")
        for row in summary.to_dict("records"):
            print(
                f"  {row['series']:40} vs {row['reference']}: {verdict(row)}, mean IoU {row['mean_iou']:.3f}, "
                + ap_text(row)
            )
        if gt_note:
            print(gt_note)
    for _, row in failed_rows(inf).drop_duplicates("image_id").iterrows():
        print(f"  failed: {row['image_name']}: {row['error']}")


def _store_path(value: str | None) -> Path:
    """`--store DIR`; no value or `default`: $DETLENS_STORE, else ~/.local/share/detlens."""
    from core.store import default_store_dir

    return default_store_dir() if value in (None, "", "default") else Path(value)


def _open_store(value: str | None, *, create: bool = True):
    from core.store import Store

    return Store(_store_path(value), create=create)


def cmd_runs(args: argparse.Namespace) -> int:
    from core.config import STORE_DB_NAME

    path = _store_path(args.store)
    rows = _open_store(args.store).list_runs().to_dict("records") if (path / STORE_DB_NAME).is_file() else []
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


def _settings_from(args: argparse.Namespace):
    """The RunSettings that `detect`'s and `submit`'s options ask for (the Ray path's too)."""
    from core.runner import RunSettings

    return RunSettings(
        models=parse_model_list(args.models),
        default_weights=args.weights,
        device=args.device,
        precision=args.precision,
        threshold=args.threshold,
        warmup=args.warmup,
        batch_size=args.batch_size,
        default_runtimes=[v.token for v in parse_variants(args.runtime)],
    )


def _job_sources(store, items: Sequence[str], *, lists: bool = False):
    """Paths (files or folders), or `id:IMAGE_ID` for an image already in the store; the same content once.
    `lists`: a text file lists image paths, one a line, as `detect --engine ray` reads it."""
    from core.images import ImageSource, sources_from_paths
    from core.store import StoreError

    kept = None
    out: dict[str, ImageSource] = {}
    for item in items:
        if item.startswith("id:"):
            if kept is None:
                kept = store.stored_images()
            image_id = item[3:]
            if image_id not in kept:
                raise StoreError(f"image {image_id} is not in the run store {store.path}")
            out.setdefault(image_id, kept[image_id])
            continue
        if lists:
            from core.distributed import list_images

            found = [ImageSource.from_path(p) for p in list_images([item])]
        else:
            found = sources_from_paths([Path(item)])
        for source in found:
            source = source.hashed()
            out.setdefault(source.image_id, source)
    return list(out.values())


def cmd_submit(args: argparse.Namespace) -> int:
    from core.images import gallery_paths
    from core.jobs import check_settings, submit
    from core.store import current_user

    settings = _settings_from(args)
    ray = None
    if args.engine == "ray":  # refused here in one line: non-eager runtimes, options that cannot work
        from core.distributed import ClusterError, check_ray_settings, options_from

        ray = options_from(args)
        try:
            check_ray_settings(settings, ray)
        except ClusterError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    else:
        check_settings(settings)  # before the store is even opened: a refused job leaves nothing behind
    store = _open_store(args.store)
    sources = _job_sources(store, args.images or [str(p) for p in gallery_paths()], lists=ray is not None)
    if not sources:
        print("error: no images found in the given paths", file=sys.stderr)
        return EXIT_USAGE
    run_id = submit(store, settings, sources, user=current_user(), check=False, ray=ray)
    print(run_id)
    return EXIT_OK


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def cmd_jobs(args: argparse.Namespace) -> int:
    from core.config import STORE_DB_NAME

    path = _store_path(args.store)
    store = _open_store(args.store) if (path / STORE_DB_NAME).is_file() else None
    if store is not None:
        store.reap_stale()
    jobs = store.jobs() if store is not None else []
    if args.json:
        print(json.dumps([j.as_dict() for j in jobs], indent=2, default=str))
        return EXIT_OK
    if not jobs:
        print(f"no jobs in {path}")
        return EXIT_OK
    workers = store.live_workers() if store is not None else []
    print(f"workers alive: {', '.join(workers) or 'none'}")
    header = (
        f"{'run_id':24} {'status':11} {'done':>11} {'errors':>6} {'img/s':>6} {'left':>7}  {'by':10} {'engine':18} "
        "models"
    )
    print(header)
    print("-" * len(header))
    for j in jobs:
        models = ", ".join(f"{m} {p.done}/{p.total}" for m, p in j.models.items())
        print(
            f"{j.run_id:24} {j.status:11} {f'{j.done}/{j.total}':>11} {j.errors:>6} {j.rate():>6.2f} "
            f"{_duration(j.eta_s()):>7}  {j.submitted_by[:10]:10} {j.engine:18} {models}"
        )
        if j.message:
            print(f"{'':24} {j.message}")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    status = _open_store(args.store, create=False).cancel_job(args.run_id)
    print(f"run {args.run_id}: " + ("cancelled" if status == "cancelled" else "stops after the image in flight"))
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    store = _open_store(args.store, create=False)
    store.resume_job(args.run_id)
    job = store.job(args.run_id)
    print(f"run {args.run_id}: queued again, {job.total - job.done} missing pair(s) to run")
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    from core.jobs import serve, tune_process

    threads = tune_process(args.threads, args.nice)
    store = _open_store(args.store)
    print(f"torch threads: {threads}, niceness +{args.nice}", flush=True)
    serve(store, idle_exit=args.idle_exit, log=lambda line: print(line, flush=True))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    path = _open_store(args.store, create=False).export_run(args.run_id, Path(args.zip))
    print(f"exported run {args.run_id} to {path}")
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    store = _open_store(args.store)
    run_id = store.import_run(Path(args.zip), replace=args.replace)
    print(f"imported run {run_id} into {store.path}")
    return EXIT_OK


def cmd_reviews(args: argparse.Namespace) -> int:
    import pandas as pd

    from core.reviews import runs_of, summarize

    store = _open_store(args.store, create=False)
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


def _run_options(p: argparse.ArgumentParser) -> None:
    """The options `detect` and `submit` share."""
    p.add_argument("--models", default=",".join(HEADLINE_MODELS), help="comma-separated model names")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument(
        "--runtime",
        default=RUNTIME_EAGER,
        help=f"comma-separated runtimes per model ({'|'.join(RUNTIMES)}), each optionally -fp32|-fp16|-bf16, "
        "e.g. eager,onnxruntime,openvino,openvino-bf16; each is its own series, compared with eager",
    )
    p.add_argument("--weights", default=WEIGHTS_DEFAULT, help="default | untrained | FILE (.pth/.safetensors)")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="score threshold for counts")
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="warm-up calls per model, not recorded")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)


def _engine_options(p: argparse.ArgumentParser) -> None:
    """Where `detect` runs, and where `submit`'s worker runs the job: here, or on Ray (core.distributed)."""
    p.add_argument(
        "--engine", default="local", choices=("local", "ray"), help="ray: on a Ray cluster (core.distributed)"
    )
    p.add_argument("--ray-address", metavar="HOST:PORT", help="Ray cluster to join (default: start Ray here)")
    p.add_argument("--workers", type=int, default=1, help="Ray: detector actors per model (< this machine's CPUs here)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="Ray: GPUs per actor (fractions share one)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="DetLens: compare torchvision detectors.")
    sub = parser.add_subparsers(dest="command", required=True)

    p_models = sub.add_parser("models", help="list the detectors with their published metadata")
    p_models.add_argument("--json", action="store_true", help="print JSON")
    p_models.set_defaults(func=cmd_models)

    p_det = sub.add_parser("detect", help="run detectors on images (the bundled gallery when no path is given)")
    p_det.add_argument("paths", nargs="*", help="image files or folders")
    _run_options(p_det)
    p_det.add_argument("--out", default="out", help="output folder for inferences.csv and detections.csv")
    p_det.add_argument("--parquet", action="store_true", help="write Parquet beside the CSV files")
    p_det.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p_det.add_argument("--store", metavar="DIR", help=f"also keep the run in this run store ('default': {_STORE_HELP})")
    p_det.add_argument(
        "--gt",
        default=str(GALLERY_ANNOTATIONS),
        metavar="FILE",
        help="COCO instances JSON for the runtimes' AP against eager ('none': skip; default: the gallery's)",
    )
    _engine_options(p_det)
    p_det.set_defaults(func=cmd_detect)

    store_help = f"run store folder (default: {_STORE_HELP})"
    p_runs = sub.add_parser("runs", help="list the runs in the run store")
    p_runs.add_argument("--store", metavar="DIR", help=store_help)
    p_runs.add_argument("--json", action="store_true", help="print JSON")
    p_runs.set_defaults(func=cmd_runs)

    p_sub = sub.add_parser("submit", help="queue a run for a worker; prints its run id at once")
    p_sub.add_argument("images", nargs="*", help="image files or folders, or id:IMAGE_ID of a stored image")
    _run_options(p_sub)
    p_sub.add_argument("--store", metavar="DIR", help=store_help)
    _engine_options(p_sub)
    p_sub.set_defaults(func=cmd_submit)

    p_jobs = sub.add_parser("jobs", help="queued, running and recent jobs with their progress")
    p_jobs.add_argument("--store", metavar="DIR", help=store_help)
    p_jobs.add_argument("--json", action="store_true", help="print JSON")
    p_jobs.set_defaults(func=cmd_jobs)

    for name, func, text in (
        ("cancel", cmd_cancel, "stop a job after the image in flight (its records are kept)"),
        ("resume", cmd_resume, "queue an interrupted, cancelled or failed job again: only missing pairs run"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("run_id")
        p.add_argument("--store", metavar="DIR", help=store_help)
        p.set_defaults(func=func)

    p_work = sub.add_parser("worker", help="run queued jobs one at a time (the dashboard starts one when needed)")
    p_work.add_argument("--store", metavar="DIR", help=store_help)
    p_work.add_argument(
        "--idle-exit", type=float, default=WORKER_IDLE_EXIT_S, metavar="SECONDS",
        help="exit after this long with no job (0: when the queue is empty)",
    )  # fmt: skip
    p_work.add_argument("--threads", type=int, default=None, help="torch threads (default: physical cores)")
    p_work.add_argument("--nice", type=int, default=0, help="lower the worker's CPU priority by this much")
    p_work.set_defaults(func=cmd_worker)

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

    from core.evaluate import add_cli as add_evaluate

    add_evaluate(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("detect", "submit"):
        if not 0.0 <= args.threshold <= 1.0:
            parser.error("--threshold must be between 0 and 1")
        if args.warmup < 0 or args.batch_size < 1:
            parser.error("--warmup must be >= 0 and --batch-size >= 1")
    from core.store import StoreError

    try:
        return args.func(args)
    except (UnknownModelError, DeviceError, WeightsError, StoreError, RuntimeRefusedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
