"""A checkpoint file's model, built as torchvision built the model that saved it (the file itself, read as data
only: `core.inference.checkpoint_files`).

A file is a state dict (`.pth` loaded with `torch.load(weights_only=True)`, or `.safetensors`), bare or inside a
training checkpoint. How its model is built, so that it gives the saving script's boxes to the last digit, is decided
by, in order: its sidecar JSON (`built_from`, `weights`), the training args a torchvision reference-script checkpoint
saved, and what the state dict itself shows (`decide_build`); builder arguments no state dict holds come from the
sidecar's `builder_kwargs`. Class names: given, the sidecar's, the model's own, or numbered from the classifier.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from core.config import UNNAMED_CLASS
from core.errors import WeightsError
from core.inference.checkpoint_files import (
    TrainingArgs,
    load_checkpoint,
    load_into,
    read_builder_kwargs,
    read_built_from,
    read_categories,
    read_sidecar_weights,
)
from core.inference.models import ModelSpec

# --- building -------------------------------------------------------------------------------------------------------


# torchvision 0.29.1's builders, read from torchvision/models/detection/*.py. These builders pick
# `FrozenBatchNorm2d` for the backbone when `weights` or `weights_backbone` is given and `nn.BatchNorm2d` otherwise:
_FROZEN_NORM_WHEN_TRAINED = frozenset(
    {
        "fasterrcnn_resnet50_fpn",
        "maskrcnn_resnet50_fpn",
        "keypointrcnn_resnet50_fpn",
        "retinanet_resnet50_fpn",
        "fcos_resnet50_fpn",
        "fasterrcnn_mobilenet_v3_large_fpn",
        "fasterrcnn_mobilenet_v3_large_320_fpn",
    }
)
# ... and these also call `overwrite_eps(model, 0.0)` after loading their COCO_V1 (= DEFAULT) weights.
_EPS_ZERO_WITH_WEIGHTS = frozenset(
    {"fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn", "keypointrcnn_resnet50_fpn", "retinanet_resnet50_fpn"}
)
# SSDLite builds MobileNetV3 with `reduced_tail=True` unless `weights_backbone` is given (a shape the file shows).
_FULL_TAIL_WITH_BACKBONE = frozenset({"ssdlite320_mobilenet_v3_large"})
# The v2 models and SSD300/SSDLite build the same layers in all three cases (nn.BatchNorm2d, GroupNorm or none).


@dataclass(frozen=True)
class CheckpointBuild:
    """How a checkpoint's model is built: which torchvision case, and why that case was chosen."""

    built_from: str  # one of BUILT_FROM
    reason: str
    weights: str | None = None  # for `weights`, the enum member the training args name, when they do


def norm_layers(module: nn.Module) -> str:
    """The model's norm layers as recorded, e.g. 'FrozenBatchNorm2d eps 0.0' or 'BatchNorm2d eps 1e-05, GroupNorm'."""
    from torchvision.ops import FrozenBatchNorm2d

    kinds: dict[str, set[float]] = {}
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._NormBase | FrozenBatchNorm2d | nn.GroupNorm):
            kinds.setdefault(type(m).__name__, set()).add(float(m.eps))
    if not kinds:
        return "no norm layers"
    return ", ".join(f"{k} eps {'/'.join(f'{e:g}' for e in sorted(v))}" for k, v in sorted(kinds.items()))


def decide_build(
    spec: ModelSpec,
    state: Mapping[str, torch.Tensor],
    built_from: str | None = None,
    train: TrainingArgs | None = None,
    weights: str | None = None,
) -> CheckpointBuild:
    """The torchvision case a state dict was saved from: the sidecar's `built_from` (and `weights`) if given, else what
    the training args saved in the checkpoint say (torchvision's reference script, for this model), else what the
    state dict shows.

    `num_batches_tracked` exists only in nn.BatchNorm2d, so for the builders that freeze their norm when trained, its
    presence means scratch and its absence `weights` or `weights_backbone`. Those two differ only in the
    FrozenBatchNorm2d eps of the legacy v1 models (0.0 after `weights=DEFAULT`, 1e-5 with `weights_backbone`), which no
    state dict holds: the fine-tuning tutorial's `weights="DEFAULT"` is assumed. SSDLite's `weights_backbone` case is
    told by its shapes (see `_build_for`), the other builders build the same layers in every case.
    """
    if built_from is not None:
        said = f'"weights": {weights}' if weights else '"built_from"'
        return CheckpointBuild(built_from, f"from the sidecar JSON's {said}", weights)
    if train is not None and train.built_from is not None and train.model == spec.name:
        return CheckpointBuild(train.built_from, f"from the checkpoint's training args: {train.said}", train.weights)
    if spec.name in _FROZEN_NORM_WHEN_TRAINED:
        if any(k.endswith("num_batches_tracked") for k in state):
            return CheckpointBuild("scratch", "from the state dict: num_batches_tracked keys (nn.BatchNorm2d)")
        if spec.name in _EPS_ZERO_WITH_WEIGHTS:
            reason = (
                "from the state dict: no num_batches_tracked (FrozenBatchNorm2d); its eps is not in a state dict, "
                'weights="DEFAULT" assumed (set "built_from" in the sidecar JSON for weights_backbone)'
            )
        else:
            reason = "from the state dict: no num_batches_tracked (FrozenBatchNorm2d; weights_backbone builds the same)"
        return CheckpointBuild("weights", reason)
    if spec.name in _FULL_TAIL_WITH_BACKBONE:
        return CheckpointBuild("weights", "reduced MobileNetV3 tail: weights or scratch (the same layers)")
    return CheckpointBuild("weights", "this builder makes the same layers with weights, weights_backbone or scratch")


def _freeze_norms(module: nn.Module, eps: float) -> None:
    """Replace every nn.BatchNorm2d by the FrozenBatchNorm2d torchvision builds in its place (same buffers)."""
    from torchvision.ops import FrozenBatchNorm2d

    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            setattr(module, name, FrozenBatchNorm2d(child.num_features, eps=eps))
        else:
            _freeze_norms(child, eps)


@contextlib.contextmanager
def _full_mobilenet_tail() -> Iterator[None]:
    """While building SSDLite, MobileNetV3 keeps its full tail, as torchvision builds it with `weights_backbone`."""
    from torchvision.models.detection import ssdlite

    original = ssdlite.mobilenet_v3_large

    def full(**kwargs: object) -> nn.Module:
        return original(**{**kwargs, "reduced_tail": False})

    ssdlite.mobilenet_v3_large = full
    try:
        yield
    finally:
        ssdlite.mobilenet_v3_large = original


def _zero_eps(spec: ModelSpec, built_from: str, weights: str | None = None) -> bool:
    """Whether torchvision's builder set the FrozenBatchNorm2d eps to 0.0: after loading the v1 models' COCO_V1
    weights only (DEFAULT; not Keypoint R-CNN's COCO_LEGACY). Unnamed or unknown weights: DEFAULT."""
    if built_from != "weights" or spec.name not in _EPS_ZERO_WITH_WEIGHTS:
        return False
    if not weights:
        return True
    try:
        member = torchvision.models.get_weight(weights) if "." in weights else spec.weights_enum[weights]
    except (KeyError, ValueError, AttributeError):
        return True
    return getattr(member, "name", "") == "COCO_V1"


def _build_for(spec: ModelSpec, built_from: str, weights: str | None = None, **kwargs: object) -> nn.Module:
    """`spec`'s module with the layers torchvision builds in the `built_from` case, without downloading anything."""
    context = (
        _full_mobilenet_tail() if spec.name in _FULL_TAIL_WITH_BACKBONE and built_from == "weights_backbone" else None
    )
    with context or contextlib.nullcontext():
        module = spec.builder(weights=None, weights_backbone=None, **kwargs)
    if spec.name in _FROZEN_NORM_WHEN_TRAINED and built_from != "scratch":
        eps = 0.0 if _zero_eps(spec, built_from, weights) else 1e-5
        _freeze_norms(module, eps)
    return module


def _build_with(
    spec: ModelSpec, built_from: str, path: Path, kwargs: dict[str, object], weights: str | None = None
) -> nn.Module:
    """`_build_for` with a clear error for builder arguments (from the sidecar) that torchvision does not take."""
    try:
        return _build_for(spec, built_from, weights, **kwargs)
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{path.name}: {spec.name} cannot be built with {kwargs}: {exc}") from exc


def _check_builder_kwargs(spec: ModelSpec, module: nn.Module, given: Mapping[str, object], path: Path) -> None:
    """torchvision's detectors pass unknown keyword arguments on and drop them (GeneralizedRCNNTransform takes
    **kwargs), so a misspelt one would change nothing, silently: each must name a parameter of the builder or of the
    model class it builds."""
    accepted = {
        name
        for fn in (inspect.unwrap(spec.builder), type(module).__init__)
        for name, param in inspect.signature(fn).parameters.items()
        if param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL)
    }
    unknown = sorted(set(given) - accepted)
    if unknown:
        raise WeightsError(
            f"{path.name}: builder_kwargs {', '.join(unknown)} not taken by {spec.name} or {type(module).__name__} "
            "(torchvision would ignore it silently)"
        )


def _shapes_fit(module: nn.Module, state: Mapping[str, torch.Tensor], prefix: str = "backbone.") -> bool:
    own = module.state_dict()
    return all(own[k].shape == v.shape for k, v in state.items() if k.startswith(prefix) and k in own)


def _head_kwargs(spec: ModelSpec, state: Mapping[str, torch.Tensor]) -> dict[str, object]:
    """Builder arguments read from the checkpoint's shapes: Keypoint R-CNN's number of keypoints."""
    key = "roi_heads.keypoint_predictor.kps_score_lowres.weight"
    if spec.name.startswith("keypointrcnn") and key in state:
        return {"num_keypoints": int(state[key].shape[1])}
    return {}


def _fit_mask_predictor(module: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """A Mask R-CNN whose mask predictor was replaced apart from its box predictor: rebuild it at the file's size."""
    key = "roi_heads.mask_predictor.mask_fcn_logits.weight"
    heads = getattr(module, "roi_heads", None)
    if key not in state or getattr(heads, "mask_predictor", None) is None:
        return
    if heads.mask_predictor.mask_fcn_logits.weight.shape != state[key].shape:
        from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor

        conv = state["roi_heads.mask_predictor.conv5_mask.weight"]
        heads.mask_predictor = MaskRCNNPredictor(int(conv.shape[0]), int(conv.shape[1]), int(state[key].shape[0]))


_CLASS_KEYS = (
    "roi_heads.box_predictor.cls_score.weight",
    "head.classification_head.cls_logits.weight",
    "head.classification_head.module_list.0.weight",
    "head.classification_head.module_list.0.1.weight",
)


def file_class_count(spec: ModelSpec, state: Mapping[str, torch.Tensor]) -> int | None:
    """The number of classes (background included) the checkpoint's classifier was saved with, if it shows one.

    Read as torchvision lays the classifier out: the R-CNN box predictor and FCOS have one row per class, RetinaNet and
    SSD one per (anchor, class) at each location; the anchors per location come from the model built on `meta`."""
    key = next((k for k in _CLASS_KEYS if k in state), None)
    if key is None:
        return None
    rows = classifier_rows(spec.builder).get(key)
    if rows is None:
        return None
    per_class = rows // spec.num_classes
    return int(state[key].shape[0]) // per_class


@functools.lru_cache(maxsize=64)
def classifier_rows(builder: Callable[..., nn.Module]) -> dict[str, int]:
    """The rows of each classifier tensor (`_CLASS_KEYS`) of the model `builder` makes by default, built once per
    builder on the meta device (an SSD's build runs a forward pass to size its heads: 0.1-0.3 s each time)."""
    with torch.device("meta"):
        own = builder(weights=None, weights_backbone=None).state_dict()
    return {k: int(own[k].shape[0]) for k in _CLASS_KEYS if k in own}


def numbered_categories(n_classes: int) -> tuple[str, ...]:
    """Names for a checkpoint saved without them: `__background__`, then `class 1` ... `class N-1` (label ids)."""
    return ("__background__", *(f"{UNNAMED_CLASS} {i}" for i in range(1, n_classes)))


def checkpoint_categories(
    spec: ModelSpec, path: Path, state: Mapping[str, torch.Tensor], class_names: Sequence[str] | None = None
) -> tuple[tuple[str, ...], str]:
    """A checkpoint's class names and where they came from: given, its sidecar JSON, the model's own categories when
    its classifier has their count, else numbered (`class 1`...) from the classifier's size, as torchvision's
    fine-tuning tutorial saves a state dict and nothing else."""
    names = read_categories(path, class_names)
    if names is not None:
        return names, "given" if class_names is not None else "sidecar JSON"
    n_file = file_class_count(spec, state)
    if n_file is None or n_file == spec.num_classes:
        return spec.categories, f"{spec.name}'s own"
    return numbered_categories(n_file), f"none given: numbered from the checkpoint's {n_file - 1} classes"


def _check_classes(module: nn.Module, state: Mapping[str, torch.Tensor], n_names: int, source: str) -> None:
    """The number of classes read from the checkpoint's classifier must match the names it is given."""
    own = module.state_dict()
    key = next((k for k in _CLASS_KEYS if k in own and k in state), None)
    if key is None or own[key].shape == state[key].shape:
        return
    per_class = own[key].shape[0] // n_names  # anchors per location (1 for the R-CNN box predictor and FCOS)
    n_file = state[key].shape[0] // per_class
    raise WeightsError(
        f"{source} does not fit this model: shape mismatch in {key} {tuple(state[key].shape)} vs model "
        f"{tuple(own[key].shape)}: the checkpoint has {n_file} classes (background included), the class names "
        f"{n_names}. A fine-tuned checkpoint needs its class names (a sidecar JSON next to the file, or names given)."
    )


def _build_checkpoint(
    spec: ModelSpec,
    path: Path,
    categories: tuple[str, ...],
    state: Mapping[str, torch.Tensor],
    train: TrainingArgs | None = None,
) -> tuple[nn.Module, str]:
    """The module for a checkpoint file, built as torchvision built the model that saved it, and its build label."""
    decision = decide_build(spec, state, read_built_from(path), train, read_sidecar_weights(spec, path))
    given = read_builder_kwargs(path)
    from_args = {}  # what the reference script passed its builder beyond weights and classes
    if train is not None and train.model == spec.name and train.rpn_score_thresh is not None:
        from_args["rpn_score_thresh"] = train.rpn_score_thresh
    from_args = {k: v for k, v in from_args.items() if k not in given}  # the sidecar has the last word
    kwargs = {"num_classes": len(categories), **_head_kwargs(spec, state), **from_args, **given}
    module = _build_with(spec, decision.built_from, path, kwargs, decision.weights)
    _check_builder_kwargs(spec, module, given, path)
    if decision.reason.startswith("reduced") and not _shapes_fit(module, state):
        full = _build_with(spec, "weights_backbone", path, kwargs)
        if _shapes_fit(full, state):
            module = full
            decision = CheckpointBuild(
                "weights_backbone",
                "from the state dict: full MobileNetV3 tail, which torchvision builds only with weights_backbone",
            )
    _fit_mask_predictor(module, state)
    _check_classes(module, state, len(categories), path.name)
    load_into(module, state, path.name)
    how = f"{decision.built_from} ({norm_layers(module)}) — {decision.reason}"
    for source, args in (("the training args", from_args), ("the sidecar JSON", given)):
        if args:
            how += f"; builder kwargs from {source}: " + ", ".join(f"{k}={v!r}" for k, v in sorted(args.items()))
    return module, how


def build_checkpoint(
    spec: ModelSpec, path: Path, class_names: Sequence[str] | None = None
) -> tuple[nn.Module, tuple[str, ...], str]:
    """The module of a checkpoint file, built as torchvision built the model that saved it and loaded strictly; its
    class names; and how it was built (recorded as the run's `weights_build`)."""
    state, train = load_checkpoint(path)
    categories, named = checkpoint_categories(spec, path, state, class_names)
    module, how = _build_checkpoint(spec, path, categories, state, train)
    return module, categories, f"{how}; class names: {named}"


def check_checkpoint(spec: ModelSpec, path: Path, class_names: Sequence[str] | None = None) -> None:
    """WeightsError now for a file a worker could not build: the same build as `build_checkpoint`, on the meta
    device (no memory for parameters, no computation)."""
    state, train = load_checkpoint(path)
    categories, _ = checkpoint_categories(spec, path, state, class_names)
    # copying into meta parameters is a no-op, and torch says so per tensor
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _build_checkpoint(spec, path, categories, state, train)
