"""Run-page logic without widgets: gather images, skip what is done, run with progress, append to the session."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from core.config import FOLDER_ROOTS_ENV, GALLERY_DIR
from core.engine import DetectionResult
from core.images import ImageSource, content_id, expand_paths
from core.models import get_model
from core.records import RunInfo, new_run_id, now_iso
from core.runner import RunOutput, RunSettings, run
from core.store import StoreError, record_into
from core.weights import ProgressFn, WeightsChoice, cached_weights_path, parse_weights
from dashboard import cache, state


class FolderNotAllowedError(ValueError):
    """A server folder outside the roots allowed in config."""


def folder_roots() -> list[Path]:
    """Folders on the server the Run page may read: the gallery plus $DETLENS_FOLDER_ROOTS (os.pathsep-separated)."""
    extra = [Path(p).expanduser() for p in os.environ.get(FOLDER_ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    return [GALLERY_DIR.resolve(), *(p.resolve() for p in extra)]


def resolve_folder(text: str, roots: Sequence[Path] | None = None) -> Path:
    """The folder `text` names, if it lies under an allowed root once links and `..` are resolved."""
    roots = list(roots if roots is not None else folder_roots())
    if not text.strip():
        raise FolderNotAllowedError("enter a folder path")
    path = Path(text.strip()).expanduser()
    if not path.is_absolute():
        path = roots[0].parent / path
    real = path.resolve()
    if not any(real == r or real.is_relative_to(r) for r in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise FolderNotAllowedError(f"{text} is outside the folders this server allows ({allowed})")
    if not real.is_dir():
        raise FolderNotAllowedError(f"{text} is not a folder")
    return real


def refs_from_paths(paths: Sequence[Path]) -> list[ImageSource]:
    """Image refs for files on the server, identified by the hash of their content."""
    return _unique([ImageSource.from_path(p).hashed() for p in expand_paths(paths)])


def refs_from_uploads(files: Sequence[tuple[str, bytes]]) -> list[ImageSource]:
    """Image refs for uploaded (name, bytes) pairs."""
    return _unique([ImageSource.from_bytes(name, data) for name, data in files])


def _unique(refs: list[ImageSource]) -> list[ImageSource]:
    """The same content twice is one image (the first name wins)."""
    first: dict[str, ImageSource] = {}
    for r in refs:
        first.setdefault(r.image_id, r)
    return list(first.values())


def save_checkpoint(name: str, data: bytes, class_names_json: bytes | None = None) -> Path:
    """Keep an uploaded checkpoint under the run store (`weights/<content hash>/<file name>`, its class names beside it
    as `<file name>.json`) and return its path: the engine loads it like any local file (data only)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name)[:100] or "checkpoint.pth"
    folder = cache.store().path / "weights" / content_id(data + (class_names_json or b""))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / safe
    if not path.exists():
        path.write_bytes(data)
    if class_names_json is not None:
        path.with_name(path.name + ".json").write_bytes(class_names_json)
    return path


@dataclass
class WeightsStatus:
    model: str
    choice: WeightsChoice
    needs_download: bool
    expected_file: Path | None = None


def weights_status(model: str, weights: str) -> WeightsStatus:
    """Whether `weights` for `model` must be downloaded first (default weights not in the hub cache)."""
    choice = parse_weights(weights)
    if choice.kind != "default":
        return WeightsStatus(model, choice, False)
    path = cached_weights_path(get_model(model))
    return WeightsStatus(model, choice, not path.is_file(), path)


@dataclass
class PlannedRun:
    """What a click on Run will do: images per model that are not done yet, and what is skipped."""

    settings: RunSettings
    todo: dict[str, list[ImageSource]] = field(default_factory=dict)
    skipped: int = 0


def plan(settings: RunSettings, sources: Sequence[ImageSource], device: str) -> PlannedRun:
    """Leave out (image, model, weights, device, precision) already done without error in this session."""
    done = state.done_keys()
    planned = PlannedRun(settings)
    for model in settings.models:
        label = parse_weights(settings.weights_for(model)).label
        todo = [src for src in sources if (src.image_id, model, label, device, settings.precision) not in done]
        planned.skipped += len(sources) - len(todo)
        if todo:
            planned.todo[model] = todo
    return planned


def execute(
    planned: PlannedRun,
    *,
    on_result: Callable[[DetectionResult, int, int], None] | None = None,
    on_download: Callable[[str], ProgressFn] | None = None,
    user: str = "",
) -> RunOutput | None:
    """Run each model on its images as one run: every finished (image, model) goes into the run store at once, and
    the whole run joins the session tables at the end. A store that cannot be written to is reported, not fatal."""
    s = planned.settings
    total = sum(len(v) for v in planned.todo.values())
    run_id = new_run_id()
    recorder, store_problem = _start_stored_run(planned, run_id, user)
    outputs: list[RunOutput] = []
    try:
        for model, sources in planned.todo.items():
            offset = sum(len(o.results) for o in outputs)
            one = replace(s, models=[model], default_weights=s.weights_for(model), weights={})
            progress = on_download(model) if on_download else None
            cache.detector(model, s.weights_for(model), s.device, s.precision, _progress=progress)

            def report(result: DetectionResult, done: int, _total: int, offset: int = offset) -> None:
                if recorder:
                    recorder(result)
                if on_result:
                    on_result(result, offset + done, total)

            outputs.append(run(sources, one, run_id=run_id, user=user, on_result=report))
    except BaseException:
        if recorder:
            cache.store().finish_run(run_id, "failed")
        raise
    if not outputs:
        return None
    first = outputs[0]
    weights = {m: w for o in outputs for m, w in o.info.settings["weights"].items()}
    first.info.settings.update(models=list(planned.todo), weights=weights)
    for o in outputs[1:]:
        first.info.environment["images"].update(o.info.environment["images"])
    if store_problem:
        first.info.settings["store"] = f"not saved: {store_problem}"
    elif recorder:
        cache.store().finish_run(run_id, info=first.info)
    merged = RunOutput(
        info=first.info,
        results=[r for o in outputs for r in o.results],
        inferences=pd.concat([o.inferences for o in outputs], ignore_index=True),
        detections=pd.concat(
            [o.detections for o in outputs if len(o.detections)] or [first.detections], ignore_index=True
        ),
    )
    state.add_run(merged.info, merged.inferences, merged.detections)
    return merged


def _start_stored_run(planned: PlannedRun, run_id: str, user: str) -> tuple[Callable | None, str]:
    """Open the run in the store: (an on_result that records into it, "") or (None, why it could not)."""
    s = planned.settings
    info = RunInfo(
        run_id,
        now_iso(),
        settings=replace(s, models=list(planned.todo)).record(user=user),
    )
    sources = list({src.image_id: src for srcs in planned.todo.values() for src in srcs}.values())
    try:
        store = cache.store()
        store.start_run(info, user=user)
    except (StoreError, OSError) as exc:
        return None, str(exc)
    return record_into(store, run_id, s.threshold, sources=sources), ""
