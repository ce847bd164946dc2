"""Weights: torchvision's defaults (downloaded once into the torch hub cache), local files, or untrained.

Every file is loaded as data only: `torch.load(..., weights_only=True)` or safetensors. torchvision's own loader
unpickles anything (its `weights_only` defaults to off), so building with default weights routes it through ours.
Checkpoint files, and how their model is built, are `core.inference.checkpoints`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from core.config import DOWNLOAD_TIMEOUT_S, UNTRAINED_SEED, WEIGHTS_DEFAULT, WEIGHTS_UNTRAINED
from core.errors import WeightsError
from core.inference.checkpoint_files import load_state_dict_file
from core.inference.checkpoints import build_checkpoint, check_checkpoint, norm_layers
from core.inference.models import ModelSpec

ProgressFn = Callable[[int, int | None], None]
"""Download progress: (bytes done, total bytes or None)."""

_HASH_RE = re.compile(r"-([a-f0-9]{6,})\.")
_CHUNK = 1 << 20
_build_lock = threading.Lock()


class WeightsUnavailableError(WeightsError):
    """Default weights are not in the cache and cannot be downloaded."""


@dataclass(frozen=True)
class WeightsChoice:
    """Where a model's weights come from: 'default', 'untrained' or a local file."""

    kind: str  # "default" | "untrained" | "file"
    path: Path | None = None

    @property
    def label(self) -> str:
        """The value recorded in the `weights` column."""
        return self.path.name if self.path is not None else self.kind

    @property
    def untrained(self) -> bool:
        return self.kind == WEIGHTS_UNTRAINED


def parse_weights(value: str | Path) -> WeightsChoice:
    """'default', 'untrained' or a path to an existing .pth/.pt/.safetensors file."""
    text = str(value).strip()
    if text in (WEIGHTS_DEFAULT, WEIGHTS_UNTRAINED):
        return WeightsChoice(text)
    path = Path(text).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path} (use 'default', 'untrained' or a .pth/.safetensors file)")
    return WeightsChoice("file", path.resolve())


# --- default weights: the torch hub cache -------------------------------------------------------------------------


def hub_checkpoint_dir() -> Path:
    """The folder torchvision reads default weights from ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_weights_path(spec: ModelSpec) -> Path:
    return hub_checkpoint_dir() / spec.weights_file


def _missing_weights_message(url: str, reason: str) -> str:
    target = hub_checkpoint_dir() / url.rsplit("/", 1)[-1]
    return (
        f"default weights could not be downloaded ({reason}). Expected file: {target.name} in {target.parent}. "
        f"Download {url} on a machine with internet and copy it there (or set TORCH_HOME), "
        f"pass a local file with --weights FILE, or choose 'untrained' for smoke tests and latency studies."
    )


def ensure_weights_file(url: str, progress: ProgressFn | None = None, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """The cached file for `url`, downloaded first if missing (hash prefix checked, written atomically)."""
    target = hub_checkpoint_dir() / url.rsplit("/", 1)[-1]
    if target.is_file():
        return target
    if os.environ.get("DETLENS_OFFLINE"):
        raise WeightsUnavailableError(_missing_weights_message(url, "DETLENS_OFFLINE is set"))
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    partial: Path | None = None
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - torchvision's https URL
            total = int(response.headers.get("Content-Length") or 0) or None
            with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".part-", delete=False) as tmp:
                partial = Path(tmp.name)
                done = 0
                if progress:
                    progress(0, total)
                while chunk := response.read(_CHUNK):
                    tmp.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
        expected = _HASH_RE.search(target.name)
        if expected and not digest.hexdigest().startswith(expected.group(1)):
            raise WeightsUnavailableError(_missing_weights_message(url, "downloaded file failed its hash check"))
        os.replace(partial, target)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise WeightsUnavailableError(_missing_weights_message(url, f"{type(exc).__name__}: {reason}")) from exc
    finally:
        if partial is not None:
            partial.unlink(missing_ok=True)
    return target


@contextlib.contextmanager
def _torchvision_loads_safely(progress: ProgressFn | None) -> Iterator[None]:
    """While building with a weights enum, torchvision's URL loader becomes ours (download + weights_only)."""
    from torchvision.models import _api

    def load(url: str, *args: object, **kwargs: object) -> dict[str, torch.Tensor]:
        return load_state_dict_file(ensure_weights_file(url, progress))

    original = _api.load_state_dict_from_url
    _api.load_state_dict_from_url = load
    try:
        yield
    finally:
        _api.load_state_dict_from_url = original


@dataclass(frozen=True)
class BuiltModel:
    module: nn.Module
    categories: tuple[str, ...]
    weights: str  # label for records
    weights_build: str = ""  # how the module was built, e.g. "weights (FrozenBatchNorm2d eps 0) — from the state dict"


def build_model(
    spec: ModelSpec,
    choice: WeightsChoice,
    *,
    class_names: Sequence[str] | None = None,
    progress: ProgressFn | None = None,
) -> BuiltModel:
    """Build `spec` with the chosen weights, in eval mode on the CPU.

    A checkpoint file is built with the layers torchvision gave the model that saved it (`core.inference.checkpoints`): e.g.
    `fasterrcnn_resnet50_fpn(weights="DEFAULT")` fine-tuned has FrozenBatchNorm2d with eps 0.0, the same model trained
    from scratch nn.BatchNorm2d; then loaded with `load_state_dict(strict=True)`. Nothing is downloaded.
    """
    with _build_lock:
        if choice.kind == WEIGHTS_DEFAULT:
            try:
                with _torchvision_loads_safely(progress):
                    module = spec.builder(weights=spec.default_weights, progress=False)
            except WeightsError:
                raise
            except RuntimeError as exc:  # load_state_dict's shape/key errors on a wrong cached file
                first = str(exc).strip().splitlines()[0][:300]
                raise WeightsError(
                    f"cached weights {cached_weights_path(spec)} do not fit {spec.name}: {first}"
                ) from exc
            categories = spec.categories
            how = f"weights ({norm_layers(module)}) — torchvision's builder with weights=DEFAULT"
        elif choice.kind == WEIGHTS_UNTRAINED:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(UNTRAINED_SEED)
                module = spec.builder(weights=None, weights_backbone=None, num_classes=spec.num_classes)
            categories = spec.categories
            how = f"scratch ({norm_layers(module)}) — untrained, seeded"
        else:
            assert choice.path is not None
            module, categories, how = build_checkpoint(spec, choice.path, class_names)
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return BuiltModel(module=module, categories=tuple(categories), weights=choice.label, weights_build=how)


# --- checks before a job is queued ----------------------------------------------------------------------------------


def check_weights(
    spec: ModelSpec, weights: str, *, class_names: Sequence[str] | None = None, timeout: float = 3.0
) -> None:
    """Raise WeightsError now for weights a worker could not use, without building the model on a device.

    - default: the file is in the hub cache, or the download host answers (a HEAD request; `DETLENS_OFFLINE` or no
      network: WeightsUnavailableError naming the file, the folder and the ways out);
    - a file: it loads as data (weights_only / safetensors) and fits the model (shapes and keys, checked against the
      model built on the `meta` device: no memory for parameters, no computation);
    - untrained: always usable.
    """
    choice = parse_weights(weights)
    if choice.kind == WEIGHTS_DEFAULT:
        if cached_weights_path(spec).is_file():
            return
        url = spec.default_weights.url
        if os.environ.get("DETLENS_OFFLINE"):
            raise WeightsUnavailableError(_missing_weights_message(url, "DETLENS_OFFLINE is set"))
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):  # noqa: S310
                return
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise WeightsUnavailableError(_missing_weights_message(url, f"{type(exc).__name__}: {reason}")) from exc
    if choice.kind == WEIGHTS_UNTRAINED:
        return
    assert choice.path is not None
    check_checkpoint(spec, choice.path, class_names)
