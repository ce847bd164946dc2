"""Runtimes: one detector run as eager PyTorch, `torch.compile`, ONNX Runtime or OpenVINO, under one contract.

A variant is a callable with the eager model's contract (a list of 3xHxW float tensors in [0, 1], any size, in; one
torchvision output dict per image out: boxes in original pixels, label ids of the same categories, scores), so the
engine's timing (pre / inference / post) and records stay one code path for every runtime.

Exports: the whole torchvision model (its own resize and normalisation in `GeneralizedRCNNTransform`, and the boxes
scaled back to the input size) is exported with the legacy TorchScript-based ONNX exporter
(`torch.onnx.export(..., dynamo=False)`, opset `ONNX_OPSET`) with dynamic height and width (the dynamo exporter
fails on torchvision detectors, and without dynamic axes the graph runs at one input size only). OpenVINO converts
that ONNX file (`openvino.convert_model`) and saves its IR in fp32; bf16 is OpenVINO's CPU inference precision hint.
Artifacts are cached under the store folder by (model, weights content hash, runtime, precision, library versions);
building one is timed and reported step by step, never inside a per-image latency.

Series: every (model, runtime, precision) is a series, named by `series_name`: the model's registry name for eager
at the run's precision (so every run stored before runtimes existed reads as eager), else `MODEL@RUNTIME` plus
`-PRECISION` when not fp32. The name is what the records' `model` column holds; `split_series` reads it back.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

from core.config import (
    ARTIFACTS_DIR,
    ONNX_OPSET,
    PRECISIONS,
    RUNTIME_EAGER,
    RUNTIMES,
    UNTRAINED_SEED,
    WEIGHTS_DEFAULT,
    WEIGHTS_UNTRAINED,
    default_store_dir,
)
from core.inference.models import ModelSpec
from core.inference.series import RuntimeRefusedError
from core.inference.weights import WeightsChoice, cached_weights_path

StepFn = Callable[[str], None]
"""Export progress: called with each step's name as it starts ("exporting to ONNX (opset 17)", ...)."""

Outputs = list[dict[str, torch.Tensor]]
ARTIFACT_FORMAT = 3  # bump when what is saved changes: older artifacts are then rebuilt
ONNX_EXPORTER = f"torch.onnx.export (TorchScript exporter, dynamo=False), opset {ONNX_OPSET}, dynamic height/width"
_OUTPUTS = ["boxes", "labels", "scores"]  # asked for by name: the graph's own order is the output dict's
CPU_ONLY_RUNTIMES = frozenset({"onnxruntime", "openvino"})
OPENVINO_REPORTED = ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS")


class ExportError(RuntimeError):
    """An export or artifact load that failed: which step, and why."""

    def __init__(self, runtime: str, step: str, reason: str) -> None:
        self.runtime, self.step, self.reason = runtime, step, reason
        super().__init__(f"{runtime} export failed at step '{step}': {reason}")


# --- what runs where ------------------------------------------------------------------------------------------------


@functools.cache
def openvino_capabilities() -> frozenset[str]:
    """OpenVINO's CPU optimisation capabilities (`FP32`, `BF16`, `FP16`, ...); empty when OpenVINO is missing."""
    try:
        import openvino as ov

        return frozenset(str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # not installed or no CPU plugin: refused later with the reason
        return frozenset()


COMPILE_SCOPE_MODEL = "torch.compile(model, dynamic=True), inductor"
COMPILE_SCOPE_BACKBONE = "torch.compile(backbone + FPN, dynamic=True), inductor; RPN and RoI heads eager"
TORCH_RUNTIMES = (RUNTIME_EAGER, "compile")  # run by torch on the run's device; the others on the CPU


def runs_on(runtime: str, device: str) -> str:
    """The device a `runtime` series runs on, and is recorded with, when the run asks for `device`: the run's for
    eager and compile, the CPU for ONNX Runtime and OpenVINO (their CPU builds are the ones installed)."""
    return device if runtime in TORCH_RUNTIMES else "cpu"


def check_runtime(runtime: str, precision: str, device: torch.device) -> torch.device:
    """The device `runtime` runs on at `precision`, or RuntimeRefusedError saying why not.

    eager and compile: the run's device, fp16/bf16 autocast on CUDA and on a CPU that has them natively
    (`core.inference.devices.check_precision`). ONNX Runtime and OpenVINO: the CPU (their CPU builds are the ones installed);
    ONNX Runtime fp32 only; OpenVINO fp32, and bf16/fp16 where the CPU has them.
    """
    from core.inference.devices import DeviceError, check_precision

    if runtime not in RUNTIMES:
        raise RuntimeRefusedError(f"unknown runtime '{runtime}': choose one of {', '.join(RUNTIMES)}")
    if precision not in PRECISIONS:
        raise RuntimeRefusedError(f"unknown precision '{precision}': choose one of {', '.join(PRECISIONS)}")
    if runtime in TORCH_RUNTIMES:
        try:
            check_precision(precision, device)
        except DeviceError as exc:
            raise RuntimeRefusedError(f"{runtime}: {exc}") from exc
        return device
    cpu = torch.device("cpu")
    if runtime == "onnxruntime":
        _require("onnxruntime")
        if precision != "fp32":
            raise RuntimeRefusedError(
                f"onnxruntime runs fp32 only here (CPU execution provider); {precision} is offered by openvino"
            )
        return cpu
    _require("openvino")
    if precision != "fp32" and precision.upper() not in openvino_capabilities():
        have = ", ".join(sorted(openvino_capabilities())) or "none reported"
        raise RuntimeRefusedError(f"openvino {precision} needs a CPU with native {precision} (this CPU: {have})")
    return cpu


def _require(package: str) -> None:
    try:
        importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError as exc:
        raise RuntimeRefusedError(f"{package} is not installed: pip install -r requirements.txt") from exc


def library_versions(runtime: str) -> dict[str, str]:
    """The versions an artifact depends on (part of its cache key, kept with the run)."""
    names = ["torch", "torchvision"] + {
        "onnxruntime": ["onnx", "onnxruntime"],
        "openvino": ["onnx", "openvino"],
    }.get(runtime, [])
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = ""
    out["torch"], out["torchvision"] = torch.__version__, torchvision.__version__
    return out


# --- cache keys -----------------------------------------------------------------------------------------------------


@functools.cache
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_digest(spec: ModelSpec, choice: WeightsChoice) -> str:
    """A content hash of the weights: the file's SHA-256 (default weights: the torch hub file), or the seed."""
    if choice.kind == WEIGHTS_UNTRAINED:
        return f"untrained-seed{UNTRAINED_SEED}"
    path = cached_weights_path(spec) if choice.kind == WEIGHTS_DEFAULT else choice.path
    assert path is not None
    stat = Path(path).stat()
    return _file_digest(str(path), stat.st_size, stat.st_mtime_ns)


def artifact_key(
    model: str, digest: str, n_classes: int, runtime: str, precision: str, build: str = ""
) -> dict[str, object]:
    return {
        "model": model,
        "weights_sha256": digest,
        "build": build,
        "classes": n_classes,
        "runtime": runtime,
        "precision": precision,
        "opset": ONNX_OPSET,
        "format": ARTIFACT_FORMAT,
        "versions": library_versions(runtime),
    }


def artifacts_root() -> Path:
    """`<store folder>/artifacts` (`$DETLENS_STORE`, else ~/.local/share/detlens)."""

    return default_store_dir() / ARTIFACTS_DIR


def artifact_dir(key: dict[str, object], root: Path | None = None) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return (root or artifacts_root()) / str(key["model"]) / f"{key['runtime']}-{key['precision']}-{digest}"


# --- export info ----------------------------------------------------------------------------------------------------


@dataclass
class ExportInfo:
    """How a variant was made: kept with the run's settings, shown in the CLI and the dashboard."""

    runtime: str
    precision: str
    exporter: str = ""
    cache_hit: bool = False
    export_s: float = 0.0  # building the artifact (the first time); 0 for a cache hit
    load_s: float = 0.0  # loading/compiling it for this process
    options: dict[str, str] = field(default_factory=dict)  # the session's / compiled model's settings, read back
    artifact: str = ""
    artifact_bytes: int = 0
    versions: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, object]:
        return asdict(self)


@contextlib.contextmanager
def _step(runtime: str, step: str, on_step: StepFn | None) -> Iterator[None]:
    """Run one export step; any failure becomes an ExportError naming it."""
    if on_step is not None:
        on_step(step)
    try:
        yield
    except ExportError:
        raise
    except Exception as exc:
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ExportError(runtime, step, f"{type(exc).__name__}: {text}") from exc


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --- the variants ---------------------------------------------------------------------------------------------------


def export_onnx(module: nn.Module, path: Path) -> None:
    """The whole detector (its resize, normalisation and box scaling) as ONNX with dynamic height and width."""
    example = torch.rand(3, 320, 320)
    with torch.inference_mode():  # the outputs are named in the order of the model's own dict, which differs by model
        names = list(module([example])[0].keys())  # (SSD: boxes, scores, labels; R-CNNs: boxes, labels, scores)
    with warnings.catch_warnings():  # the TorchScript tracer warns about every shape-dependent branch
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            ([example],),
            str(path),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["image"],
            output_names=names,
            dynamic_axes={
                "image": {1: "height", 2: "width"},
                "boxes": {0: "n"},
                "labels": {0: "n"},
                "scores": {0: "n"},
            },
        )


def _as_outputs(boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.from_numpy(np.asarray(boxes, dtype=np.float32).reshape(-1, 4)),
        "labels": torch.from_numpy(np.asarray(labels).astype(np.int64).reshape(-1)),
        "scores": torch.from_numpy(np.asarray(scores, dtype=np.float32).reshape(-1)),
    }


class OnnxRuntimeModel:
    """An ONNX Runtime session with the eager contract (one image per session call).

    All graph optimisations, nodes run one after another, `threads` intra-op threads (docs/performance.md, "Runtimes
    side by side": ORT_PARALLEL and no spinning were measured slower on 2 cores); `options` reads them back from the
    session."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # ONNX Runtime's default, stated
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        used = self.session.get_session_options()
        self.options = {
            "graph_optimization_level": used.graph_optimization_level.name,
            "execution_mode": used.execution_mode.name,
            "intra_op_num_threads": str(used.intra_op_num_threads),
        }

    def __call__(self, batch: list[torch.Tensor]) -> Outputs:
        outs = []
        for image in batch:
            boxes, labels, scores = self.session.run(_OUTPUTS, {"image": image.detach().cpu().float().numpy()})
            outs.append(_as_outputs(boxes, labels, scores))
        return outs


def _ov_text(value: object) -> str:
    """An OpenVINO property as plain text: an element type by its short name (`bf16`), an enum by its name."""
    if hasattr(value, "get_type_name"):
        return str(value.get_type_name())
    return str(getattr(value, "name", value))


class OpenVinoModel:
    """An OpenVINO compiled model (CPU) with the eager contract; calls are serialised by the engine's device lock.

    One dynamic-shape plan for every image size: a static plan per input size (`Model.reshape`) was measured 0-3%
    faster on Faster R-CNN and no faster on SSDLite, for a compile per new size (docs/performance.md, "Runtimes side
    by side"). `options` reads the compiled model's settings back (`OPENVINO_REPORTED`)."""

    def __init__(self, xml: Path, precision: str, threads: int) -> None:
        import openvino as ov

        hint = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}[precision]
        config = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = ov.Core().compile_model(str(xml), "CPU", config)
        self.options = {name: _ov_text(self.compiled.get_property(name)) for name in OPENVINO_REPORTED}
        self.request = self.compiled.create_infer_request()
        names = [next(iter(o.get_names())) for o in self.compiled.outputs]
        self.order = [names.index(n) for n in ("boxes", "labels", "scores")]

    def __call__(self, batch: list[torch.Tensor]) -> Outputs:
        outs = []
        for image in batch:
            result = self.request.infer({0: image.detach().cpu().float().numpy()})
            values = [result[self.compiled.outputs[i]] for i in self.order]
            outs.append(_as_outputs(*values))
        return outs


class CompiledModel:
    """`torch.compile(..., dynamic=True)` with the eager contract (inductor; compiled at load, not timed).

    A two-stage detector (one with `roi_heads`: Faster, Mask, Keypoint R-CNN) compiles its backbone and FPN only, and
    runs its RPN and RoI heads eager: RoI pooling infers its scales with `Tensor.item()`, a graph break after which a
    whole-model compile of Faster R-CNN did not make its first call within 15 minutes here, while the backbone, most of
    its compute, compiles in ~40 s (800x800 calls 1.82 s against eager 2.15 s). `scope` says which."""

    def __init__(self, module: nn.Module) -> None:
        if hasattr(module, "roi_heads") and hasattr(module, "backbone"):
            module.backbone = torch.compile(module.backbone, dynamic=True)
            self.compiled, self.scope = module, COMPILE_SCOPE_BACKBONE
        else:
            self.compiled, self.scope = torch.compile(module, dynamic=True), COMPILE_SCOPE_MODEL

    def __call__(self, batch: list[torch.Tensor]) -> Outputs:
        return self.compiled(batch)


def build_variant(
    module: nn.Module,
    spec: ModelSpec,
    choice: WeightsChoice,
    n_classes: int,
    runtime: str,
    precision: str,
    device: torch.device,
    *,
    on_step: StepFn | None = None,
    root: Path | None = None,
    build: str = "",
) -> tuple[Callable[[list[torch.Tensor]], Outputs], ExportInfo]:
    """The runnable variant of an eager `module` (eval mode, on the CPU) and how it was made.

    ONNX Runtime / OpenVINO artifacts are exported once into the cache and reused; a failing step raises ExportError.
    `build` says how a checkpoint's module was built (`BuiltModel.weights_build`): the same file built otherwise
    (another `built_from` or builder arguments in its sidecar) is another artifact.
    """
    threads = max(1, torch.get_num_threads())
    versions = library_versions(runtime)
    if runtime == "compile":
        t0 = time.perf_counter()
        with _step(runtime, "torch.compile", on_step):
            variant = CompiledModel(module.to(device))
        info = ExportInfo(runtime, precision, exporter=variant.scope, versions=versions)
        # Two shapes: the first trace specialises on its size, the second makes the graph dynamic, so that a new image
        # size never recompiles inside a timed call (it did: a 6.9 s p95 for Faster R-CNN on the gallery).
        with _step(runtime, "first compiled calls (320x320, 320x480)", on_step), torch.inference_mode():
            from core.inference.devices import autocast

            with autocast(device, precision):
                for size in ((320, 320), (320, 480)):
                    variant([torch.rand(3, *size, device=device)])
        info.export_s = time.perf_counter() - t0
        return variant, info

    with _step(runtime, "hashing the weights", on_step):
        key = artifact_key(spec.name, weights_digest(spec, choice), n_classes, runtime, precision, build)
        target = artifact_dir(key, root)
    exporter = ONNX_EXPORTER + ("; openvino.convert_model(ONNX) -> IR fp32" if runtime == "openvino" else "")
    info = ExportInfo(runtime, precision, exporter=exporter, artifact=str(target), versions=versions)
    meta_path = target / "export.json"
    if meta_path.is_file():
        info.cache_hit = True
    else:
        t0 = time.perf_counter()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
        try:
            with _step(runtime, f"exporting to ONNX (opset {ONNX_OPSET})", on_step):
                export_onnx(module.cpu(), tmp / "model.onnx")
            if runtime == "openvino":
                with _step(runtime, "converting ONNX to OpenVINO IR", on_step):
                    import openvino as ov

                    ov_model = ov.convert_model(str(tmp / "model.onnx"))
                    ov.save_model(ov_model, str(tmp / "model.xml"), compress_to_fp16=False)
                    (tmp / "model.onnx").unlink()
            export_s = time.perf_counter() - t0
            (tmp / "export.json").write_text(
                json.dumps({"key": key, "export_s": export_s, "exporter": exporter}, indent=2), encoding="utf-8"
            )
            with contextlib.suppress(OSError):  # another process may have finished the same export first
                os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        info.export_s = export_s
    info.artifact_bytes = _size(target)
    t0 = time.perf_counter()
    if runtime == "onnxruntime":
        with _step(runtime, "opening the ONNX Runtime session", on_step):
            variant: OnnxRuntimeModel | OpenVinoModel = OnnxRuntimeModel(target / "model.onnx", threads)
    else:
        with _step(runtime, f"compiling the OpenVINO model for the CPU ({precision})", on_step):
            variant = OpenVinoModel(target / "model.xml", precision, threads)
    info.load_s = time.perf_counter() - t0
    info.options = dict(variant.options)
    return variant, info
