"""The one owner of a run: plan what is missing, load the models, open the run in the store, run every model over
its images, record each (image, model) as it finishes, and finish (or fail) the run with its settings and environment.

Everything that runs detectors calls this module: `python -m core detect`, the dashboard's Run page, the job worker and
the Ray path. Nothing here knows about Streamlit.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch

from core.config import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_THRESHOLD,
    DEFAULT_WARMUP,
    ENGINE_LOCAL,
    ENGINE_RAY,
    RUNTIME_EAGER,
    WEIGHTS_DEFAULT,
)
from core.execution.cluster import ClusterError
from core.images import ImageSource, LoadedImage
from core.inference.devices import check_precision, environment, resolve_device
from core.inference.engine import Detector, load_detector, run_detector
from core.inference.models import get_model
from core.inference.runtimes import CPU_ONLY_RUNTIMES, ExportError, check_runtime
from core.inference.series import Variant, parse_variants, series_name
from core.inference.weights import ProgressFn, WeightsChoice, check_weights, parse_weights
from core.records import DetectionResult, RunInfo, detections_frame, inferences_frame, new_run_id, now_iso


@dataclass
class RunSettings:
    """What a user chooses for a run. `weights` maps model -> source; models not in it use `default_weights`.

    `oom_cpu_retry`: a batch that runs out of GPU memory is run again on the CPU (fp32, the same weights), recorded
    with device `cpu` and a note; off, those images keep the out-of-memory error. Either way the run goes on.
    `runtimes` maps model -> variant tokens (`eager`, `onnxruntime`, `openvino-bf16`, ... see core.inference.runtimes); models
    not in it use `default_runtimes`. Each (model, variant) is one series of the run, named by `series_name`.
    """

    models: list[str]
    default_weights: str = WEIGHTS_DEFAULT
    weights: dict[str, str] = field(default_factory=dict)
    device: str = "auto"
    precision: str = "fp32"
    threshold: float = DEFAULT_THRESHOLD
    warmup: int = DEFAULT_WARMUP
    batch_size: int = DEFAULT_BATCH_SIZE
    oom_cpu_retry: bool = True
    runtimes: dict[str, list[str]] = field(default_factory=dict)
    default_runtimes: list[str] = field(default_factory=lambda: [RUNTIME_EAGER])

    def weights_for(self, model: str) -> str:
        return self.weights.get(model, self.default_weights)

    def variants_for(self, model: str) -> list[Variant]:
        return parse_variants(self.runtimes.get(model, self.default_runtimes))

    def resolve(
        self,
        *,
        engine: str = ENGINE_LOCAL,
        class_names: Mapping[str, Sequence[str]] | None = None,
        check_files: bool = True,
    ) -> ResolvedSettings:
        """The one check of a run's settings, made by every path that starts one (the Run page, `detect`, `submit`,
        the worker, the Ray path): raises, with one message per bad setting and the same one everywhere, an
        UnknownModelError (a model not in the registry), RuntimeRefusedError (an unknown runtime token, or one this
        device or precision cannot run), DeviceError (no such device, or a precision it lacks), WeightsError (weights
        that cannot be had: a missing file, default weights offline, a checkpoint that does not fit; with
        `check_files`, which builds the model on the `meta` device and never on a real one) or ClusterError (the
        Ray path runs eager only). Nothing is loaded and nothing is stored.

        `engine` "ray": the device is the actors' (set per actor), so it is not resolved here."""

        specs = {m: get_model(m) for m in self.models}
        series = tuple(self.series())
        weights = {m: parse_weights(self.weights_for(m)) for m in self.models}
        if engine == ENGINE_RAY:
            if any(s.runtime != RUNTIME_EAGER for s in series):
                raise ClusterError("the Ray path runs the eager runtime only (drop --runtime)")
            return ResolvedSettings(self, None, series, weights)
        device = resolve_device(self.device)
        check_precision(self.precision, device)
        for s in series:  # refused combinations (runtime, precision, device) stop the run before any export
            if s.runtime != RUNTIME_EAGER:
                check_runtime(s.runtime, s.precision, device)
        if check_files:
            for name, spec in specs.items():
                check_weights(spec, self.weights_for(name), class_names=(class_names or {}).get(name))
        return ResolvedSettings(self, device, series, weights)

    def series(self) -> list[Series]:
        """Every (model, variant) of the run, in settings order; RuntimeRefusedError for an unknown token."""
        out = []
        for model in self.models:
            for variant in self.variants_for(model):
                precision = variant.precision_for(self.precision)
                name = series_name(model, variant.runtime, precision, self.precision)
                out.append(Series(name, model, variant.runtime, precision))
        return list({s.name: s for s in out}.values())

    def record(
        self,
        *,
        user: str = "",
        device: str | None = None,
        weights: Mapping[str, str] | None = None,
        models: Sequence[str] | None = None,
        weights_build: Mapping[str, str] | None = None,
    ) -> dict[str, object]:
        """The settings as kept with a run: as asked, or with the resolved `device` and `weights` once known.
        `models` (default: all of them) names the models the run actually runs. `weights_build`: per model, how its
        module was built (e.g. a checkpoint's FrozenBatchNorm2d and why)."""
        models = list(models if models is not None else self.models)
        return {
            "models": models,
            "weights": dict(weights) if weights is not None else {m: self.weights_for(m) for m in models},
            "weights_build": dict(weights_build or {}),
            "device": device or self.device,
            "precision": self.precision,
            "threshold": self.threshold,
            "warmup": self.warmup,
            "batch_size": self.batch_size,
            "oom_cpu_retry": self.oom_cpu_retry,
            "runtimes": {m: [v.token for v in self.variants_for(m)] for m in models},
            "user": user,
        }


@dataclass(frozen=True)
class Series:
    """One series of a run: `name` (its records' `model`), the registry model, its runtime and precision."""

    name: str
    model: str
    runtime: str
    precision: str


@dataclass(frozen=True)
class ResolvedSettings:
    """Settings after `RunSettings.resolve`: the device the run will use (None on the Ray path, where each actor has
    its own), every series, and each model's weights choice."""

    settings: RunSettings
    device: torch.device | None
    series: tuple[Series, ...]
    weights: Mapping[str, WeightsChoice]


@dataclass
class PlannedRun:
    """What a run will do: per model (in settings order), the images not done yet; and how many pairs are skipped."""

    settings: RunSettings
    todo: dict[str, list[ImageSource]] = field(default_factory=dict)
    skipped: int = 0

    @property
    def total(self) -> int:
        """(image, model) pairs to run."""
        return sum(len(v) for v in self.todo.values())

    @property
    def sources(self) -> list[ImageSource]:
        """Every image the run touches, once each, in first-seen order."""
        return list({id(s): s for srcs in self.todo.values() for s in srcs}.values())


IsDone = Callable[[ImageSource, str], bool]
"""Whether (image, series) is already done and must not run again (e.g. in this session, or in a resumed run).
A series is named like the records' `model` column: the model itself for eager (see core.inference.series.series_name)."""


def plan(settings: RunSettings, sources: Sequence[ImageSource], *, done: IsDone | None = None) -> PlannedRun:
    """Every (image, series) pair of `sources` x `settings.series()`, less those `done` says are done.
    `todo` is keyed by series name."""
    planned = PlannedRun(settings)
    for series in settings.series():
        todo = [src for src in sources if done is None or not done(src, series.name)]
        planned.skipped += len(sources) - len(todo)
        if todo:
            planned.todo[series.name] = todo
    return planned


@dataclass
class RunOutput:
    info: RunInfo
    results: list[DetectionResult]
    inferences: pd.DataFrame
    detections: pd.DataFrame
    skipped: int = 0  # pairs left out by the plan (already done)
    store_problem: str = ""  # why the run could not be kept in the store ("" when it was, or no store was asked)
    stopped: bool = False  # `should_stop` ended the run before every pair ran


ResultFn = Callable[[DetectionResult, int, int], None]
"""Called after each (image, model): the result, how many are done, how many in all."""


def run(sources: Sequence[ImageSource], settings: RunSettings, **kwargs: object) -> RunOutput:
    """Plan every (image, model) pair of `sources` and execute it (see `execute` for the keyword arguments)."""
    return execute(plan(settings, sources), **kwargs)  # type: ignore[arg-type]


def execute(
    planned: PlannedRun,
    *,
    store: object | None = None,
    store_required: bool = True,
    run_id: str | None = None,
    existing: bool = False,
    user: str = "",
    on_result: ResultFn | None = None,
    on_download: Callable[[str], ProgressFn] | None = None,
    on_started: Callable[[RunInfo], None] | None = None,
    class_names: Mapping[str, Sequence[str]] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_export: Callable[[str, str], None] | None = None,
    created_at: str | None = None,
) -> RunOutput:
    """Run a plan as one run.

    Every model is loaded first, so unusable settings (unknown model, no CUDA, weights that cannot be had) raise before
    any image runs and before anything is stored. Then, with a `store` (a `core.store.Store`), the run is opened there
    and each finished (image, model) is committed
    at once, in its own transaction; the run ends `finished` (or `failed` if an exception escapes, which is re-raised).
    A store that cannot be opened raises, unless `store_required` is False: then the run goes on unsaved and
    `store_problem` says why. Nothing is stored for a plan with nothing to do.

    Model after model, each image is decoded just before its call (decode time is part of `preprocess_ms`), so
    memory holds one batch of decoded images at a time whatever the number of images. `should_stop`, checked before
    each image, ends the run after the image in flight (`stopped`; the store's status is left to the caller).

    Runtimes: a series whose export fails (ExportError, naming the step) does not stop the run: each of its images
    gets that one-line error and the other series go on; `on_export(series, step)` reports each export step. How each
    variant was made (exporter, export time, artifact size, cache hit) is kept in the settings under `variants`.
    `existing`: `run_id` is a run already in the store (a job a worker claimed, or resumes): it is not started again,
    it gets the resolved settings and environment, and the records join it. `created_at`: the run's and its records'
    time (default: now; `detect --store` passes its job's, so the stored run and the written files agree).
    """
    from core.store import StoreError, record_into  # the store imports records/images; keep this module light

    settings = planned.settings
    names = class_names or {}
    resolved = settings.resolve(class_names=names, check_files=False)  # the weights are checked by loading them
    device = resolved.device
    series = {s.name: s for s in resolved.series if s.name in planned.todo}
    detectors: dict[str, Detector] = {}
    export_failures: dict[str, str] = {}
    for name, s in series.items():
        try:
            detectors[name] = load_detector(
                s.model,
                settings.weights_for(s.model),
                str(device),
                s.precision,
                class_names=names.get(s.model),
                progress=on_download(s.model) if on_download else None,
                runtime=s.runtime,
                series=name,
                on_step=functools.partial(on_export, name) if on_export else None,
            )
        except ExportError as exc:  # this series fails, the others go on
            export_failures[name] = str(exc)
    run_id = run_id or new_run_id()
    created_at = created_at or now_iso()
    models = list(dict.fromkeys(s.model for s in series.values()))
    info = RunInfo(
        run_id=run_id,
        created_at=created_at,
        settings=settings.record(
            user=user,
            device=str(device),
            weights={m: parse_weights(settings.weights_for(m)).label for m in models}
            | {d.name: d.weights for d in detectors.values()},
            models=models,
            weights_build={d.name: d.weights_build for d in detectors.values()},
        ),
        environment=environment(device),
    )
    info.settings["variants"] = {
        name: {
            "model": s.model,
            "runtime": s.runtime,
            "precision": s.precision,
            **(detectors[name].export.record() if name in detectors and detectors[name].export else {}),
            **({"error": export_failures[name]} if name in export_failures else {}),
        }
        for name, s in series.items()
    }
    recorder: ResultFn | None = None
    store_problem = ""
    total = planned.total
    results: list[DetectionResult] = []
    stop = _Stop(should_stop)

    def done(result: DetectionResult) -> None:
        results.append(result)
        if recorder is not None:
            recorder(result, len(results), total)
        if on_result:
            on_result(result, len(results), total)

    with contextlib.ExitStack() as stack:  # the stored run (if any) finishes or fails with this block
        handle = OpenRun(info)
        if store is not None and total:  # nothing to run: nothing (empty) is stored
            try:
                handle = stack.enter_context(stored_run(store, info, user=user, existing=existing))
            except (StoreError, OSError) as exc:
                if store_required:
                    raise
                store_problem = str(exc)
            else:
                recorder = record_into(
                    store, run_id, settings.threshold, created_at=created_at, sources=planned.sources
                )  # type: ignore[arg-type]
        if on_started is not None:
            on_started(info)
        for name, s in series.items():
            if stop():
                break
            if name in export_failures:
                for image in stop.decoded(planned.todo[name]):
                    done(_export_failed(image, s, settings, export_failures[name]))
                continue
            det = detectors[name]
            fallback = (
                _cpu_fallback(s.model, settings, det, names.get(s.model))
                if settings.oom_cpu_retry and s.runtime == RUNTIME_EAGER
                else None
            )
            run_detector(
                det,
                stop.decoded(planned.todo[name]),
                warmup=settings.warmup,
                batch_size=settings.batch_size,
                on_result=done,
                fallback=fallback,
            )
        info.environment["images"] = {r.image_id: r.image_name for r in results if r.image_id}
        handle.stopped = stop.stopped
    return RunOutput(
        info=info,
        results=results,
        inferences=inferences_frame(results, run_id=run_id, threshold=settings.threshold, created_at=created_at),
        detections=detections_frame(results, run_id=run_id),
        skipped=planned.skipped,
        store_problem=store_problem,
        stopped=stop.stopped,
    )


@dataclass
class OpenRun:
    """A run open in the store (see `stored_run`): `info` is what it is finished with; `stopped` leaves it open."""

    info: RunInfo
    stopped: bool = False


@contextlib.contextmanager
def stored_run(store: object, info: RunInfo, *, user: str = "", existing: bool = False) -> Iterator[OpenRun]:
    """A run's life in the store, for every path that runs one (this module's `execute`, the Ray path): opened on
    entry (`existing`: a claimed or resumed job's run, joined with `info`'s settings); on exit `finished` with
    `handle.info` as it is then, left as it is when `handle.stopped` (the caller decides what a stop means), or
    `failed` when an exception escapes (re-raised)."""
    if existing:
        store.reopen_run(info)  # type: ignore[attr-defined]
    else:
        store.start_run(info, user=user)  # type: ignore[attr-defined]
    handle = OpenRun(info)
    try:
        yield handle
    except BaseException:
        store.finish_run(info.run_id, "failed")  # type: ignore[attr-defined]
        raise
    if not handle.stopped:
        store.finish_run(info.run_id, "finished", info=handle.info)  # type: ignore[attr-defined]


class _Stop:
    """`should_stop`, asked before each image is decoded; remembers that it said stop."""

    def __init__(self, should_stop: Callable[[], bool] | None) -> None:
        self._ask = should_stop
        self.stopped = False

    def __call__(self) -> bool:
        if not self.stopped and self._ask is not None and self._ask():
            self.stopped = True
        return self.stopped

    def decoded(self, sources: Sequence[ImageSource]):
        """Decode each image just before it is needed, until told to stop."""
        for source in sources:
            if self():
                return
            yield source.load()


def _export_failed(image: LoadedImage, series: Series, settings: RunSettings, error: str) -> DetectionResult:
    """The record of an image that a series could not run because its export failed."""
    return DetectionResult.of_image(
        image,
        model=series.name,
        weights=parse_weights(settings.weights_for(series.model)).label,
        device="cpu" if series.runtime in CPU_ONLY_RUNTIMES else str(resolve_device(settings.device)),
        precision=series.precision,
        batch_size=settings.batch_size,
        error=error if image.ok else image.error,
        notes=image.notes,
        runtime=series.runtime,
    )


def _cpu_fallback(
    model: str, settings: RunSettings, detector: Detector, class_names: Sequence[str] | None
) -> Callable[[], Detector] | None:
    """The same model and weights on the CPU in fp32, loaded only if a batch runs out of device memory."""
    if detector.device.type == "cpu":
        return None
    return functools.partial(load_detector, model, settings.weights_for(model), "cpu", "fp32", class_names=class_names)
