"""Weights: torchvision's defaults (downloaded once into the torch hub cache), local files, or untrained.

Every file is loaded as data only: `torch.load(..., weights_only=True)` or safetensors. torchvision's own loader
unpickles anything (its `weights_only` defaults to off), so building with default weights routes it through ours.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from core.config import DOWNLOAD_TIMEOUT_S, UNTRAINED_SEED, WEIGHTS_DEFAULT, WEIGHTS_UNTRAINED
from core.models import ModelSpec

ProgressFn = Callable[[int, int | None], None]
"""Download progress: (bytes done, total bytes or None)."""

_HASH_RE = re.compile(r"-([a-f0-9]{6,})\.")
_CHUNK = 1 << 20
_build_lock = threading.Lock()


class WeightsError(RuntimeError):
    """A weights file that cannot be used (refused pickle, wrong shapes, unreadable)."""


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


# --- local files ----------------------------------------------------------------------------------------------------


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a .pth loaded as data only; pickles that hold code are refused."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise WeightsError(f"weights file not found: {path}") from exc
    except Exception as exc:  # unpickling errors come in many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"refused to load {path.name}: not a plain tensor state dict ({first[:200]}). "
            "Only weights_only=True pickles and .safetensors files are loaded."
        ) from exc
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path.name} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def read_categories(path: Path, names: Sequence[str] | None = None) -> tuple[str, ...] | None:
    """Class names for a checkpoint: given names, else a sidecar JSON next to it (FILE.json or STEM.json).

    The JSON is a list of names in label-id order, `{"categories": [...]}`, or COCO-style `[{"id": 1, "name": ...}]`.
    Index 0 is the background; `__background__` is put there when the list does not start with it.
    """
    if names is None:
        for sidecar in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
            if sidecar.is_file():
                try:
                    names = _names_from_json(json.loads(sidecar.read_text(encoding="utf-8")))
                except (ValueError, TypeError, KeyError) as exc:
                    raise WeightsError(f"class names file {sidecar.name} is not valid: {exc}") from exc
                break
    if names is None:
        return None
    names = [str(n) for n in names]
    if not names:
        raise WeightsError("class names list is empty")
    if names[0].lower() not in ("__background__", "background"):
        names = ["__background__", *names]
    return tuple(names)


def _names_from_json(data: object) -> list[str]:
    if isinstance(data, dict):
        data = data["categories"]
    if not isinstance(data, list):
        raise TypeError("expected a list of class names")
    if data and all(isinstance(d, dict) for d in data):
        by_id = {int(d["id"]): str(d["name"]) for d in data}
        return ["__background__"] + [by_id.get(i, "N/A") for i in range(1, max(by_id) + 1)]
    return [str(d) for d in data]


def _load_into(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    own = model.state_dict()
    mismatched = [
        f"{k} {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    if mismatched:
        more = f" (+{len(mismatched) - 3} more)" if len(mismatched) > 3 else ""
        raise WeightsError(
            f"{source} does not fit this model: shape mismatch in {'; '.join(mismatched[:3])}{more}. "
            "A fine-tuned checkpoint needs its class names (a sidecar JSON next to the file, or names given)."
        )
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if result.unexpected_keys:
            parts.append(f"{len(result.unexpected_keys)} unexpected keys (e.g. {result.unexpected_keys[0]})")
        raise WeightsError(f"{source} does not fit this model: {', '.join(parts)}")


# --- building -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltModel:
    module: nn.Module
    categories: tuple[str, ...]
    weights: str  # label for records


def build_model(
    spec: ModelSpec,
    choice: WeightsChoice,
    *,
    class_names: Sequence[str] | None = None,
    progress: ProgressFn | None = None,
) -> BuiltModel:
    """Build `spec` with the chosen weights, in eval mode on the CPU."""
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
        elif choice.kind == WEIGHTS_UNTRAINED:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(UNTRAINED_SEED)
                module = spec.builder(weights=None, weights_backbone=None, num_classes=spec.num_classes)
            categories = spec.categories
        else:
            assert choice.path is not None
            categories = read_categories(choice.path, class_names) or spec.categories
            state = load_state_dict_file(choice.path)
            module = spec.builder(weights=None, weights_backbone=None, num_classes=len(categories))
            _load_into(module, state, choice.path.name)
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return BuiltModel(module=module, categories=tuple(categories), weights=choice.label)
