"""The command line, `detlens` or `python -m core`: one parser, its subcommands registered by the modules beside this
one (`detect`: models, detect; `store`: runs, export, import, reviews; `jobs`: submit, jobs, cancel, resume, worker;
`evaluate`: evaluate; `errors`: errors, gate). Bad input is one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence

from core.cli import detect, errors, evaluate, jobs, store
from core.cli.common import EXIT_OK, EXIT_USAGE
from core.errors import DeviceError, UnknownModelError, WeightsError
from core.execution.cluster import ClusterError
from core.images.video import VideoError, sampling_from
from core.inference.series import RuntimeRefusedError
from core.store import StoreError

__all__ = ["EXIT_OK", "EXIT_USAGE", "build_parser", "main", "run"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detlens", description="DetLens: compare torchvision detectors.")
    sub = parser.add_subparsers(dest="command", required=True)
    for part in (detect, store, jobs, evaluate, errors):
        part.add_cli(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("detect", "submit"):
        if not 0.0 <= args.threshold <= 1.0:
            parser.error("--threshold must be between 0 and 1")
        if args.warmup < 0 or args.batch_size < 1:
            parser.error("--warmup must be >= 0 and --batch-size >= 1")
        try:
            sampling_from(args)
        except ValueError as exc:
            parser.error(str(exc))
    try:
        return args.func(args)
    except (
        UnknownModelError,
        DeviceError,
        WeightsError,
        StoreError,
        RuntimeRefusedError,
        ClusterError,
        VideoError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def run() -> None:
    """The `detlens` command and `python -m core`: `main()`, then exit without the interpreter's last full garbage
    collection. That collection walks every object torch's import made (millions: dynamo, sympy) and takes 0.7 s on a
    2-vCPU VM, a third of a short `detect`; it frees nothing that holds data (the store commits every write, files are
    closed). `gc.freeze()` moves those objects out of the collector's sight; atexit handlers and module teardown
    still run. Tests call `main()`, which leaves the process as it was."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    gc.freeze()
    raise SystemExit(code)
