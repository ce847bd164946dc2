"""The Run page's logic without widgets: gather images (gallery, uploads, allowed server folders), keep uploaded
checkpoints, tell which weights need a download, plan what this session has not done yet, and submit it as a job
(`core.execution.jobs`): a worker process runs it into the run store, and the ended job joins the session tables
(`state.adopt_ended_jobs`). No model runs in the Streamlit process."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from core.config import FOLDER_ROOTS_ENV, GALLERY_DIR, WEIGHTS_DEFAULT
from core.execution import jobs, runner
from core.execution.runner import PlannedRun, RunSettings
from core.images import ImageSource, content_id, expand_paths
from core.inference.models import get_model
from core.inference.runtimes import runs_on
from core.inference.series import split_series
from core.inference.weights import (
    WeightsChoice,
    WeightsUnavailableError,
    cached_weights_path,
    check_weights,
    parse_weights,
)
from core.store import StoreError
from dashboard import cache, state


class FolderNotAllowedError(ValueError):
    """A server folder outside the roots allowed in config."""


def folder_roots() -> list[Path]:
    """Folders on the server the Run page may read: the gallery plus $DETLENS_FOLDER_ROOTS (os.pathsep-separated)."""
    extra = [Path(p).expanduser() for p in os.environ.get(FOLDER_ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    return [GALLERY_DIR.resolve(), *(p.resolve() for p in extra)]


def resolve_under_roots(text: str, roots: Sequence[Path] | None = None, *, kind: str = "folder") -> Path:
    """The `kind` ("folder" or "file") `text` names, if it lies under an allowed root (default: `folder_roots()`)
    once links and `..` are resolved; FolderNotAllowedError otherwise."""
    roots = list(roots if roots is not None else folder_roots())
    if not text.strip():
        raise FolderNotAllowedError(f"enter a {kind} path")
    path = Path(text.strip()).expanduser()
    if not path.is_absolute():
        path = roots[0].parent / path
    real = path.resolve()
    if not any(real == r or real.is_relative_to(r) for r in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise FolderNotAllowedError(f"{text} is outside the folders this server allows ({allowed})")
    if not (real.is_dir() if kind == "folder" else real.is_file()):
        raise FolderNotAllowedError(f"{text} is not a {kind}")
    return real


def resolve_folder(text: str, roots: Sequence[Path] | None = None) -> Path:
    """The folder `text` names, if it lies under an allowed root once links and `..` are resolved."""
    return resolve_under_roots(text, roots, kind="folder")


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


@st.cache_data(show_spinner=False, ttl=60)
def download_blocked(model: str) -> str:
    """Why `model`'s default weights cannot be downloaded now ("" when they are cached or the host answers); asked at
    most once a minute per model (a HEAD request, or DETLENS_OFFLINE)."""
    try:
        check_weights(get_model(model), WEIGHTS_DEFAULT, timeout=2.0)
    except WeightsUnavailableError as exc:
        return str(exc)
    return ""


def missing_offline(statuses: Sequence[WeightsStatus]) -> list[WeightsStatus]:
    """The statuses whose default weights are missing here and cannot be downloaded (empty when online)."""
    missing = [s for s in statuses if s.needs_download]
    return [s for s in missing if download_blocked(s.model)]


def plan_session(settings: RunSettings, sources: Sequence[ImageSource], device: str) -> PlannedRun:
    """Leave out (image, model, weights, device, precision) already done without error in this session."""
    done = state.done_keys()

    def already(src: ImageSource, series: str) -> bool:
        model, runtime, precision = split_series(series)
        label = parse_weights(settings.weights_for(model)).label
        return (src.image_id, series, label, runs_on(runtime, device), precision or settings.precision) in done

    return runner.plan(settings, sources, done=already)


def plan_all(settings: RunSettings, sources: Sequence[ImageSource]) -> PlannedRun:
    """Every (image, model) pair, done before or not: "Measure again" on purpose."""
    return runner.plan(settings, sources)


def measure_again(run_id: str, *, user: str = "") -> str:
    """A new job of a stored job's images and settings, every pair measured again; returns its run id. A run that
    was not a job (imported) has no spec to repeat: StoreError."""
    store = cache.store()
    if not store.is_job(run_id):
        raise StoreError(f"run {run_id} was not started as a job here (imported?): nothing to repeat")
    spec = store.job(run_id).spec
    settings = RunSettings(**spec["settings"])
    sources = [s for s in jobs.job_sources(store, run_id, spec) if s.path is not None or s.data]
    planned = plan_all(settings, sources)
    state.add_images(sources)
    return submit_planned(planned, user=user)


def submit_planned(planned: PlannedRun, *, user: str = "") -> str:
    """Queue the plan as one job in this server's run store and make sure a worker serves it; returns the run id.
    Settings a worker could not run (unknown model, no CUDA, weights missing offline, a checkpoint that does not
    load) raise here, before anything is stored. The job is tracked by this session and viewed at once."""
    store = cache.store()
    run_id = jobs.submit(store, planned.settings, planned.sources, todo=planned.todo, user=user)
    state.track_job(run_id)
    state.view_run(run_id)
    jobs.ensure_worker(store)
    return run_id
