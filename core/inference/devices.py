"""Device, precision and CPU thread choices, and the environment recorded with every run."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import threading
from collections.abc import Iterator

import torch
import torchvision

from core.config import CPU_PRECISION_NEEDS, DEVICES, PRECISIONS
from core.errors import DeviceError


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def resolve_device(choice: str = "auto") -> torch.device:
    """'auto' picks CUDA, then MPS, then CPU; an explicit device that is absent is a DeviceError."""
    choice = (choice or "auto").strip().lower()
    kind = choice.split(":", 1)[0]
    if kind not in DEVICES:
        raise DeviceError(f"unknown device '{choice}': choose one of {', '.join(DEVICES)}")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                "CUDA was asked for but no CUDA GPU is available here (torch.cuda.is_available() is False)"
            )
        device = torch.device(choice if ":" in choice else "cuda:0")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"{choice}: only {torch.cuda.device_count()} CUDA device(s) here")
        return device
    if kind == "mps" and not _mps_available():
        raise DeviceError("MPS was asked for but is not available here")
    return torch.device(kind)


def _cpu_has(check: str) -> bool:
    """One of torch's CPU feature probes (private helpers: a torch without it reports the feature absent)."""
    probe = getattr(torch.cpu, check, None) or getattr(torch.ops.mkldnn, check, None)
    try:
        return bool(probe()) if probe is not None else False
    except (RuntimeError, AttributeError):
        return False


@functools.cache
def cpu_native_precisions() -> frozenset[str]:
    """The precisions this CPU computes natively, which torch's CPU autocast then runs through oneDNN: fp32 always,
    bf16 with AVX512-BF16 or AMX, fp16 with AVX512-FP16 or AMX-FP16. Elsewhere oneDNN would emulate them, slower than
    fp32, so they are refused (`check_precision`)."""
    found = {"fp32"}
    if _cpu_has("_is_avx512_bf16_supported") or _cpu_has("_is_amx_tile_supported"):
        found.add("bf16")
    if _cpu_has("_is_mkldnn_fp16_supported"):
        found.add("fp16")
    return frozenset(found)


def check_precision(precision: str, device: torch.device) -> str:
    """fp32 everywhere; fp16/bf16 autocast on CUDA (bf16 where the GPU has it) and on a CPU that has it natively."""
    if precision not in PRECISIONS:
        raise DeviceError(f"unknown precision '{precision}': choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return precision
    if device.type == "cuda":
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise DeviceError("bf16 is not supported by this GPU")
        return precision
    if device.type == "cpu":
        if precision not in cpu_native_precisions():
            need = CPU_PRECISION_NEEDS[precision]
            raise DeviceError(f"{precision} autocast on the CPU needs native {precision} ({need}); this CPU runs fp32")
        return precision
    raise DeviceError(
        f"{precision} autocast needs a CUDA device or a CPU with native {precision}; {device.type} runs fp32"
    )


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed-precision context for the model call (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that a clock read after it measures the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def physical_cores() -> int:
    """Physical CPU cores (hyper-threads make detection slower, not faster)."""
    try:
        import psutil

        count = psutil.cpu_count(logical=False)
    except ImportError:  # pragma: no cover - psutil is a requirement
        count = None
    if not count:
        count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, int(count))


_threads_lock = threading.Lock()


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op thread count deliberately (default: physical cores) and return it."""
    wanted = threads or int(os.environ.get("DETLENS_THREADS", 0)) or physical_cores()
    with _threads_lock:
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)
    return torch.get_num_threads()


def device_name(device: torch.device) -> str:
    """A readable name: the GPU model, or the CPU's."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return _cpu_model() or platform.machine()


@functools.cache
def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""


OMP_POLICY_UNSET = "unset (the OpenMP runtime's default)"


def _niceness() -> int:
    """This process's niceness (a worker started by the dashboard runs at +10)."""
    try:
        return os.getpriority(os.PRIO_PROCESS, 0)
    except (AttributeError, OSError):  # pragma: no cover - not on Linux/macOS
        return 0


@functools.cache
def _parallel_backend() -> str:
    """torch's intra-op backend as `torch.__config__.parallel_info()` names it (OpenMP, native thread pool, TBB)."""
    for line in torch.__config__.parallel_info().splitlines():
        if line.startswith("ATen parallel backend:"):
            return line.split(":", 1)[1].strip()
    return ""


def environment(device: torch.device) -> dict[str, str | int]:
    """What a run's figures depend on, kept with the run: versions, the device, and the threads, OpenMP wait policy
    and niceness the timed process ran with."""
    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "parallel_backend": _parallel_backend(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "") or OMP_POLICY_UNSET,
        "nice": _niceness(),
        "cuda": torch.version.cuda or "",
        "cudnn": str(torch.backends.cudnn.version() or "") if device.type == "cuda" else "",
    }


@contextlib.contextmanager
def device_lock(device: torch.device) -> Iterator[None]:
    """One timed model call per device at a time: calls from several threads stay correct and honestly timed."""
    with _device_locks.setdefault(str(device), threading.Lock()):
        yield


_device_locks: dict[str, threading.Lock] = {}
