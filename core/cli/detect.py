"""`models` and `detect` (here, or on Ray with `--engine ray`): the run, its summary and the runtimes' agreement."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from core.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    STORE_HELP,
    download_progress,
    engine_options,
    export_progress,
    open_store,
    progress_bar,
    run_options,
    settings_from,
)
from core.config import (
    AGREEMENT_IOU,
    GALLERY_ANNOTATIONS,
    RUNTIME_EAGER,
    UNTRAINED_MARK,
    WEIGHTS_UNTRAINED,
)
from core.images.video import is_video_path, sampling_from


def _models_table() -> list[dict[str, object]]:
    from core.inference.models import list_models

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


def _detect_on_ray(args: argparse.Namespace) -> int:
    """`python -m core detect SOURCE... --engine ray`: the run goes into the store (`--store`, else the default one)
    and its Parquet parts under `--out/<run_id>/`. Exit 2 with one line when the cluster cannot be reached."""
    from core.execution.cluster import ClusterError
    from core.execution.distributed import check_ray_settings, list_images, options_from, run_ray
    from core.images import gallery_paths
    from core.inference.models import parse_model_list
    from core.inference.weights import parse_weights
    from core.store import current_user

    models = parse_model_list(args.models)
    parse_weights(args.weights)  # a bad weights choice fails here, before any cluster work
    paths = list_images(args.paths) if args.paths else [p.absolute() for p in gallery_paths()]
    if not paths:
        print("error: no images found in the given paths", file=sys.stderr)
        return EXIT_USAGE
    settings = settings_from(args)
    opts = options_from(args)
    check_ray_settings(settings, opts)  # a refusal is one line and exit 2 (core.cli.main)
    store = open_store(args.store)
    bar = progress_bar(len(paths) * len(models), sys.stderr.isatty() and not args.quiet)

    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    try:
        out = run_ray(paths, settings, opts, store=store, user=current_user(), out_dir=Path(args.out),
                      on_progress=progress)  # fmt: skip
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        bar.close()
    ray_env = out.info.environment["ray"]
    print(
        f"run {out.info.run_id}: {len(paths)} images x {len(models)} models on Ray {ray_env['version']} "
        f"({ray_env['nodes']} node(s), {ray_env['cpus']:g} CPUs, {ray_env['gpus']:g} GPUs, {opts.workers} worker(s) "
        f"per model): {out.wall_s:.1f} s, {ray_env['images_per_s']:.2f} images/s"
    )
    inf = out.inferences
    for model, grp in inf[inf["error"] == ""].groupby("model", sort=False):
        print(
            f"  {model:40} median {grp['total_ms'].median():8.1f} ms  p95 {grp['total_ms'].quantile(0.95):8.1f} ms"
            f"  detections >= {args.threshold}: {int(grp['n_detections'].sum())}"
        )
    if (inf["weights"] == "untrained").any():
        print(f"  NOTE: {UNTRAINED_MARK}")
    for _, row in inf[inf["error"] != ""].drop_duplicates("image_name").iterrows():
        print(f"  failed: {row['image_name']}: {row['error']}")
    if out.parts_dir is not None:
        print(f"wrote Parquet parts under {out.parts_dir}")
    print(f"stored run {out.info.run_id} in {store.path}")
    return EXIT_OK


def cmd_detect(args: argparse.Namespace) -> int:
    if args.engine == "ray":
        if any(is_video_path(p) for p in args.paths):
            print("error: video files run locally (not with --engine ray)", file=sys.stderr)
            return EXIT_USAGE
        return _detect_on_ray(args)
    with tempfile.TemporaryDirectory(prefix="detlens-frames-") as frames_dir:  # video frames as PNG files, for the run
        return _detect(args, Path(frames_dir))


def _detect(args: argparse.Namespace, frames_dir: Path) -> int:
    from core.execution.runner import run
    from core.execution.videojobs import extract_to_folder, split_videos
    from core.images import gallery_paths, sources_from_paths
    from core.records import write_run
    from core.store import current_user

    videos, paths = split_videos([Path(p) for p in args.paths] if args.paths else gallery_paths())
    settings = settings_from(args)
    n_series = len(settings.series())
    frames = extract_to_folder(videos, sampling_from(args), frames_dir)
    images = sources_from_paths(paths) + frames.sources
    if not images:
        print("error: no images found in the given paths", file=sys.stderr)
        return EXIT_USAGE
    store = open_store(args.store) if args.store else None
    show = sys.stderr.isatty() and not args.quiet
    bar = progress_bar(len(images) * n_series, show)

    def on_result(result, done, total):
        bar.set_postfix_str(f"{result.model} {result.image_name}"[:60], refresh=False)
        bar.update(1)

    options = {
        "user": current_user(),
        "on_result": on_result,
        "on_download": download_progress if show else None,
        "on_export": export_progress if not args.quiet else None,
    }
    try:
        if store is None:
            output = run(images, settings, **options)
        else:  # the run is a job this process holds (core.execution.jobs.run_here): a killed detect leaves it resumable
            from core.execution.jobs import run_here
            from core.execution.runner import plan

            output = run_here(store, plan(settings, images), images, **options)
    finally:
        bar.close()
    written = write_run(Path(args.out), output.inferences, output.detections, output.info, parquet=args.parquet)
    _print_summary(output, len(images), args.threshold, gt_path=args.gt)
    print("wrote " + ", ".join(str(p) for p in written))
    if store is not None:
        print(f"stored run {output.info.run_id} in {store.path}")
    if frames.error:  # a video broke mid-way: its frames so far ran and are kept; the run (a job) ends failed
        if store is not None:
            store.end_job(output.info.run_id, "failed", message=frames.error)
        print(f"error: {frames.error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _with_ground_truth_ap(summary, output, gt_path: str | None):
    """The agreement summary with AP against the ground truth at `gt_path` (AP columns NaN without one); a line
    saying why the ground truth is not used when it is unreadable."""
    from core.compare.agreement import ap_against_eager, with_ap
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
    from core.compare.agreement import ap_text, runtime_agreement, verdict
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
    summary, gt_note = _with_ground_truth_ap(
        runtime_agreement(inf, output.detections, threshold=threshold), output, gt_path
    )
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


def add_cli(sub: argparse._SubParsersAction) -> None:
    """Register `models` and `detect`."""
    p_models = sub.add_parser("models", help="list the detectors with their published metadata")
    p_models.add_argument("--json", action="store_true", help="print JSON")
    p_models.set_defaults(func=cmd_models)

    p_det = sub.add_parser("detect", help="run detectors on images (the bundled gallery when no path is given)")
    p_det.add_argument("paths", nargs="*", help="image files or folders, or video files (see --every)")
    run_options(p_det)
    p_det.add_argument("--out", default="out", help="output folder for inferences.csv and detections.csv")
    p_det.add_argument("--parquet", action="store_true", help="write Parquet beside the CSV files")
    p_det.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p_det.add_argument("--store", metavar="DIR", help=f"also keep the run in this run store ('default': {STORE_HELP})")
    p_det.add_argument(
        "--gt",
        default=str(GALLERY_ANNOTATIONS),
        metavar="FILE",
        help="COCO instances JSON for the runtimes' AP against eager ('none': skip; default: the gallery's)",
    )
    engine_options(p_det)
    p_det.set_defaults(func=cmd_detect)
