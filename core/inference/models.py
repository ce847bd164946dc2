"""Model registry: every torchvision detection builder, described by its weights enum's own metadata."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torchvision
from torch import nn
from torchvision.models import WeightsEnum

from core.config import HEADLINE_MODELS
from core.errors import UnknownModelError

# Builders whose weights enum is not a COCO box detector are not listed (none today; the guard keeps it honest).
_TASK_BY_PREFIX = {
    "maskrcnn": "boxes of an instance segmenter",
    "keypointrcnn": "boxes of a keypoint detector (person only: its mAP is on people)",
}


@dataclass(frozen=True)
class ModelSpec:
    """One detector: its builder, default weights and the published figures from `weights.meta`."""

    name: str
    builder: Callable[..., nn.Module]
    weights_enum: type[WeightsEnum]
    default_weights: WeightsEnum
    categories: tuple[str, ...]
    box_map: float | None
    gflops: float | None
    params: int | None
    file_size_mb: float | None
    note: str = ""

    @property
    def title(self) -> str:
        """Human title, e.g. 'Faster R-CNN ResNet50-FPN' style names come from the builder name."""
        return _title(self.name)

    @property
    def short_name(self) -> str:
        """Compact display name for tight chart axes and legends, e.g. 'SSDLite320 MNv3-L' (see `short_name`)."""
        return short_name(self.name)

    @property
    def weights_file(self) -> str:
        """File name the default weights are stored under in the torch hub cache."""
        return self.default_weights.url.rsplit("/", 1)[-1]

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    @property
    def headline(self) -> bool:
        return self.name in HEADLINE_MODELS

    def as_row(self) -> dict[str, object]:
        """The published figures as one table row (CLI listing, dashboard model table)."""
        return {
            "model": self.name,
            "title": self.title,
            "box_map": self.box_map,
            "gflops": self.gflops,
            "params_m": round(self.params / 1e6, 2) if self.params else None,
            "file_size_mb": self.file_size_mb,
            "classes": self.num_classes,
            "weights_file": self.weights_file,
            "note": self.note,
        }


def _title(name: str) -> str:
    words = {
        "fasterrcnn": "Faster R-CNN",
        "maskrcnn": "Mask R-CNN",
        "keypointrcnn": "Keypoint R-CNN",
        "retinanet": "RetinaNet",
        "fcos": "FCOS",
        "ssd300": "SSD300",
        "ssdlite320": "SSDLite320",
        "resnet50": "ResNet50",
        "mobilenet": "MobileNet",
        "v3": "V3",
        "large": "Large",
        "fpn": "FPN",
        "vgg16": "VGG16",
        "v2": "v2",
        "320": "320",
    }
    return " ".join(words.get(part, part) for part in name.split("_"))


# Compact display names: the builder name's first token is the detector family, the rest its backbone parts.
_SHORT_FAMILIES = {
    "fasterrcnn": "Faster R-CNN", "maskrcnn": "Mask R-CNN", "keypointrcnn": "Keypoint R-CNN",
    "retinanet": "RetinaNet", "fcos": "FCOS", "ssd300": "SSD300", "ssdlite320": "SSDLite320",
}  # fmt: skip
_SHORT_PARTS = {"resnet50": "R50", "vgg16": "VGG16", "fpn": "FPN", "large": "L", "small": "S"}
_VERSION = re.compile(r"v\d+")


def short_name(name: str) -> str:
    """A compact display name by rule: 'fasterrcnn_resnet50_fpn_v2' -> 'Faster R-CNN R50-FPN v2',
    'ssdlite320_mobilenet_v3_large' -> 'SSDLite320 MNv3-L'.

    Only the first word is rewritten, and only when it is a builder-style name of a known family; any suffix (a
    variant label's ' (fp16)') is kept and other names come back unchanged.
    """
    head, sep, tail = name.partition(" ")
    family, *rest = head.split("_")
    if family not in _SHORT_FAMILIES:
        return name
    version = ""
    if len(rest) > 1 and _VERSION.fullmatch(rest[-1]) and rest[-2] != "mobilenet":
        version = " " + rest.pop()
    pieces: list[str] = []
    for part in rest:
        if pieces and pieces[-1] == "MN" and _VERSION.fullmatch(part):
            pieces[-1] += part
        else:
            pieces.append("MN" if part == "mobilenet" else _SHORT_PARTS.get(part, part))
    backbone = "-".join(pieces)
    return f"{_SHORT_FAMILIES[family]}{' ' + backbone if backbone else ''}{version}{sep}{tail}"


@cache
def _registry() -> dict[str, ModelSpec]:
    specs: dict[str, ModelSpec] = {}
    for name in torchvision.models.list_models(module=torchvision.models.detection):
        enum = torchvision.models.get_model_weights(name)
        default = enum.DEFAULT
        meta = default.meta
        metrics = next(iter(meta.get("_metrics", {}).values()), {})
        if "box_map" not in metrics:
            continue
        note = next((v for k, v in _TASK_BY_PREFIX.items() if name.startswith(k)), "")
        specs[name] = ModelSpec(
            name=name,
            builder=torchvision.models.get_model_builder(name),
            weights_enum=enum,
            default_weights=default,
            categories=tuple(meta["categories"]),
            box_map=metrics.get("box_map"),
            gflops=meta.get("_ops"),
            params=meta.get("num_params"),
            file_size_mb=meta.get("_file_size"),
            note=note,
        )
    # Headline pair first, the rest alphabetically.
    order = sorted(
        specs, key=lambda n: (n not in HEADLINE_MODELS, HEADLINE_MODELS.index(n) if n in HEADLINE_MODELS else 0, n)
    )
    return {n: specs[n] for n in order}


def list_models() -> list[ModelSpec]:
    """All registered detectors, the headline pair first."""
    return list(_registry().values())


def model_names() -> list[str]:
    return list(_registry())


def get_model(name: str) -> ModelSpec:
    """The spec for `name`; an UnknownModelError that suggests close names otherwise."""
    registry = _registry()
    if name in registry:
        return registry[name]
    close = difflib.get_close_matches(name, list(registry), n=3, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownModelError(f"unknown model '{name}'.{hint} Run `python -m core models` for the list.")


def parse_model_list(text: str) -> list[str]:
    """'a,b' -> ['a', 'b'] checked against the registry (duplicates dropped, order kept)."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise UnknownModelError("no model given")
    for n in names:
        get_model(n)
    return list(dict.fromkeys(names))


# Entries of a category list that are not classes: torchvision's "N/A" gaps and the background at index 0.
def label_name(categories: tuple[str, ...] | list[str], label_id: int) -> str:
    """Category name of a label id; ids outside the list get a readable placeholder."""
    if 0 <= label_id < len(categories):
        return categories[label_id]
    return f"class {label_id}"
