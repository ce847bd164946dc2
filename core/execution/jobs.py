"""Jobs: runs that outlive the page. Submit (checked up front), the worker loop, and the detached worker start.

`submit` checks everything a run needs before anything is stored (models, device and precision, weights: see
`check_settings`), keeps the images in the store by content id and queues one job (`core.store.jobs`). A worker
process (`python -m core worker`, or `serve`) claims jobs one at a time and runs each through `core.execution.runner`, into
the job's own run: same records, same timing rules, each (image, model) committed as it finishes. A background thread
beats the heartbeat; a cancel is seen before the next image; SIGTERM stops after the image in flight and leaves the
job `interrupted` (resumable). The dashboard never runs a model for a run: it submits, and `ensure_worker` starts one
detached worker for its store when none is alive.

A job submitted with `engine: ray` (`submit --engine ray`) is run by the worker through `core.execution.distributed.run_ray`
instead: the same run, records, progress, cancel (after the batch in flight), resume and errors.

One worker per store and host: a worker holds an exclusive lock file (`worker-<host>.lock` in the store folder) for
its life, so two workers on one machine never time their model calls against each other; a second one exits at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from core.config import (
    JOB_HEARTBEAT_S,
    JOB_STALE_AFTER_S,
    REPO_ROOT,
    WORKER_AUTOSTART_ENV,
    WORKER_IDLE_EXIT_ENV,
    WORKER_IDLE_EXIT_S,
    WORKER_POLL_S,
)
from core.execution import runner, videojobs
from core.execution.runner import PlannedRun, RunSettings
from core.images import ImageSource
from core.records import RunInfo
from core.store import JobRow, Store, StoreError
from core.store.jobs import worker_name

if TYPE_CHECKING:
    from core.execution.cluster import RayOptions

SPEC_VERSION = 1  # a spec without `engine` (older ones) is a local job
ENGINE_LOCAL, ENGINE_RAY = "local", "ray"
_START_GRACE_S = 30.0  # a worker just started needs a few seconds (imports) before it beats: do not start another


# --- submit ---------------------------------------------------------------------------------------------------------


def check_settings(settings: RunSettings, class_names: dict[str, Sequence[str]] | None = None) -> str:
    """`settings.resolve()` (the one check of a run's settings) before a job is queued; returns the resolved device."""
    return str(settings.resolve(class_names=class_names).device)


def submit(
    store: Store,
    settings: RunSettings,
    sources: Sequence[ImageSource],
    *,
    todo: dict[str, Sequence[ImageSource]] | None = None,
    user: str = "",
    class_names: dict[str, Sequence[str]] | None = None,
    check: bool = True,
    ray: RayOptions | None = None,
    worker: str | None = None,
) -> str:
    """Queue a run of `sources` x `settings.models` (or only the pairs of `todo`: model -> sources) and return its
    run id at once. Unusable settings raise before anything is stored; the images' bytes are kept in the store.

    `ray`: the worker runs the job on a Ray cluster (`core.execution.distributed.run_ray`) with these options, kept in the spec
    (`engine`, `ray`) with each image's absolute path: Ray's tasks read the images where they were, on storage every
    node sees. Refused up front, in one line (`core.execution.distributed.check_ray_settings`): an unknown model, a missing weights
    file, a runtime other than eager, options that cannot work; a cluster that is down is found by the worker (the job
    fails with that line).

    `worker`: the job is claimed by that worker as it is stored (see `run_here`), never queued for another."""
    if ray is not None:
        from core.execution.distributed import check_ray_settings

        check_ray_settings(settings, ray)
    elif check:
        check_settings(settings, class_names)
    if not sources:
        raise StoreError("no images to run")
    if ray is not None and any(s.path is None for s in sources):
        raise StoreError("a Ray job reads its images from files every node sees: give paths, not uploads")
    images: list[dict[str, str]] = []
    index: dict[int, int] = {}
    for i, source in enumerate(sources):
        image_id = store.put_image(source)
        entry = {"image_id": image_id, "name": source.name}
        if not image_id or ray is not None:  # unreadable (the worker records why, as `detect` would), or for Ray
            entry["path"] = str(Path(source.path).absolute()) if source.path is not None else ""
        index[id(source)] = i
        images.append(entry)
    pairs = todo if todo is not None else {m: sources for m in settings.models}
    spec = {
        "version": SPEC_VERSION,
        "settings": dataclasses.asdict(settings),
        "images": images,
        "todo": {m: [index[id(s)] for s in srcs] for m, srcs in pairs.items() if srcs},
        "class_names": {m: list(v) for m, v in (class_names or {}).items()},
        "engine": ENGINE_RAY if ray is not None else ENGINE_LOCAL,
    }
    models = [m for m in settings.models if any(x.model == m and x.name in spec["todo"] for x in settings.series())]
    record = settings.record(user=user, models=models)
    if ray is not None:
        from core.execution.distributed import ray_settings_record

        spec["ray"] = dataclasses.asdict(ray)
        record = ray_settings_record(settings, ray, user=user) | {"models": models}
    return store.submit_job(spec, settings=record, user=user, worker=worker)


# --- running one job ------------------------------------------------------------------------------------------------


def job_sources(store: Store, run_id: str, spec: dict) -> list[ImageSource]:
    """The spec's images, read back from the store by content id (named as submitted)."""
    kept = store.run_images(run_id)
    out = []
    for entry in spec.get("images", []):
        image_id, name = str(entry.get("image_id", "")), str(entry.get("name", ""))
        if image_id in kept:
            out.append(ImageSource(name, path=kept[image_id].path, image_id=image_id))
        elif entry.get("path"):
            out.append(ImageSource(name, path=Path(entry["path"])))
        else:
            out.append(ImageSource(name, data=b""))
    return out


def plan_job(store: Store, job: JobRow) -> PlannedRun:
    """The job's (image, model) pairs that have no record in its run yet (all of them on a first claim)."""
    spec = job.spec
    settings = RunSettings(**spec["settings"])
    sources = job_sources(store, job.run_id, spec)
    done = store.done_pairs(job.run_id)
    planned = PlannedRun(settings)
    for model, indices in spec.get("todo", {}).items():
        todo = [sources[i] for i in indices if (sources[i].image_id, model) not in done]
        planned.skipped += len(indices) - len(todo)
        if todo:
            planned.todo[model] = todo
    return planned


def run_job(store: Store, job: JobRow, *, stop: Callable[[], bool] | None = None) -> str:
    """Run a claimed job into its run and end it; returns its final status. `stop` (a worker shutting down) ends it
    after the image in flight as `interrupted`; a cancel as `cancelled`; an error escaping the runner as `failed`."""
    run_id = job.run_id
    if job.spec.get("engine") == ENGINE_RAY:
        return _run_ray_job(store, job, stop=stop)

    def should_stop() -> bool:
        return bool(stop and stop()) or store.cancel_requested(run_id)

    job, video_error = videojobs.extract_job_frames(store, job, stop=should_stop)  # a video job's frames, once
    if videojobs.unextracted(job):  # stopped while its frames were being extracted
        return _ended(store, run_id, True, None)
    planned = plan_job(store, job)
    if not planned.todo:
        store.end_job(run_id, "failed" if video_error else "finished", message=video_error)
        return "failed" if video_error else "finished"
    try:
        output = runner.execute(planned, store=store, run_id=run_id, existing=True, user=job.submitted_by,
                                should_stop=should_stop, class_names=job.spec.get("class_names") or None)  # fmt: skip
    except Exception as exc:  # the runner marked the run failed; keep why with the job
        store.end_job(run_id, "failed", message=" ".join(str(exc).split())[:500] or type(exc).__name__)
        return "failed"
    return videojobs.fail_if_broken(store, run_id, _ended(store, run_id, output.stopped, output.info), video_error)


def ray_todo(store: Store, job: JobRow) -> dict[str, list[Path]]:
    """A Ray job's pairs with no record in its run yet (all of them on a first claim): model -> image paths."""
    images = job.spec.get("images", [])
    done = store.done_pairs(job.run_id)
    todo: dict[str, list[Path]] = {}
    for model, indices in job.spec.get("todo", {}).items():
        paths = [Path(images[i]["path"]) for i in indices if (images[i].get("image_id", ""), model) not in done]
        if paths:
            todo[model] = paths
    return todo


def _run_ray_job(store: Store, job: JobRow, *, stop: Callable[[], bool] | None = None) -> str:
    """`run_job` for a job submitted with `engine: ray`: the missing pairs through `core.execution.distributed.run_ray` into the
    job's run; stops after the batch in flight (Ray Data hands back a batch at a time), ends like a local job."""
    from core.execution.cluster import RayOptions
    from core.execution.distributed import run_ray

    run_id = job.run_id
    todo = ray_todo(store, job)
    if not todo:
        store.end_job(run_id, "finished")
        return "finished"
    settings = RunSettings(**job.spec["settings"])
    opts = RayOptions(**job.spec.get("ray", {}))
    paths = list({p: None for ps in todo.values() for p in ps})

    def should_stop() -> bool:
        return bool(stop and stop()) or store.cancel_requested(run_id)

    try:
        output = run_ray(paths, settings, opts, store=store, run_id=run_id, user=job.submitted_by, todo=todo,
                         existing=True, should_stop=should_stop)  # fmt: skip
    except Exception as exc:  # a cluster that cannot be reached or used, a model that does not load...
        store.end_job(run_id, "failed", message=" ".join(str(exc).split())[:500] or type(exc).__name__)
        return "failed"
    return _ended(store, run_id, output.stopped, output.info)


def _ended(store: Store, run_id: str, stopped: bool, info: RunInfo | None) -> str:
    """A run that returned: finished (the runner closed it), or stopped: `cancelled` when asked, else `interrupted`."""
    if not stopped:
        return "finished"
    if store.cancel_requested(run_id):
        store.end_job(run_id, "cancelled", info=info)
        return "cancelled"
    store.interrupt_job(run_id, "the worker was stopped: resume it")
    return "interrupted"


# --- the worker process ---------------------------------------------------------------------------------------------


class _Heart(threading.Thread):
    """Beats the worker's heartbeat (and its current job's) every JOB_HEARTBEAT_S, from its own thread, so a long
    model load or a slow image never looks like a dead worker."""

    def __init__(self, store: Store, worker: str) -> None:
        super().__init__(name="detlens-heartbeat", daemon=True)
        self.store, self.worker, self.job = store, worker, ""
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(JOB_HEARTBEAT_S):
            with contextlib.suppress(StoreError, OSError, Exception):
                self.store.beat(self.job or None, self.worker)


def _host_lock(store: Store):  # noqa: ANN202 (an open file, or None)
    """The store's worker lock for this host, held while the file stays open; None when another worker has it."""
    import fcntl

    path = store.path / f"worker-{socket.gethostname()}.lock"
    handle = open(path, "a+")  # noqa: SIM115 - held for the worker's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def tune_process(threads: int | None = None, nice: int = 0) -> int:
    """Lower this process's priority by `nice` and set torch's threads (default: DETLENS_THREADS, else the physical
    cores); returns the threads."""
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)
    if threads:
        os.environ["DETLENS_THREADS"] = str(threads)
    from core.inference.devices import configure_threads

    return configure_threads(threads)


def serve(
    store: Store,
    *,
    idle_exit: float = WORKER_IDLE_EXIT_S,
    poll: float = WORKER_POLL_S,
    log: Callable[[str], None] = print,
) -> int:
    """The worker loop: mark stale jobs interrupted, claim the oldest queued job, run it, repeat; exit after
    `idle_exit` seconds with nothing to do (0: as soon as the queue is empty). Returns the number of jobs run."""
    lock = _host_lock(store)
    if lock is None:
        log(f"a worker already serves {store.path} on this host: exiting")
        return 0
    worker = worker_name()
    stopping = threading.Event()
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    store.register_worker(worker)
    heart = _Heart(store, worker)
    heart.start()
    ran = 0
    idle_since = time.monotonic()
    log(f"worker {worker} serving {store.path} (idle exit after {idle_exit:g} s)")
    try:
        while not stopping.is_set():
            for run_id in store.reap_stale():
                log(f"job {run_id}: interrupted (stale heartbeat)")
            job = store.claim_job(worker)
            if job is None:
                if time.monotonic() - idle_since >= idle_exit:
                    break
                stopping.wait(poll)
                continue
            heart.job = job.run_id
            log(f"job {job.run_id}: running {job.total - job.done} pair(s)")
            status = run_job(store, job, stop=stopping.is_set)
            log(f"job {job.run_id}: {status}")
            heart.job = ""
            ran += 1
            idle_since = time.monotonic()
    finally:
        heart.halt.set()
        with contextlib.suppress(StoreError, OSError):
            store.unregister_worker(worker)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
        lock.close()
    return ran


# --- a run owned by the process that runs it: `detect --store` -----------------------------------------------------


def run_here(
    store: Store,
    planned: PlannedRun,
    sources: Sequence[ImageSource],
    *,
    user: str = "",
    **kwargs: object,
) -> runner.RunOutput:
    """`runner.execute` of `planned` into the store as a job that this process submits already claimed (the spec a
    `submit` of the same images and settings stores) and runs as its own worker, with the heartbeat thread: `core jobs`
    lists it running, held by this process; it ends finished or failed as a worker's job; killed (kill -9, a restart),
    its heartbeat goes stale and it reads `interrupted`, so `resume` and a worker run only its missing pairs. Ctrl-C or
    SIGTERM leave it `interrupted` (the exception goes on). Nothing is kept when it stops before its run opened (a model
    that does not load: the error goes on, as with no job). This process is not a `workers` row: it never takes
    queued jobs, so the dashboard does not count it as a worker alive. `kwargs` go to `runner.execute`."""
    worker = worker_name()
    run_id = submit(store, planned.settings, sources, todo=planned.todo, user=user, check=False, worker=worker)
    heart = _Heart(store, worker)
    heart.job = run_id
    heart.start()
    opened: list[RunInfo] = []
    on_started = kwargs.pop("on_started", None)

    def started(info: RunInfo) -> None:
        opened.append(info)
        if callable(on_started):
            on_started(info)

    try:
        with _sigterm_interrupts():
            output = runner.execute(planned, store=store, run_id=run_id, existing=True, user=user,
                                    created_at=store.job(run_id).submitted_at, on_started=started, **kwargs)  # fmt: skip
    except BaseException as exc:
        heart.halt.set()
        with contextlib.suppress(StoreError, OSError):
            if not opened:
                store.delete_run(run_id)
            elif isinstance(exc, KeyboardInterrupt):
                store.interrupt_job(run_id, "detect was stopped: resume it")
            else:
                store.end_job(run_id, "failed", message=" ".join(str(exc).split())[:500] or type(exc).__name__)
        raise
    finally:
        heart.halt.set()
    return output


@contextlib.contextmanager
def _sigterm_interrupts():  # noqa: ANN202 (a context manager)
    """Within: SIGTERM raises KeyboardInterrupt, as Ctrl-C does (main thread only; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- the dashboard's worker -----------------------------------------------------------------------------------------


def autostart_enabled() -> bool:
    return os.environ.get(WORKER_AUTOSTART_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def worker_alive(store: Store) -> bool:
    return bool(store.live_workers())


def ensure_worker(store: Store, *, threads: int | None = None, nice: int | None = None) -> str:
    """Start one detached worker for `store` unless one is alive (or was started moments ago); returns "alive",
    "started", "starting" or "off" (autostart disabled). The worker outlives this process: it is in a new session,
    its output goes to `worker.log` in the store folder, and it exits by itself when idle."""
    from core.config import WORKER_NICE
    from core.inference.devices import physical_cores

    if worker_alive(store):
        return "alive"
    if not autostart_enabled():
        return "off"
    marker = store.path / "worker.starting"  # the pid of the worker started last, while it imports and registers
    with contextlib.suppress(OSError, ValueError):
        if time.time() - marker.stat().st_mtime < _START_GRACE_S and _running(int(marker.read_text())):
            return "starting"
    threads = threads or max(1, physical_cores() - 1)  # leave a core to the server that submitted
    command = [
        sys.executable, "-m", "core", "worker", "--store", str(store.path),
        "--threads", str(threads), "--nice", str(WORKER_NICE if nice is None else nice),
        "--idle-exit", os.environ.get(WORKER_IDLE_EXIT_ENV, "") or f"{WORKER_IDLE_EXIT_S:g}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    with open(store.path / "worker.log", "ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    marker.write_text(str(proc.pid), encoding="utf-8")
    return "started"


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (a worker that exited but its parent has not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def is_stale(job: JobRow, now: float | None = None) -> bool:
    """A running job whose heartbeat is older than JOB_STALE_AFTER_S (about to be marked interrupted)."""
    return job.status == "running" and (now or time.time()) - (job.heartbeat_at or 0) > JOB_STALE_AFTER_S
