"""Checkpoint files as data: a state dict (`.pth` loaded with `torch.load(weights_only=True)`, or `.safetensors`),
bare or inside a training checkpoint, its sidecar JSON (`built_from`, `weights`, `builder_kwargs`, class names) and the
training args a torchvision reference-script checkpoint saved. How its model is built is `core.inference.checkpoints`.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from core.errors import WeightsError
from core.inference.models import ModelSpec

BUILT_FROM = ("weights", "weights_backbone", "scratch")
"""How a checkpoint's model was built before training: torchvision's `weights=`, `weights_backbone=` or neither."""


# Allowed in a checkpoint besides tensors and plain containers: torchvision's references/detection/train.py saves its
# command line (an argparse.Namespace, attributes only) as "args" beside "model", "optimizer" and "lr_scheduler".
_CHECKPOINT_SAFE_GLOBALS = (argparse.Namespace,)
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # nn.DataParallel / DistributedDataParallel, torch.compile
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class TrainingArgs:
    """How a torchvision reference-script checkpoint says its model was built (its saved `args`)."""

    model: str
    built_from: str | None  # one of BUILT_FROM, None when the args do not say
    said: str  # the arguments that told, as written, e.g. "--weights-backbone ResNet50_Weights.IMAGENET1K_V1"
    rpn_score_thresh: float | None = None
    weights: str | None = None  # `--weights` as given (`DEFAULT`, `KeypointRCNN_ResNet50_FPN_Weights.COCO_LEGACY`)


def training_args(args: object) -> TrainingArgs | None:
    """What torchvision's references/detection/train.py `args` (a Namespace, or a dict of them) say of the build:
    `get_model(args.model, weights=args.weights, weights_backbone=args.weights_backbone, num_classes=...,
    rpn_score_thresh=...)`; scripts from before the weights API passed `pretrained=` (and the builders then loaded the
    ImageNet backbone by default). None when they do not name a model."""
    values = vars(args) if isinstance(args, argparse.Namespace) else args
    if not isinstance(values, Mapping) or not isinstance(values.get("model"), str):
        return None
    model = values["model"]
    thresh = values.get("rpn_score_thresh") if "rcnn" in model else None
    thresh = float(thresh) if isinstance(thresh, int | float) and not isinstance(thresh, bool) else None
    if "weights" in values or "weights_backbone" in values:
        weights, backbone = values.get("weights"), values.get("weights_backbone")
        if weights:
            return TrainingArgs(model, "weights", f"--weights {weights}", thresh, str(weights))
        if backbone:
            return TrainingArgs(model, "weights_backbone", f"--weights-backbone {backbone}", thresh)
        return TrainingArgs(model, "scratch", "no --weights, no --weights-backbone", thresh)
    if "pretrained" in values:
        if values["pretrained"]:
            return TrainingArgs(model, "weights", "--pretrained", thresh)
        return TrainingArgs(model, "weights_backbone", "no --pretrained (the ImageNet backbone by default)", thresh)
    return TrainingArgs(model, None, "", thresh)


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], TrainingArgs | None]:
    """A state dict from .safetensors or a .pth loaded as data only (pickles that hold code are refused), and what
    a torchvision reference-script checkpoint's `args` say of its build. The state dict may be the file itself or
    under `model`, `state_dict` or `model_state_dict`; wrapper prefixes are dropped (`_bare_keys`)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            with torch.serialization.safe_globals(list(_CHECKPOINT_SAFE_GLOBALS)):
                state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise WeightsError(f"weights file not found: {path}") from exc
    except Exception as exc:  # unpickling errors come in many types
        text = _ANSI.sub("", str(exc)).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise WeightsError(
            f"refused to load {path.name}: not a plain tensor state dict ({first[:200]}). "
            "Only weights_only=True pickles and .safetensors files are loaded: save model.state_dict()."
        ) from exc
    train = training_args(state.get("args")) if isinstance(state, Mapping) else None
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path.name} does not hold a state dict of tensors")
    return _bare_keys(state), train


def _bare_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys as the bare model names them: DataParallel's `module.` and torch.compile's `_orig_mod.` dropped, and then
    a prefix that every key shares (a training wrapper's attribute, e.g. Lightning's `model.`): a detector's own
    state dict always has several top-level parts (backbone, rpn, roi_heads / head)."""
    out = {}
    for key, value in state.items():
        while key.startswith(_WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        out[key] = value
    while len(out) > 1 and all("." in k for k in out) and len({k.split(".", 1)[0] for k in out}) == 1:
        out = {k.split(".", 1)[1]: v for k, v in out.items()}
    return out


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of `load_checkpoint`."""
    return load_checkpoint(path)[0]


def _sidecar(path: Path) -> tuple[Path, object] | None:
    """The sidecar JSON next to a checkpoint (FILE.json or STEM.json) and its parsed content, if there is one."""
    for sidecar in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if sidecar.is_file():
            try:
                return sidecar, json.loads(sidecar.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise WeightsError(f"sidecar file {sidecar.name} is not valid JSON: {exc}") from exc
    return None


def _sidecar_object(path: Path) -> tuple[str, dict] | None:
    """The sidecar's file name and content when it is a JSON object (the form that can say more than class names)."""
    found = _sidecar(path)
    if found is None or not isinstance(found[1], dict):
        return None
    return found[0].name, found[1]


def read_categories(path: Path, names: Sequence[str] | None = None) -> tuple[str, ...] | None:
    """Class names for a checkpoint: given names, else a sidecar JSON next to it (FILE.json or STEM.json).

    The JSON is a list of names in label-id order, `{"categories": [...]}`, or COCO-style `[{"id": 1, "name": ...}]`.
    Index 0 is the background; `__background__` is put there when the list does not start with it.
    """
    if names is None:
        found = _sidecar(path)
        if found is not None and not (isinstance(found[1], dict) and "categories" not in found[1]):
            try:
                names = _names_from_json(found[1])
            except (ValueError, TypeError, KeyError) as exc:
                raise WeightsError(f"class names file {found[0].name} is not valid: {exc}") from exc
    if names is None:
        return None
    names = [str(n) for n in names]
    if not names:
        raise WeightsError("class names list is empty")
    if names[0].lower() not in ("__background__", "background"):
        names = ["__background__", *names]
    return tuple(names)


def read_built_from(path: Path) -> str | None:
    """The sidecar's `built_from` ('weights', 'weights_backbone' or 'scratch'), if it says how the model was built;
    a sidecar naming the `weights` it started from (`"weights": "COCO_LEGACY"`) says 'weights'."""
    found = _sidecar_object(path)
    if found is None:
        return None
    name, sidecar = found
    value = sidecar.get("built_from")
    if value is None:
        return "weights" if sidecar.get("weights") else None
    if value not in BUILT_FROM:
        raise WeightsError(f"{name}: built_from must be one of {', '.join(BUILT_FROM)}, not {value!r}")
    if sidecar.get("weights") and value != "weights":
        raise WeightsError(f"{name}: names weights {sidecar['weights']!r} but says built_from {value!r}")
    return value


def read_sidecar_weights(spec: ModelSpec, path: Path) -> str | None:
    """The sidecar's `weights`: the member of the model's weights enum the training started from (`COCO_LEGACY`,
    `KeypointRCNN_ResNet50_FPN_Weights.COCO_V1`, `DEFAULT`); it decides the eps as torchvision's builder does."""
    found = _sidecar_object(path)
    if found is None or not found[1].get("weights"):
        return None
    name = str(found[1]["weights"])
    enum_name, _, member = name.rpartition(".")
    members = [m.name for m in spec.weights_enum]
    if member not in {*members, "DEFAULT"} or enum_name not in ("", spec.weights_enum.__name__):
        raise WeightsError(f"{found[0]}: weights {name!r} are not {spec.name}'s: one of DEFAULT, {', '.join(members)}")
    return name


_NOT_BUILDER_KWARGS = frozenset({"weights", "weights_backbone", "num_classes", "progress"})  # DetLens decides these


def read_builder_kwargs(path: Path) -> dict[str, object]:
    """The sidecar's `builder_kwargs`: the keyword arguments the training script gave torchvision's builder beyond
    weights and classes (`{"box_score_thresh": 0.7, "min_size": 640}`), which no state dict holds."""
    found = _sidecar_object(path)
    if found is None or "builder_kwargs" not in found[1]:
        return {}
    value = found[1]["builder_kwargs"]
    if not isinstance(value, dict):
        raise WeightsError(f"{found[0]}: builder_kwargs must be an object of keyword arguments, not {value!r}")
    taken = sorted(_NOT_BUILDER_KWARGS & set(value))
    if taken:
        raise WeightsError(
            f"{found[0]}: builder_kwargs may not set {', '.join(taken)} (weights come from the file, classes "
            "from its classifier and names, the build from built_from)"
        )
    return dict(value)


def _names_from_json(data: object) -> list[str]:
    if isinstance(data, dict):
        data = data["categories"]
    if not isinstance(data, list):
        raise TypeError("expected a list of class names")
    if data and all(isinstance(d, dict) for d in data):
        by_id = {int(d["id"]): str(d["name"]) for d in data}
        return ["__background__"] + [by_id.get(i, "N/A") for i in range(1, max(by_id) + 1)]
    return [str(d) for d in data]


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """`load_state_dict(strict=True)` with clear errors; a BatchNorm's missing `num_batches_tracked` (a counter that
    eval mode never reads) is taken from the model, so a checkpoint saved from FrozenBatchNorm2d layers still loads."""
    own = model.state_dict()
    mismatched = [
        f"{k} {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    if mismatched:
        more = f" (+{len(mismatched) - 3} more)" if len(mismatched) > 3 else ""
        raise WeightsError(
            f"{source} does not fit this model: shape mismatch in {'; '.join(mismatched[:3])}{more}: another "
            "model's checkpoint, or one built with other builder arguments (say them in the sidecar JSON's "
            '"builder_kwargs")'
        )
    state = dict(state)
    for k, v in own.items():
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = v
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        result = model.load_state_dict(state, strict=False)
        parts = []
        if result.missing_keys:
            parts.append(f"{len(result.missing_keys)} missing keys (e.g. {result.missing_keys[0]})")
        if result.unexpected_keys:
            parts.append(f"{len(result.unexpected_keys)} unexpected keys (e.g. {result.unexpected_keys[0]})")
        raise WeightsError(f"{source} does not fit this model: {', '.join(parts)}") from None
