"""Category lists without torch: which names are real classes, and a model's category list remembered per
torchvision version, so that a command that only reads the list (evaluate, errors, gate on a stored run) need not
import torch and torchvision (4 s here) to map a ground truth's names to label ids.

The list itself always comes from the weights' own metadata (`core.inference.models`); this module only keeps a copy of what it
returned, in the store folder under CATEGORIES_CACHE_DIR, named by the model and the installed torchvision version.
"""

from __future__ import annotations

import json
import os
import tempfile
from importlib import metadata
from pathlib import Path

from core.config import CATEGORIES_CACHE_DIR, default_store_dir

NOT_CLASS_NAMES = frozenset({"", "n/a", "__background__", "background"})


def is_class_name(name: str) -> bool:
    """False for the placeholders of a category list ("N/A", "__background__", empty), true for real classes."""
    return name.strip().lower() not in NOT_CLASS_NAMES


def cache_file(model: str, store_dir: Path | None = None) -> Path | None:
    """Where `model`'s category list of the installed torchvision is kept (None when torchvision is not installed)."""
    try:
        version = metadata.version("torchvision")
    except metadata.PackageNotFoundError:
        return None
    folder = (store_dir or default_store_dir()) / CATEGORIES_CACHE_DIR
    return folder / f"{model}-torchvision-{version}.json"


def kept_categories(model: str, store_dir: Path | None = None) -> tuple[str, ...] | None:
    """The kept category list of `model`, or None when there is none (or it is not a non-empty list of names)."""
    path = cache_file(model, store_dir)
    try:
        names = json.loads(path.read_text(encoding="utf-8")) if path else None
    except (OSError, ValueError):
        return None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return None
    return tuple(names)


def keep_categories(model: str, names: tuple[str, ...], store_dir: Path | None = None) -> None:
    """Keep `names` for `model` (atomically: a reader sees the old file or the new one); a folder that cannot be
    written is left alone (the next call reads the weights' metadata again)."""
    path = cache_file(model, store_dir)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(list(names), f)
        os.replace(tmp, path)
    except OSError:
        return
