"""A whole run: images x models -> results -> the two tables, with settings and environment. Used by the CLI and UI."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from core.config import DEFAULT_BATCH_SIZE, DEFAULT_THRESHOLD, DEFAULT_WARMUP, WEIGHTS_DEFAULT
from core.devices import environment, resolve_device
from core.engine import DetectionResult, Detector, load_detector, run_detector
from core.images import ImageSource
from core.records import RunInfo, detections_frame, inferences_frame, new_run_id, now_iso
from core.weights import ProgressFn


@dataclass
class RunSettings:
    """What a user chooses for a run. `weights` maps model -> source; models not in it use `default_weights`.

    `oom_cpu_retry`: a batch that runs out of GPU memory is run again on the CPU (fp32, the same weights), recorded
    with device `cpu` and a note; off, those images keep the out-of-memory error. Either way the run goes on.
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

    def weights_for(self, model: str) -> str:
        return self.weights.get(model, self.default_weights)

    def record(
        self, *, user: str = "", device: str | None = None, weights: Mapping[str, str] | None = None
    ) -> dict[str, object]:
        """The settings as kept with a run: as asked, or with the resolved `device` and `weights` once known."""
        return {
            "models": list(self.models),
            "weights": dict(weights) if weights is not None else {m: self.weights_for(m) for m in self.models},
            "device": device or self.device,
            "precision": self.precision,
            "threshold": self.threshold,
            "warmup": self.warmup,
            "batch_size": self.batch_size,
            "oom_cpu_retry": self.oom_cpu_retry,
            "user": user,
        }


@dataclass
class RunOutput:
    info: RunInfo
    results: list[DetectionResult]
    inferences: pd.DataFrame
    detections: pd.DataFrame


ResultFn = Callable[[DetectionResult, int, int], None]
"""Called after each (image, model): the result, how many are done, how many in all."""


def run(
    sources: Sequence[ImageSource],
    settings: RunSettings,
    *,
    run_id: str | None = None,
    user: str = "",
    on_result: ResultFn | None = None,
    on_download: Callable[[str], ProgressFn] | None = None,
    class_names: Mapping[str, Sequence[str]] | None = None,
) -> RunOutput:
    """Load each model (errors for unusable settings are raised before any image runs), then run every image.

    Model after model, each image is decoded just before its call (decode time is part of `preprocess_ms`), so
    memory holds one batch of decoded images at a time whatever the number of images.
    """
    device = resolve_device(settings.device)
    detectors = [
        load_detector(
            m,
            settings.weights_for(m),
            str(device),
            settings.precision,
            class_names=(class_names or {}).get(m),
            progress=on_download(m) if on_download else None,
        )
        for m in settings.models
    ]
    run_id = run_id or new_run_id()
    created_at = now_iso()
    info = RunInfo(
        run_id=run_id,
        created_at=created_at,
        settings=settings.record(user=user, device=str(device), weights={d.name: d.weights for d in detectors}),
        environment=environment(device),
    )
    total = len(sources) * len(detectors)
    results: list[DetectionResult] = []

    def done(result: DetectionResult) -> None:
        results.append(result)
        if on_result:
            on_result(result, len(results), total)

    for m, det in zip(settings.models, detectors, strict=True):
        decoded = (source.load() for source in sources)
        fallback = _cpu_fallback(m, settings, det, (class_names or {}).get(m)) if settings.oom_cpu_retry else None
        run_detector(
            det, decoded, warmup=settings.warmup, batch_size=settings.batch_size, on_result=done, fallback=fallback
        )
    info.environment["images"] = {r.image_id: r.image_name for r in results if r.image_id}
    return RunOutput(
        info=info,
        results=results,
        inferences=inferences_frame(results, run_id=run_id, threshold=settings.threshold, created_at=created_at),
        detections=detections_frame(results, run_id=run_id),
    )


def _cpu_fallback(
    model: str, settings: RunSettings, detector: Detector, class_names: Sequence[str] | None
) -> Callable[[], Detector] | None:
    """The same model and weights on the CPU in fp32, loaded only if a batch runs out of device memory."""
    if detector.device.type == "cpu":
        return None
    return functools.partial(load_detector, model, settings.weights_for(model), "cpu", "fp32", class_names=class_names)
