"""The Run page's logic without widgets: gather images (gallery, uploads, allowed server folders), keep uploaded
checkpoints, tell which weights need a download, plan what this session has not done yet, and hand the run to
`core.runner` (which stores it); the finished run joins the session tables."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core import runner
from core.config import FOLDER_ROOTS_ENV, GALLERY_DIR
from core.engine import DetectionResult
from core.images import ImageSource, content_id, expand_paths
from core.models import get_model
from core.runner import PlannedRun, RunOutput, RunSettings
from core.runtimes import split_series
from core.store import StoreError
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


def plan(settings: RunSettings, sources: Sequence[ImageSource], device: str) -> PlannedRun:
    """Leave out (image, model, weights, device, precision) already done without error in this session."""
    done = state.done_keys()

    def already(src: ImageSource, series: str) -> bool:
        model, _, precision = split_series(series)
        label = parse_weights(settings.weights_for(model)).label
        return (src.image_id, series, label, device, precision or settings.precision) in done

    return runner.plan(settings, sources, done=already)


def execute(
    planned: PlannedRun,
    *,
    on_result: Callable[[DetectionResult, int, int], None] | None = None,
    on_download: Callable[[str], ProgressFn] | None = None,
    on_export: Callable[[str, str], None] | None = None,
    user: str = "",
) -> RunOutput | None:
    """Run the plan as one stored run (`core.runner`); the run joins the session tables at the end. A store that
    cannot be written to is reported in the run's settings, not fatal."""
    if not planned.todo:
        return None
    try:
        store, problem = cache.store(), ""
    except (StoreError, OSError) as exc:
        store, problem = None, str(exc)
    output = runner.execute(
        planned,
        store=store,
        store_required=False,
        user=user,
        on_result=on_result,
        on_download=on_download,
        on_export=on_export,
    )
    problem = problem or output.store_problem
    if problem:
        output.info.settings["store"] = f"not saved: {problem}"
    state.add_run(output.info, output.inferences, output.detections)
    return output
