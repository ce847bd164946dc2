"""Timed inference: a loaded detector shared by every caller, and per-image results with honest timings.

Timing (DESIGN.md): `preprocess_ms` = decode (LoadedImage.decode_ms) + to tensor on the device; `inference_ms` = the
model call, the device synchronized before the clock is read (a batch's time is split evenly over its images);
`postprocess_ms` = outputs to CPU, floor filter and label names. Warm-up calls are not recorded.

`infer_batch` is the GPU paths' building block (scripts/bench_runtimes.py --gpu-batch): same-size images through a bare torchvision
module in one forward, optionally under autocast and with the module's weights in channels_last, timed as a whole;
its per-image figure is the batch time divided by the batch size, and says so.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torchvision.transforms.functional import pil_to_tensor

from core.config import DEFAULT_BATCH_SIZE, DEFAULT_WARMUP, MAX_LOADED_DETECTORS, RUNTIME_EAGER, SCORE_FLOOR
from core.images import LoadedImage
from core.inference.devices import (
    autocast,
    check_precision,
    configure_threads,
    device_lock,
    resolve_device,
    synchronize,
)
from core.inference.models import ModelSpec, get_model, label_name
from core.inference.runtimes import ExportInfo, StepFn, build_variant, check_runtime
from core.inference.series import series_name
from core.inference.weights import ProgressFn, build_model, parse_weights
from core.records import DetectionResult
from core.text import exception_line


@dataclass(frozen=True)
class DetectorKey:
    model: str
    weights: str  # "default", "untrained" or a resolved path
    device: str
    precision: str
    runtime: str = RUNTIME_EAGER


@dataclass
class Detector:
    """A model in eval mode on its device. Calls are serialised per device (see `devices.device_lock`).

    With a `runtime` other than eager, `variant` (see core.inference.runtimes) runs instead of `module`, under the same contract;
    `series` is the name its records carry (core.inference.series.series_name), `export` how its artifact was made.
    """

    spec: ModelSpec
    module: torch.nn.Module | None
    categories: tuple[str, ...]
    weights: str
    device: torch.device
    precision: str
    weights_build: str = ""  # how the module was built (BuiltModel.weights_build), recorded with the run
    runtime: str = RUNTIME_EAGER
    series: str = ""
    variant: Callable[[list[torch.Tensor]], list[dict[str, torch.Tensor]]] | None = None
    export: ExportInfo | None = None

    def __post_init__(self) -> None:
        self.series = self.series or self.spec.name

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def untrained(self) -> bool:
        return self.weights == "untrained"

    def __call__(self, batch: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Run the model on tensors already on the device (no timing, no lock)."""
        if self.variant is not None:
            with torch.inference_mode(), autocast(self.device, self.precision if self.runtime == "compile" else "fp32"):
                return self.variant(batch)
        assert self.module is not None
        with torch.inference_mode(), autocast(self.device, self.precision):
            return self.module(batch)


@dataclass(frozen=True)
class BatchTiming:
    """One forward over a batch of same-size images, the device synchronized around it.

    `per_image_ms` is `batch_ms / batch_size`: the batch's time shared evenly over its images (`per_image` says so),
    not a latency measured for any one image (an image alone is usually slower per image, never faster)."""

    batch_size: int
    batch_ms: float
    precision: str
    channels_last: bool
    per_image: str = "batch_ms / batch_size"

    @property
    def per_image_ms(self) -> float:
        return self.batch_ms / self.batch_size

    @property
    def images_per_s(self) -> float:
        return self.batch_size / self.batch_ms * 1e3 if self.batch_ms > 0 else math.inf


def use_channels_last(module: torch.nn.Module) -> torch.nn.Module:
    """`module` with its 4-D weights in channels_last (NHWC) memory format, converted in place (returned for
    chaining): convolutions then run NHWC kernels (cuDNN / oneDNN), which tensor cores prefer under fp16/bf16."""
    return module.to(memory_format=torch.channels_last)


def is_channels_last(module: torch.nn.Module) -> bool:
    """Whether every 4-D weight of `module` is in channels_last memory format (False without any 4-D weight)."""
    weights = [p for p in module.parameters() if p.dim() == 4]
    return bool(weights) and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)


def infer_batch(
    module: torch.nn.Module,
    images: Sequence[torch.Tensor],
    *,
    precision: str = "fp32",
    channels_last: bool = False,
) -> tuple[list[dict[str, torch.Tensor]], BatchTiming]:
    """Same-size 3xHxW images (floats in [0, 1], on the module's device) through an eval-mode torchvision detector in
    one forward (its transform stacks them into one tensor), under autocast at `precision` (fp16/bf16: on CUDA, or
    a CPU that has them natively: `check_precision`). `channels_last` converts the module's weights in place first
    (`use_channels_last`).

    Returns the module's outputs (one dict per image, in order) and the batch's timing: a batch time, with its
    per-image share `batch_ms / batch_size` (BatchTiming). ValueError for an empty batch or images of several sizes.
    """
    if not images:
        raise ValueError("a batch needs at least one image")
    shapes = sorted({tuple(t.shape) for t in images})
    if len(shapes) > 1:
        raise ValueError(f"a batch holds images of one size; got {', '.join('x'.join(map(str, s)) for s in shapes)}")
    param = next(module.parameters(), None)
    device = param.device if param is not None else images[0].device
    check_precision(precision, device)
    if channels_last:
        use_channels_last(module)
    batch = list(images)
    with torch.inference_mode(), autocast(device, precision):
        synchronize(device)
        t0 = time.perf_counter()
        outputs = module(batch)
        synchronize(device)
        batch_ms = (time.perf_counter() - t0) * 1e3
    return outputs, BatchTiming(len(batch), batch_ms, precision, is_channels_last(module))


_detectors: OrderedDict[DetectorKey, Detector] = OrderedDict()  # least recently used first
_key_locks: dict[DetectorKey, threading.Lock] = {}
_registry_lock = threading.Lock()


def load_detector(
    model: str,
    weights: str = "default",
    device: str = "auto",
    precision: str = "fp32",
    *,
    class_names: Sequence[str] | None = None,
    progress: ProgressFn | None = None,
    runtime: str = RUNTIME_EAGER,
    series: str | None = None,
    on_step: StepFn | None = None,
) -> Detector:
    """The detector for (model, weights, device, precision, runtime), built once per process and shared by every caller.

    This is the process's one detector cache: it keeps the `MAX_LOADED_DETECTORS` most recently used; an evicted
    detector lives on while a caller still holds it, and is built again when asked for later. A runtime other than
    eager is exported (or taken from the artifact cache) here, its steps reported through `on_step`: never inside a
    timed call. Refused combinations raise RuntimeRefusedError; a failing export raises ExportError naming its step.
    """
    spec = get_model(model)
    choice = parse_weights(weights)
    dev = resolve_device(device)
    if runtime == RUNTIME_EAGER:
        check_precision(precision, dev)
    else:
        dev = check_runtime(runtime, precision, dev)
    configure_threads()
    key = DetectorKey(spec.name, str(choice.path or choice.kind), str(dev), precision, runtime)
    if class_names is not None:
        key = replace(key, weights=f"{key.weights}|{','.join(class_names)}")
    with _registry_lock:
        if key in _detectors:
            _detectors.move_to_end(key)
            return _detectors[key]
        lock = _key_locks.setdefault(key, threading.Lock())
    with lock:  # one build per key, even when several threads ask at once
        with _registry_lock:
            found = _detectors.get(key)
        if found is None:
            built = build_model(spec, choice, class_names=class_names, progress=progress)
            if runtime == RUNTIME_EAGER:
                found = Detector(
                    spec,
                    built.module.to(dev),
                    built.categories,
                    built.weights,
                    dev,
                    precision,
                    weights_build=built.weights_build,
                )
            else:
                variant, info = build_variant(
                    built.module, spec, choice, len(built.categories), runtime, precision, dev, on_step=on_step,
                    build=built.weights_build,
                )  # fmt: skip
                module = built.module if runtime == "compile" else None  # exported runtimes hold no torch copy
                name = series_name(spec.name, runtime, precision, precision)
                found = Detector(
                    spec,
                    module,
                    built.categories,
                    built.weights,
                    dev,
                    precision,
                    weights_build=built.weights_build,
                    runtime=runtime,
                    series=name,
                    variant=variant,
                    export=info,
                )
            with _registry_lock:
                _detectors[key] = found
                while len(_detectors) > MAX_LOADED_DETECTORS:
                    evicted, _ = _detectors.popitem(last=False)
                    _key_locks.pop(evicted, None)
    if series is not None and series != found.series:  # the same loaded detector under the run's series name
        return replace(found, series=series)
    return found


def _result(image: LoadedImage, det: Detector, batch_size: int, **fields: object) -> DetectionResult:
    """A result for `image` through `det`: the image's and detector's columns, plus `fields`."""
    return DetectionResult.of_image(
        image,
        model=det.series,
        weights=det.weights,
        device=str(det.device),
        precision=det.precision,
        batch_size=batch_size,
        runtime=det.runtime,
        **fields,
    )


def _failed(image: LoadedImage, det: Detector, batch_size: int, error: str) -> DetectionResult:
    return _result(image, det, batch_size, error=error, notes=image.notes)


def is_out_of_memory(exc: BaseException) -> bool:
    """A device allocation failure: `torch.cuda.OutOfMemoryError`, or a RuntimeError saying "out of memory"."""
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def _oom_where(exc: BaseException, device: torch.device) -> str:
    """Which memory ran out, where, and how much was asked for (when torch says): "CUDA out of memory on cuda:0 ..."."""
    text = str(exc)
    if isinstance(exc, torch.cuda.OutOfMemoryError) or device.type == "cuda" or "cuda" in text.lower():
        kind = "CUDA"
    elif device.type == "mps" or "mps" in text.lower():
        kind = "MPS"
    else:
        kind = device.type.upper()
    asked = re.search(r"tried to allocate [0-9.]+ ?[KMGT]?i?B", text, re.IGNORECASE)
    detail = f" ({asked.group(0)})" if asked else ""
    return f"{kind} out of memory on {device}{detail}"


def _oom_message(where: str, n_images: int) -> str:
    """The one-line error of the images of a batch that did not fit."""
    return f"{where} with a batch of {n_images} image(s): try a smaller batch size, fewer models at once, or the CPU"


def _free_device_memory() -> None:
    """Give cached GPU blocks back after a failure (callers drop their tensors first; a no-op before CUDA is used)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


Fallback = Callable[[], Detector]
"""Where a batch that ran out of device memory is retried: a detector, or a function returning one (called once, and
only when memory runs out, so no fallback model is loaded otherwise)."""


def _to_tensor(image: LoadedImage, device: torch.device) -> torch.Tensor:
    assert image.image is not None
    return pil_to_tensor(image.image).to(device, non_blocking=True).float().div_(255.0)


def run_detector(
    detector: Detector,
    images: Iterable[LoadedImage],
    *,
    warmup: int = DEFAULT_WARMUP,
    batch_size: int = DEFAULT_BATCH_SIZE,
    score_floor: float = SCORE_FLOOR,
    on_result: Callable[[DetectionResult], None] | None = None,
    fallback: Detector | Fallback | None = None,
) -> list[DetectionResult]:
    """Run one detector over images, consumed lazily (pass a generator to decode one image at a time).

    Failed images become results with `error` set and the run goes on. Results come back in input order.
    A batch that runs out of device memory gets a one-line "CUDA out of memory on cuda:0 ..." error; with `fallback`
    (typically the same model on the CPU, resolved only then) it is run again there instead, its results recorded with
    the fallback's device and a note saying so. The next batches still run on `detector`.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    results: list[tuple[int, DetectionResult]] = []
    cold = warmup > 0
    retry = _Retry(fallback, warmup, score_floor)

    def emit(index: int, result: DetectionResult) -> None:
        results.append((index, result))
        if on_result:
            on_result(result)

    batch: list[tuple[int, LoadedImage]] = []
    for index, image in enumerate(images):
        if not image.ok:
            emit(index, _failed(image, detector, batch_size, image.error))
            continue
        batch.append((index, image))
        if len(batch) == batch_size:
            if cold:
                cold = not _warm_up(detector, [img for _, img in batch], warmup)
            _run_batch(detector, batch, score_floor, emit, retry)
            batch = []
    if batch:
        if cold:
            _warm_up(detector, [img for _, img in batch], warmup)
        _run_batch(detector, batch, score_floor, emit, retry)
    return [r for _, r in sorted(results, key=lambda pair: pair[0])]


class _Retry:
    """The fallback of one `run_detector` call: resolved at the first out-of-memory batch, warmed up once."""

    def __init__(self, fallback: Detector | Fallback | None, warmup: int, score_floor: float) -> None:
        self._fallback = fallback
        self._detector: Detector | None = None
        self._warmup = warmup
        self._score_floor = score_floor

    def __bool__(self) -> bool:
        return self._fallback is not None

    def run(
        self,
        batch: list[tuple[int, LoadedImage]],
        error: str,
        where: str,
        emit: Callable[[int, DetectionResult], None],
        failed: Callable[[str], None],
    ) -> None:
        """Run `batch` on the fallback; every result carries a note (or the OOM error and why the retry failed)."""
        try:
            if self._detector is None:
                fallback = self._fallback
                det = fallback if isinstance(fallback, Detector) else fallback()  # type: ignore[misc]
                if self._warmup > 0:
                    _warm_up(det, [img for _, img in batch], self._warmup)
                self._detector = det
        except Exception as exc:  # a fallback that cannot load leaves the OOM error in place
            failed(f"{error}; the retry could not start: {exception_line(exc)}")
            return
        det = self._detector
        note = f"retried on {_device_word(det.device)} after {where}"

        def emit_retried(index: int, result: DetectionResult) -> None:
            if result.error:
                result = replace(
                    result, error=f"{error}; the {_device_word(det.device)} retry failed too: {result.error}"
                )
            emit(index, replace(result, notes=(*result.notes, note)))

        _run_batch(det, batch, self._score_floor, emit_retried, None)


def _device_word(device: torch.device) -> str:
    return "CPU" if device.type == "cpu" else str(device)


def _warm_up(detector: Detector, images: list[LoadedImage], calls: int) -> bool:
    """Untimed calls on the first batch (lazy initialisation, allocator and kernel caches). False if it failed."""
    tensors: list[torch.Tensor] = []
    oom = False
    try:
        tensors = [_to_tensor(image, detector.device) for image in images]
        with device_lock(detector.device):
            for _ in range(calls):
                detector(tensors)
            synchronize(detector.device)
    except Exception as exc:  # the timed call on the same batch reports the failure
        oom = is_out_of_memory(exc)
    else:
        return True
    tensors.clear()
    if oom:  # the exception (and the activations its traceback held) is gone: give the memory back
        _free_device_memory()
    return False


def _run_batch(
    detector: Detector,
    batch: list[tuple[int, LoadedImage]],
    score_floor: float,
    emit: Callable[[int, DetectionResult], None],
    retry: _Retry | None = None,
) -> None:
    """Time one batch: tensors on the device, the model call, outputs to results.

    Out of device memory: the batch's tensors are dropped, cached memory is given back, and the batch is retried on
    the fallback (`retry`) or fails with a one-line out-of-memory error.
    """
    dev = detector.device
    pre_ms: list[float] = []
    tensors: list[torch.Tensor] = []
    error = where = ""
    try:
        for _, image in batch:
            t0 = time.perf_counter()
            tensors.append(_to_tensor(image, dev))
            synchronize(dev)
            pre_ms.append(image.decode_ms + (time.perf_counter() - t0) * 1e3)
        with device_lock(dev):
            synchronize(dev)
            t0 = time.perf_counter()
            outputs = detector(tensors)
            synchronize(dev)
            infer_ms = (time.perf_counter() - t0) * 1e3 / len(batch)
    except Exception as exc:  # a model that cannot take this image must not stop the run
        if is_out_of_memory(exc):
            where = _oom_where(exc, dev)
            error = _oom_message(where, len(batch))
        else:
            error = f"model failed: {exception_line(exc)}"
    if error:
        # Out of the except block the exception and its traceback (which held the call's activations) are released;
        # drop the inputs too before giving cached blocks back to the device.
        tensors.clear()
        if where or dev.type == "cuda":
            _free_device_memory()

        def fail(message: str) -> None:
            for index, image in batch:
                emit(index, _failed(image, detector, len(batch), message))

        if where and retry:
            retry.run(batch, error, where, emit, fail)
        else:
            fail(error)
        return
    for (index, image), out, p_ms in zip(batch, outputs, pre_ms, strict=True):
        t0 = time.perf_counter()
        scores = out["scores"].float().cpu().numpy()
        keep = scores >= score_floor
        boxes = out["boxes"].float().cpu().numpy()[keep]
        labels = out["labels"].cpu().numpy().astype(np.int64)[keep]
        result = _result(
            image,
            detector,
            len(batch),
            boxes=boxes.astype(np.float32).reshape(-1, 4),
            scores=scores[keep].astype(np.float32),
            labels=labels,
            label_names=tuple(label_name(detector.categories, int(i)) for i in labels),
            preprocess_ms=p_ms,
            inference_ms=infer_ms,
            notes=image.notes,
        )
        result.postprocess_ms = (time.perf_counter() - t0) * 1e3
        emit(index, result)
