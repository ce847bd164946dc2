"""Command line: `python -m core models` and `python -m core detect [PATHS...]`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from core.config import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_THRESHOLD,
    DEFAULT_WARMUP,
    DEVICES,
    HEADLINE_MODELS,
    PRECISIONS,
    UNTRAINED_MARK,
    WEIGHTS_DEFAULT,
)
from core.devices import DeviceError
from core.models import UnknownModelError, list_models, parse_model_list
from core.weights import WeightsError

EXIT_OK = 0
EXIT_USAGE = 2


def _models_table() -> list[dict[str, object]]:
    return [
        {
            "name": s.name,
            "title": s.title,
            "box_map": s.box_map,
            "gflops": s.gflops,
            "params_m": round(s.params / 1e6, 2) if s.params else None,
            "file_size_mb": s.file_size_mb,
            "classes": s.num_classes,
            "weights_file": s.weights_file,
            "note": s.note,
        }
        for s in list_models()
    ]


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
            f"{r['name']:40} {r['box_map']:>7} {r['gflops']:>8.2f} {r['params_m']:>8} {r['file_size_mb']:>8.1f} "
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


def cmd_detect(args: argparse.Namespace) -> int:
    from core.images import gallery_paths, sources_from_paths
    from core.records import write_run
    from core.runner import RunSettings, run

    models = parse_model_list(args.models)
    paths = [Path(p) for p in args.paths] if args.paths else gallery_paths()
    settings = RunSettings(
        models=models,
        default_weights=args.weights,
        device=args.device,
        precision=args.precision,
        threshold=args.threshold,
        warmup=args.warmup,
        batch_size=args.batch_size,
    )
    images = sources_from_paths(paths)
    if not images:
        print("error: no images found in the given paths", file=sys.stderr)
        return EXIT_USAGE
    show = sys.stderr.isatty() and not args.quiet
    bar = _progress_bar(len(images) * len(models), show)

    def on_result(result, done, total):
        bar.set_postfix_str(f"{result.model} {result.image_name}"[:60], refresh=False)
        bar.update(1)

    try:
        output = run(images, settings, on_result=on_result, on_download=_download_progress if show else None)
    finally:
        bar.close()
    written = write_run(Path(args.out), output.inferences, output.detections, output.info, parquet=args.parquet)
    inf = output.inferences
    failed = inf[inf["error"] != ""]
    print(f"run {output.info.run_id}: {len(images)} images x {len(models)} models on {output.info.settings['device']}")
    for model, grp in inf[inf["error"] == ""].groupby("model", sort=False):
        print(
            f"  {model:40} median {grp['total_ms'].median():8.1f} ms  p95 {grp['total_ms'].quantile(0.95):8.1f} ms"
            f"  detections >= {args.threshold}: {int(grp['n_detections'].sum())}"
        )
    if (inf["weights"] == "untrained").any():
        print(f"  NOTE: {UNTRAINED_MARK}")
    for _, row in failed.drop_duplicates("image_id").iterrows():
        print(f"  failed: {row['image_name']}: {row['error']}")
    print("wrote " + ", ".join(str(p) for p in written))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="DetLens: compare torchvision detectors.")
    sub = parser.add_subparsers(dest="command", required=True)

    p_models = sub.add_parser("models", help="list the detectors with their published metadata")
    p_models.add_argument("--json", action="store_true", help="print JSON")
    p_models.set_defaults(func=cmd_models)

    p_det = sub.add_parser("detect", help="run detectors on images (the bundled gallery when no path is given)")
    p_det.add_argument("paths", nargs="*", help="image files or folders")
    p_det.add_argument("--models", default=",".join(HEADLINE_MODELS), help="comma-separated model names")
    p_det.add_argument("--device", default="auto", choices=DEVICES)
    p_det.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p_det.add_argument("--weights", default=WEIGHTS_DEFAULT, help="default | untrained | FILE (.pth/.safetensors)")
    p_det.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="score threshold for counts")
    p_det.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="warm-up calls per model, not recorded")
    p_det.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    p_det.add_argument("--out", default="out", help="output folder for inferences.csv and detections.csv")
    p_det.add_argument("--parquet", action="store_true", help="write Parquet beside the CSV files")
    p_det.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p_det.set_defaults(func=cmd_detect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "detect":
        if not 0.0 <= args.threshold <= 1.0:
            parser.error("--threshold must be between 0 and 1")
        if args.warmup < 0 or args.batch_size < 1:
            parser.error("--warmup must be >= 0 and --batch-size >= 1")
    try:
        return args.func(args)
    except (UnknownModelError, DeviceError, WeightsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
