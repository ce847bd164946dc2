"""Checkpoints reproduce their source: a state dict saved from a model built the way torchvision builds it (tutorial
`weights="DEFAULT"` with a new box predictor, `weights_backbone` only, or from scratch) gives in DetLens exactly the
boxes, scores and labels the saving script gets.

The source models run torchvision's real builder code with `weights=`/`weights_backbone=`: only the weights' download
(`WeightsEnum.get_state_dict`) is replaced by a random-but-valid state dict, so nothing is downloaded. Norm statistics
are then perturbed (so FrozenBatchNorm2d vs BatchNorm2d and eps 0 vs 1e-5 change the output) and classifier biases set
so that every model detects something. R-CNN, RetinaNet and FCOS run at a 160-pixel short side (the same setting on
both sides) to keep a ResNet50 forward pass to seconds on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import inspect
import io
import json
import typing
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file
from torch import nn
from torchvision.models import WeightsEnum
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor
from torchvision.ops import FrozenBatchNorm2d

from core.inference import engine
from core.inference.checkpoint_files import training_args
from core.inference.models import get_model, model_names
from core.inference.weights import WeightsError, build_model, check_weights, parse_weights

CASES = ("weights", "weights_backbone", "scratch")
FAST = {("fasterrcnn_mobilenet_v3_large_320_fpn", c) for c in CASES} | {
    ("ssdlite320_mobilenet_v3_large", "weights_backbone")
}
TUTORIAL_NAMES = ["duck", "goose"]
_CLASSIFIERS = {  # the backbone weights' own models, for a valid fake state dict
    "ResNet50_Weights": torchvision.models.resnet50,
    "MobileNet_V3_Large_Weights": torchvision.models.mobilenet_v3_large,
    "VGG16_Weights": torchvision.models.vgg16,
}


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch):
    """torchvision's builders run with weights enums; their state dicts are random, seeded, and never downloaded."""

    def get_state_dict(self: WeightsEnum, *args: object, **kwargs: object) -> dict[str, torch.Tensor]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(7)
            for name in model_names():
                spec = get_model(name)
                if isinstance(self, spec.weights_enum):
                    return spec.builder(weights=None, weights_backbone=None).state_dict()
            return _CLASSIFIERS[type(self).__name__](weights=None).state_dict()

    monkeypatch.setattr(WeightsEnum, "get_state_dict", get_state_dict)
    yield
    engine._detectors.clear()  # tmp_path files: no detector outlives its test


def _backbone_weights(builder) -> WeightsEnum:
    """The enum of the builder's `weights_backbone` argument (e.g. ResNet50_Weights), its DEFAULT member."""
    annotation = inspect.signature(builder).parameters["weights_backbone"].annotation
    enum = next(a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, WeightsEnum))
    return enum.DEFAULT


def _source_model(name: str, case: str, **kwargs: object) -> tuple[nn.Module, list[str] | None]:
    """The model a training script saves, built by torchvision's own builder for `case` (with `kwargs`); class names
    if replaced."""
    spec = get_model(name)
    torch.manual_seed(11)
    if case == "weights":
        model = spec.builder(weights="DEFAULT", **kwargs)
    elif case == "weights_backbone":
        model = spec.builder(weights=None, weights_backbone=_backbone_weights(spec.builder), **kwargs)
    else:
        model = spec.builder(weights=None, weights_backbone=None, **kwargs)
    names = None
    heads = getattr(model, "roi_heads", None)
    if case == "weights" and heads is not None:  # the fine-tuning tutorial: a new box predictor for its classes
        names = TUTORIAL_NAMES
        heads.box_predictor = FastRCNNPredictor(heads.box_predictor.cls_score.in_features, len(names) + 1)
        if name == "maskrcnn_resnet50_fpn_v2":  # the tutorial replaces the mask predictor too (v1 keeps it: 91)
            heads.mask_predictor = MaskRCNNPredictor(256, 256, len(names) + 1)
    _perturb(model)
    return model.eval(), names


def _perturb(model: nn.Module) -> None:
    """Norm statistics off (0, 1), so eps and the norm type matter (kept near 1: no blow-up); biases so all detect."""
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d | FrozenBatchNorm2d):
                n = m.running_mean.numel()
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(1 + torch.randn(n, generator=gen) * 0.1)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
        heads = getattr(model, "roi_heads", None)
        if heads is not None:
            heads.box_predictor.cls_score.bias[1] += 8.0
        elif hasattr(model, "head") and hasattr(model.head.classification_head, "cls_logits"):
            model.head.classification_head.cls_logits.bias.zero_()


def _save(model: nn.Module, tmp_path: Path, names: list[str] | None, *, suffix: str = ".pth", wrap: bool = False):
    path = tmp_path / f"ckpt{suffix}"
    state = model.state_dict()
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({"model": state, "epoch": torch.tensor(3)} if wrap else state, path)
    if names is not None:
        path.with_suffix(".json").write_text(json.dumps({"categories": names}))
    return path


def _small(model: nn.Module) -> nn.Module:
    """Both sides alike: R-CNN/RetinaNet/FCOS at 160 px instead of 800, R-CNN 20 boxes an image, so tests take seconds."""
    if model.transform.min_size == (800,):
        model.transform.min_size, model.transform.max_size = (160,), 256
    if hasattr(model, "roi_heads"):  # Keypoint R-CNN's heatmaps cost seconds per box
        model.roi_heads.detections_per_img = 20
    return model


def _outputs(model: nn.Module) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(5)
    images = [torch.rand(3, 160, 200, generator=gen), torch.rand(3, 200, 160, generator=gen)]
    with torch.inference_mode():
        return [{k: o[k] for k in ("boxes", "scores", "labels")} for o in _small(model)(images)]


def _layers(model: nn.Module) -> list[tuple[str, str, float | None]]:
    return [(n, type(m).__name__, getattr(m, "eps", None)) for n, m in model.named_modules()]


def _assert_same_outputs(a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]) -> None:
    assert sum(len(o["boxes"]) for o in a) > 0, "the source model detects nothing: the comparison would prove nothing"
    for x, y in zip(a, b, strict=True):
        for k in ("boxes", "scores", "labels"):
            torch.testing.assert_close(y[k], x[k], atol=0, rtol=0)


def _sets_eps_with_weights(name: str) -> bool:
    """Whether torchvision's builder calls overwrite_eps after loading `weights` (read from its source)."""
    return "overwrite_eps(" in inspect.getsource(inspect.unwrap(get_model(name).builder))


def test_only_the_legacy_v1_builders_change_eps_with_weights():
    """The case a state dict cannot show (eps 0.0 vs 1e-5) concerns exactly these builders."""
    assert sorted(n for n in model_names() if _sets_eps_with_weights(n)) == [
        "fasterrcnn_resnet50_fpn",
        "keypointrcnn_resnet50_fpn",
        "maskrcnn_resnet50_fpn",
        "retinanet_resnet50_fpn",
    ]


def _params():
    for name in model_names():
        for case in CASES:
            marks = () if (name, case) in FAST else (pytest.mark.slow,)
            yield pytest.param(name, case, id=f"{name}-{case}", marks=marks)


@pytest.mark.parametrize(("name", "case"), list(_params()))
def test_checkpoint_gives_the_boxes_of_the_script_that_saved_it(tmp_path, name, case):
    source, names = _source_model(name, case)
    path = _save(source, tmp_path, names)
    if case == "weights_backbone" and _sets_eps_with_weights(name):  # eps 1e-5 vs 0.0: the user's sidecar says so
        path.with_suffix(".json").write_text(json.dumps({"built_from": "weights_backbone"}))
    check_weights(get_model(name), str(path))  # a job's check before queueing takes what the worker will build
    det = engine.load_detector(name, str(path), "cpu")
    assert _layers(det.module) == _layers(source)  # norm types and eps exactly as torchvision built them
    _assert_same_outputs(_outputs(source), _outputs(det.module))
    if names is not None:
        assert det.categories == ("__background__", *names)
    assert det.weights == path.name and det.weights_build


@pytest.mark.parametrize(
    ("name", "case", "suffix", "wrap"),
    [
        ("fasterrcnn_mobilenet_v3_large_320_fpn", "weights", ".safetensors", False),
        ("fasterrcnn_mobilenet_v3_large_320_fpn", "scratch", ".pth", True),
    ],
)
def test_safetensors_and_wrapped_checkpoints_reproduce_too(tmp_path, name, case, suffix, wrap):
    source, names = _source_model(name, case)
    path = _save(source, tmp_path, names, suffix=suffix, wrap=wrap)
    det = engine.load_detector(name, str(path), "cpu")
    _assert_same_outputs(_outputs(source), _outputs(det.module))


@pytest.mark.parametrize(
    ("name", "case", "built_from", "layers"),
    [
        ("fasterrcnn_mobilenet_v3_large_320_fpn", "weights", "weights", "FrozenBatchNorm2d eps 1e-05"),
        ("fasterrcnn_mobilenet_v3_large_320_fpn", "scratch", "scratch", "BatchNorm2d eps 1e-05"),
        ("ssdlite320_mobilenet_v3_large", "weights_backbone", "weights_backbone", "BatchNorm2d eps 0.001"),
        ("ssdlite320_mobilenet_v3_large", "scratch", "weights", "BatchNorm2d eps 0.001"),
    ],
)
def test_the_build_is_decided_from_the_state_dict_and_recorded(tmp_path, name, case, built_from, layers):
    source, names = _source_model(name, case)
    built = build_model(get_model(name), parse_weights(_save(source, tmp_path, names)))
    assert built.weights_build.startswith(f"{built_from} ({layers})")
    assert "from the state dict" in built.weights_build or "same layers" in built.weights_build


def test_the_wrong_layers_would_change_the_boxes(tmp_path):
    """The equality above is not vacuous: the same file built as before (nn.BatchNorm2d for a frozen-norm model)
    gives other boxes, so the norm type decides the output to the last digit."""
    source, names = _source_model("fasterrcnn_mobilenet_v3_large_320_fpn", "weights")
    path = _save(source, tmp_path, names)
    path.with_suffix(".json").write_text(json.dumps({"categories": names, "built_from": "scratch"}))
    det = engine.load_detector("fasterrcnn_mobilenet_v3_large_320_fpn", str(path), "cpu")
    assert "sidecar" in det.weights_build and det.weights_build.startswith("scratch (BatchNorm2d")
    expected, got = _outputs(source), _outputs(det.module)
    assert any(not torch.equal(e["boxes"], g["boxes"]) or not torch.equal(e["scores"], g["scores"])
               for e, g in zip(expected, got, strict=True))  # fmt: skip


@pytest.mark.slow
def test_eps_override_in_the_sidecar_builds_weights_backbone(tmp_path):
    """A legacy v1 model fine-tuned from weights_backbone has FrozenBatchNorm2d eps 1e-5, which no state dict shows:
    the sidecar's built_from says so, and the boxes are then the script's (the weights=DEFAULT guess would differ)."""
    name = "fasterrcnn_resnet50_fpn"
    source, _ = _source_model(name, "weights_backbone")
    path = _save(source, tmp_path, None)
    guessed = engine.load_detector(name, str(path), "cpu")
    assert {m.eps for m in guessed.module.modules() if isinstance(m, FrozenBatchNorm2d)} == {0.0}
    expected = _outputs(source)
    assert any(not torch.equal(e["scores"], g["scores"]) for e, g in zip(expected, _outputs(guessed.module)))
    path.with_suffix(".json").write_text(json.dumps({"built_from": "weights_backbone"}))
    engine._detectors.clear()  # tmp_path files: no detector outlives its test
    told = engine.load_detector(name, str(path), "cpu")
    assert told.categories == get_model(name).categories
    _assert_same_outputs(expected, _outputs(told.module))


@pytest.mark.parametrize("value", ["imagenet", "", 1])
def test_an_unknown_built_from_is_a_clear_error(tmp_path, value):
    source, names = _source_model("ssdlite320_mobilenet_v3_large", "scratch")
    path = _save(source, tmp_path, names)
    path.with_suffix(".json").write_text(json.dumps({"built_from": value}))
    with pytest.raises(WeightsError, match="built_from must be one of weights, weights_backbone, scratch"):
        build_model(get_model("ssdlite320_mobilenet_v3_large"), parse_weights(path))


def test_class_count_is_read_from_the_predictor_and_checked_against_the_names(tmp_path):
    source, names = _source_model("fasterrcnn_mobilenet_v3_large_320_fpn", "weights")
    path = _save(source, tmp_path, names)
    path.with_suffix(".json").write_text(json.dumps({"categories": ["duck", "goose", "swan"]}))
    with pytest.raises(WeightsError, match=r"the checkpoint has 3 classes \(background included\), the class names 4"):
        build_model(get_model("fasterrcnn_mobilenet_v3_large_320_fpn"), parse_weights(path))


def test_the_run_records_how_each_checkpoint_was_built(tmp_path):
    from core.execution.runner import RunSettings, run
    from core.images import ImageSource

    name = "fasterrcnn_mobilenet_v3_large_320_fpn"
    source, names = _source_model(name, "weights")
    path = _save(source, tmp_path, names)
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), "gray").save(buf, format="PNG")
    out = run([ImageSource.from_bytes("grey.png", buf.getvalue())], RunSettings([name], str(path), device="cpu"))
    build = out.info.settings["weights_build"][name]
    assert build.startswith("weights (FrozenBatchNorm2d eps 1e-05) — from the state dict: no num_batches_tracked")


def _reference_args(model: str, **given: object) -> argparse.Namespace:
    """The command line torchvision's references/detection/train.py keeps in its checkpoints (its parser's defaults)."""
    defaults = {"data_path": "/data/coco", "dataset": "coco", "model": model, "device": "cuda", "batch_size": 2,
                "epochs": 26, "lr": 0.02, "rpn_score_thresh": None, "trainable_backbone_layers": None,
                "data_augmentation": "hflip", "weights": None, "weights_backbone": None, "amp": False}  # fmt: skip
    return argparse.Namespace(**(defaults | given))


def _reference_save(model: nn.Module, tmp_path: Path, args: argparse.Namespace) -> Path:
    """As the reference script saves: the state dict under "model" beside optimizer, lr scheduler, args and epoch."""
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.02, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[16, 22], gamma=0.1)
    path = tmp_path / "model_25.pth"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "lr_scheduler": scheduler.state_dict(), "args": args, "epoch": 25}, path)  # fmt: skip
    return path


@pytest.mark.slow
def test_a_reference_script_checkpoint_is_built_as_its_saved_args_say(tmp_path):
    """`train.py --model fasterrcnn_resnet50_fpn --weights-backbone ResNet50_Weights.IMAGENET1K_V1
    --rpn-score-thresh 0.5`, no sidecar: its args say the build (FrozenBatchNorm2d eps 1e-5, which a state dict alone
    cannot show) and the RPN threshold, and DetLens gives the script's boxes to the last digit."""
    name = "fasterrcnn_resnet50_fpn"
    source, _ = _source_model(name, "weights_backbone")
    unfiltered = _outputs(source)
    source.rpn.score_thresh = 0.5  # what get_model(..., rpn_score_thresh=0.5) builds
    expected = _outputs(source)
    assert any(len(a["boxes"]) != len(b["boxes"]) for a, b in zip(expected, unfiltered, strict=True))  # it matters
    args = _reference_args(name, weights_backbone="ResNet50_Weights.IMAGENET1K_V1", rpn_score_thresh=0.5)
    det = engine.load_detector(name, str(_reference_save(source, tmp_path, args)), "cpu")
    assert _layers(det.module) == _layers(source) and det.module.rpn.score_thresh == 0.5
    _assert_same_outputs(expected, _outputs(det.module))
    assert det.weights_build.startswith("weights_backbone (FrozenBatchNorm2d eps 1e-05)")
    assert "training args: --weights-backbone ResNet50_Weights.IMAGENET1K_V1" in det.weights_build
    assert "builder kwargs from the training args: rpn_score_thresh=0.5" in det.weights_build


@pytest.mark.parametrize(
    ("args", "built_from", "said", "thresh"),
    [
        ({"weights": "FasterRCNN_ResNet50_FPN_Weights.COCO_V1"}, "weights",
         "--weights FasterRCNN_ResNet50_FPN_Weights.COCO_V1", None),
        ({"weights_backbone": "ResNet50_Weights.IMAGENET1K_V1", "rpn_score_thresh": 0.05}, "weights_backbone",
         "--weights-backbone ResNet50_Weights.IMAGENET1K_V1", 0.05),
        ({}, "scratch", "no --weights, no --weights-backbone", None),
        ({"model": "retinanet_resnet50_fpn", "rpn_score_thresh": 0.3}, "scratch", "no --weights, no --weights-backbone",
         None),  # the script passes rpn_score_thresh to R-CNN models only
    ],
)  # fmt: skip
def test_reference_script_args_are_read_as_the_script_builds(args, built_from, said, thresh):
    namespace = _reference_args(str(args.pop("model", "fasterrcnn_resnet50_fpn")), **args)
    for form in (namespace, vars(namespace)):  # a Namespace, or the same as a dict
        train = training_args(form)
        assert train is not None
        assert (train.built_from, train.said, train.rpn_score_thresh) == (built_from, said, thresh)


@pytest.mark.parametrize(
    ("args", "built_from"),
    [
        (argparse.Namespace(model="maskrcnn_resnet50_fpn", pretrained=True), "weights"),
        (argparse.Namespace(model="maskrcnn_resnet50_fpn", pretrained=False), "weights_backbone"),
        (argparse.Namespace(model="maskrcnn_resnet50_fpn", lr=0.02), None),
    ],
)
def test_older_reference_args_say_pretrained(args, built_from):
    """Before the weights API the script passed `pretrained=`, and the builders loaded the ImageNet backbone anyway."""
    assert training_args(args).built_from == built_from


@pytest.mark.parametrize("args", [None, argparse.Namespace(lr=0.02), {"model": 3}, "fasterrcnn_resnet50_fpn"])
def test_args_without_a_model_name_say_nothing(args):
    assert training_args(args) is None


def test_args_for_another_model_are_not_used(tmp_path):
    name = "fasterrcnn_mobilenet_v3_large_320_fpn"
    source, names = _source_model(name, "scratch")
    args = _reference_args("fasterrcnn_resnet50_fpn", weights="DEFAULT", rpn_score_thresh=0.9)
    built = build_model(get_model(name), parse_weights(_reference_save(source, tmp_path, args)))
    assert built.weights_build.startswith("scratch (BatchNorm2d eps 1e-05) — from the state dict")
    assert built.module.rpn.score_thresh == source.rpn.score_thresh


def test_builder_arguments_in_the_sidecar_reproduce_a_model_built_with_them(tmp_path):
    """`fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, min_size=256,
    box_score_thresh=0.3)`: no state dict holds those; the sidecar's builder_kwargs give them back."""
    name, given = "fasterrcnn_mobilenet_v3_large_320_fpn", {"min_size": 256, "box_score_thresh": 0.3}
    source, _ = _source_model(name, "scratch", **given)
    path = _save(source, tmp_path, None)
    plain = build_model(get_model(name), parse_weights(path)).module
    assert any(not torch.equal(a["boxes"], b["boxes"]) for a, b in zip(_outputs(source), _outputs(plain), strict=True))
    path.with_suffix(".json").write_text(json.dumps({"builder_kwargs": given}))
    check_weights(get_model(name), str(path))
    built = build_model(get_model(name), parse_weights(path))
    _assert_same_outputs(_outputs(source), _outputs(built.module))
    assert built.weights_build.endswith(
        "builder kwargs from the sidecar JSON: box_score_thresh=0.3, min_size=256; class names: "
        "fasterrcnn_mobilenet_v3_large_320_fpn's own"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 3}, "builder_kwargs may not set num_classes"),
        ({"weights": "DEFAULT", "progress": False}, "builder_kwargs may not set progress, weights"),
        ({"box_score_thres": 0.3}, "builder_kwargs box_score_thres not taken by .* FasterRCNN .*ignore it silently"),
        ([0.3], "builder_kwargs must be an object"),
    ],
)
def test_wrong_builder_arguments_are_a_clear_error_before_a_job_is_queued(tmp_path, kwargs, message):
    name = "fasterrcnn_mobilenet_v3_large_320_fpn"
    source, _ = _source_model(name, "scratch")
    path = _save(source, tmp_path, None)
    path.with_suffix(".json").write_text(json.dumps({"builder_kwargs": kwargs}))
    for attempt in (lambda: check_weights(get_model(name), str(path)),
                    lambda: build_model(get_model(name), parse_weights(path))):  # fmt: skip
        with pytest.raises(WeightsError, match=message):
            attempt()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("weights", "eps"),
    [
        ("KeypointRCNN_ResNet50_FPN_Weights.COCO_LEGACY", 1e-5),  # torchvision sets eps 0.0 after COCO_V1 only
        ("KeypointRCNN_ResNet50_FPN_Weights.COCO_V1", 0.0),
        ("DEFAULT", 0.0),
    ],
)
def test_the_weights_named_in_the_training_args_decide_the_eps(tmp_path, weights, eps):
    name = "keypointrcnn_resnet50_fpn"
    torch.manual_seed(11)
    source = get_model(name).builder(weights=weights)
    path = _reference_save(source, tmp_path, _reference_args(name, weights=weights))
    built = build_model(get_model(name), parse_weights(path))
    assert _layers(built.module) == _layers(source)
    assert {m.eps for m in source.modules() if isinstance(m, FrozenBatchNorm2d)} == {eps}
    assert built.weights_build.startswith(f"weights (FrozenBatchNorm2d eps {eps:g})")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sidecar", "eps", "error"),
    [
        ({"weights": "COCO_LEGACY"}, 1e-5, None),
        ({"weights": "KeypointRCNN_ResNet50_FPN_Weights.COCO_LEGACY", "built_from": "weights"}, 1e-5, None),
        ({"weights": "DEFAULT"}, 0.0, None),
        ({"weights": "COCO_V2"}, None, "weights 'COCO_V2' are not keypointrcnn_resnet50_fpn's: one of DEFAULT"),
        ({"weights": "ResNet50_Weights.IMAGENET1K_V1"}, None, "are not keypointrcnn_resnet50_fpn's"),
        ({"weights": "COCO_V1", "built_from": "scratch"}, None, "names weights 'COCO_V1' but says built_from"),
    ],
)
def test_the_sidecar_can_name_the_weights_the_training_started_from(tmp_path, sidecar, eps, error):
    name = "keypointrcnn_resnet50_fpn"
    torch.manual_seed(11)
    source = get_model(name).builder(weights=sidecar["weights"].rpartition(".")[2] if error is None else None)
    path = _save(source, tmp_path, None)
    path.with_suffix(".json").write_text(json.dumps(sidecar))
    if error is not None:
        with pytest.raises(WeightsError, match=error):
            build_model(get_model(name), parse_weights(path))
        return
    built = build_model(get_model(name), parse_weights(path))
    assert _layers(built.module) == _layers(source)
    assert built.weights_build.startswith(f"weights (FrozenBatchNorm2d eps {eps:g}) — from the sidecar JSON's")
