"""The Ray cluster a run uses: its options, the address check, the reachability probe, joining or starting Ray, and
what the run records of it. Refusals are one line (ClusterError), for the CLI and a job's message."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from core.config import RAY_BATCH_ROWS, RAY_CONNECT_TIMEOUT_S
from core.text import exception_line


class ClusterError(RuntimeError):
    """The Ray cluster cannot be reached or used (one line, for the CLI)."""


@dataclass
class RayOptions:
    """Where and how wide: `address` None starts Ray here; `workers` actors per model; GPUs per actor."""

    address: str | None = None
    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    batch_rows: int = RAY_BATCH_ROWS


LOCAL_ADDRESSES = ("", "local")  # no cluster named: Ray starts on this machine


def parse_address(address: str) -> tuple[str, int] | None:
    """(host, port) of `HOST:PORT` or `ray://HOST:PORT`; None for `auto` and empty addresses (left to Ray);
    ClusterError (one line) for anything else. Nothing is contacted."""
    if address in ("", "auto", "local"):
        return None
    host_port = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = host_port.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClusterError(f"cannot use Ray address {address!r}: expected HOST:PORT (e.g. 10.0.0.5:6379)")
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout_s: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """Fail fast with one line when `host:port` (or `ray://host:port`) does not accept a connection.

    Ray's own client retries for a long while before giving up; this probe answers in `timeout_s` at most.
    `auto` and empty addresses are left to Ray.
    """
    target = parse_address(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout_s):
            pass
    except OSError as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


def local_cpus() -> float:
    """The CPUs a Ray started here has: the running local Ray's, else this machine's (what `ray.init` would take)."""
    ray = sys.modules.get("ray")  # not imported: no Ray session in this process
    if ray is not None and ray.is_initialized():
        return float(ray.cluster_resources().get("CPU", 0.0))
    return float(os.cpu_count() or 1)


def check_options(opts: RayOptions, *, cpus: float | None = None) -> None:
    """Refuse, in one line (ClusterError), Ray options that cannot work: workers < 1, negative GPUs, a malformed
    address, and on a Ray started here (no address) actors that would hold every CPU: the decode tasks feeding them
    need a CPU too and would wait forever. `cpus`: the local Ray's CPUs (default `local_cpus()`)."""
    if opts.workers < 1 or opts.gpus_per_worker < 0:
        raise ClusterError("--workers must be >= 1 and --gpus-per-worker >= 0")
    parse_address(opts.address or "")
    if (opts.address or "") not in LOCAL_ADDRESSES:
        return
    cpus = local_cpus() if cpus is None else cpus
    held = opts.workers * opts.cpus_per_worker
    if held >= cpus:
        most = max(0, int((cpus - 1) // opts.cpus_per_worker))
        raise ClusterError(
            f"--workers {opts.workers} would hold all {cpus:g} CPUs of the Ray started on this machine (one per "
            f"worker) and leave none to decode images: use --workers {most} or less here"
            + (
                ", or --ray-address of a cluster"
                if most
                else " (a single-CPU machine: give --ray-address of a cluster)"
            )
        )


def connect(address: str | None = None, *, num_cpus: int | None = None) -> bool:
    """Join the cluster at `address`, or start Ray on this machine (bound to 127.0.0.1, no dashboard, no usage stats)
    when there is none. A Ray session already open in this process is reused. True when this call started Ray."""
    import ray

    if address:
        check_reachable(address)
    if ray.is_initialized():
        return False
    with _own_sigterm():
        _init(ray, address, num_cpus)
    return True


@contextlib.contextmanager
def _own_sigterm() -> Iterator[None]:
    """Keep this process's own SIGTERM handler through `ray.init`, which replaces it (its handler exits the process):
    a job worker must still see SIGTERM as "stop after the batch in flight" and leave its job `interrupted`, and it
    shuts the Ray it started down itself. A process with no handler of its own keeps Ray's."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if main and callable(previous):
            signal.signal(signal.SIGTERM, previous)


def _init(ray, address: str | None, num_cpus: int | None) -> None:  # noqa: ANN001 (the ray module)
    if address:
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
            raise ClusterError(f"cannot join the Ray cluster at {address}: {exception_line(exc)}") from None
    else:
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
            configure_logging=False,
        )


def cluster_environment() -> dict[str, object]:
    """Ray version, nodes, CPUs and GPUs of the cluster a run used (kept in the run's environment)."""
    import ray

    resources = ray.cluster_resources()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return {
        "version": ray.__version__,
        "nodes": len(nodes),
        "cpus": float(resources.get("CPU", 0.0)),
        "gpus": float(resources.get("GPU", 0.0)),
    }
