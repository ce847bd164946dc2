"""What every command shares: exit codes, the store option, progress bars, the run options and the settings they make."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.config import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_THRESHOLD,
    DEFAULT_WARMUP,
    DEVICES,
    HEADLINE_MODELS,
    PRECISIONS,
    RUNTIME_EAGER,
    RUNTIMES,
    STORE_ENV,
    WEIGHTS_DEFAULT,
)
from core.images.video import add_video_options
from core.inference.series import parse_variants

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
STORE_HELP = f"${STORE_ENV}, else ~/.local/share/detlens"


def progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", disable=not enabled, file=sys.stderr, dynamic_ncols=True)


def download_progress(model: str):
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


def export_progress(series: str, step: str) -> None:
    print(f"  {series}: {step} ...", file=sys.stderr, flush=True)


def store_path(value: str | None) -> Path:
    """`--store DIR`; no value or `default`: $DETLENS_STORE, else ~/.local/share/detlens."""
    from core.store import default_store_dir

    return default_store_dir() if value in (None, "", "default") else Path(value)


def open_store(value: str | None, *, create: bool = True):
    from core.store import Store

    return Store(store_path(value), create=create)


def settings_from(args: argparse.Namespace):
    """The RunSettings that `detect`'s and `submit`'s options ask for (the Ray path's too)."""
    from core.execution.runner import RunSettings
    from core.inference.models import parse_model_list

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


def run_options(p: argparse.ArgumentParser) -> None:
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
    add_video_options(p)


def engine_options(p: argparse.ArgumentParser) -> None:
    """Where `detect` runs, and where `submit`'s worker runs the job: here, or on Ray (core.execution.distributed)."""
    p.add_argument(
        "--engine", default="local", choices=("local", "ray"), help="ray: on a Ray cluster (core.execution.distributed)"
    )
    p.add_argument("--ray-address", metavar="HOST:PORT", help="Ray cluster to join (default: start Ray here)")
    p.add_argument("--workers", type=int, default=1, help="Ray: detector actors per model (< this machine's CPUs here)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="Ray: GPUs per actor (fractions share one)")
