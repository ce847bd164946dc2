"""The job queue's commands: `submit`, `jobs`, `cancel`, `resume` and `worker` (see core.execution.jobs)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from core.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    STORE_HELP,
    engine_options,
    open_store,
    run_options,
    settings_from,
    store_path,
)
from core.config import (
    WORKER_IDLE_EXIT_S,
)
from core.images.video import sampling_from


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
            from core.execution.distributed import list_images

            found = [ImageSource.from_path(p) for p in list_images([item])]
        else:
            found = sources_from_paths([Path(item)])
        for source in found:
            source = source.hashed()
            out.setdefault(source.image_id, source)
    return list(out.values())


def cmd_submit(args: argparse.Namespace) -> int:
    from core.execution.jobs import check_settings, submit
    from core.images import gallery_paths
    from core.store import current_user

    settings = settings_from(args)
    ray = None
    if args.engine == "ray":  # refused here in one line: non-eager runtimes, options that cannot work
        from core.execution.distributed import check_ray_settings, options_from

        ray = options_from(args)
        check_ray_settings(settings, ray)  # a refusal is one line and exit 2 (core.cli.main)
    else:
        check_settings(settings)  # before the store is even opened: a refused job leaves nothing behind
    from core.execution.videojobs import split_videos, submit_video

    videos, _ = split_videos(args.images)
    if videos and (ray is not None or len(args.images) > 1):
        print("error: submit takes one video file alone (and not with --engine ray)", file=sys.stderr)
        return EXIT_USAGE
    store = open_store(args.store)
    if videos:
        print(submit_video(store, settings, videos[0], sampling_from(args), user=current_user()))
        return EXIT_OK
    sources = _job_sources(store, args.images or [str(p) for p in gallery_paths()], lists=ray is not None)
    if not sources:
        print("error: no images found in the given paths", file=sys.stderr)
        return EXIT_USAGE
    run_id = submit(store, settings, sources, user=current_user(), check=False, ray=ray)
    print(run_id)
    return EXIT_OK


def _hours_minutes(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def cmd_jobs(args: argparse.Namespace) -> int:
    from core.config import STORE_DB_NAME

    path = store_path(args.store)
    store = open_store(args.store) if (path / STORE_DB_NAME).is_file() else None
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
            f"{_hours_minutes(j.eta_s()):>7}  {j.submitted_by[:10]:10} {j.engine:18} {models}"
        )
        if j.message:
            print(f"{'':24} {j.message}")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    status = open_store(args.store, create=False).cancel_job(args.run_id)
    print(f"run {args.run_id}: " + ("cancelled" if status == "cancelled" else "stops after the image in flight"))
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    store = open_store(args.store, create=False)
    store.resume_job(args.run_id)
    job = store.job(args.run_id)
    print(f"run {args.run_id}: queued again, {job.total - job.done} missing pair(s) to run")
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    from core.execution.jobs import serve, tune_process

    threads = tune_process(args.threads, args.nice)
    store = open_store(args.store)
    print(f"torch threads: {threads}, niceness +{args.nice}", flush=True)
    serve(store, idle_exit=args.idle_exit, log=lambda line: print(line, flush=True))
    return EXIT_OK


def add_cli(sub: argparse._SubParsersAction) -> None:
    """Register `submit`, `jobs`, `cancel`, `resume` and `worker`."""
    store_help = f"run store folder (default: {STORE_HELP})"
    p_sub = sub.add_parser("submit", help="queue a run for a worker; prints its run id at once")
    p_sub.add_argument("images", nargs="*", help="image files or folders, id:IMAGE_ID of a stored image, or one video")
    run_options(p_sub)
    p_sub.add_argument("--store", metavar="DIR", help=store_help)
    engine_options(p_sub)
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
