"""Registry and metadata; torchvision-style build tests (untrained, small inputs)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from core.config import HEADLINE_MODELS
from core.inference.models import (
    UnknownModelError,
    get_model,
    label_name,
    list_models,
    model_names,
    parse_model_list,
    short_name,
)

ALL_DETECTORS = [
    "fasterrcnn_resnet50_fpn",
    "ssdlite320_mobilenet_v3_large",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "retinanet_resnet50_fpn",
    "retinanet_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
    "ssd300_vgg16",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
    "keypointrcnn_resnet50_fpn",
]


def test_headline_pair_comes_first():
    assert tuple(model_names()[:2]) == HEADLINE_MODELS


@pytest.mark.parametrize("name", ALL_DETECTORS)
def test_every_torchvision_detector_is_registered_with_its_weights_metadata(name):
    spec = get_model(name)
    meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    assert spec.categories == tuple(meta["categories"])
    assert spec.box_map == meta["_metrics"]["COCO-val2017"]["box_map"]
    assert spec.gflops == meta["_ops"] and spec.params == meta["num_params"] and spec.file_size_mb == meta["_file_size"]
    assert spec.weights_file.endswith(".pth") and spec.default_weights.url.endswith("/" + spec.weights_file)


def test_registry_is_exactly_the_torchvision_detection_zoo():
    assert sorted(model_names()) == sorted(torchvision.models.list_models(module=torchvision.models.detection))


@pytest.mark.parametrize(
    ("label_id", "name"),
    [(1, "person"), (4, "motorcycle"), (12, "N/A"), (17, "cat"), (18, "dog"), (47, "cup"), (90, "toothbrush")],
)
def test_labels_index_the_91_entry_coco_list_not_an_80_name_file(label_id, name):
    categories = get_model("fasterrcnn_resnet50_fpn").categories
    assert len(categories) == 91
    assert label_name(categories, label_id) == name


def test_label_outside_the_list_gets_a_placeholder():
    assert label_name(("__background__", "a"), 5) == "class 5"


def test_published_figures_tell_the_pair_apart():
    frcnn, ssd = get_model(HEADLINE_MODELS[0]), get_model(HEADLINE_MODELS[1])
    assert frcnn.box_map > ssd.box_map and frcnn.gflops > 100 * ssd.gflops


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ssd300_vgg16", ["ssd300_vgg16"]),
        (" fcos_resnet50_fpn , ssd300_vgg16,fcos_resnet50_fpn", ["fcos_resnet50_fpn", "ssd300_vgg16"]),
    ],
)
def test_parse_model_list(text, expected):
    assert parse_model_list(text) == expected


@pytest.mark.parametrize(
    ("text", "phrase"), [("fasterrcnn", "Did you mean"), ("", "no model"), ("yolo", "unknown model")]
)
def test_unknown_models_are_refused_with_a_hint(text, phrase):
    with pytest.raises(UnknownModelError, match=phrase):
        parse_model_list(text)


FAST_BUILDS = {"ssdlite320_mobilenet_v3_large", "fasterrcnn_mobilenet_v3_large_320_fpn"}


@pytest.mark.parametrize(
    "spec",
    [pytest.param(s, id=s.name, marks=() if s.name in FAST_BUILDS else (pytest.mark.slow,)) for s in list_models()],
)
def test_untrained_build_runs_on_a_small_input(spec):
    torch.manual_seed(0)
    model = spec.builder(weights=None, weights_backbone=None, num_classes=spec.num_classes).eval()
    with torch.inference_mode():
        (out,) = model([torch.rand(3, 64, 80)])
    assert set(out) >= {"boxes", "scores", "labels"}
    assert out["boxes"].shape[1:] == (4,) and len(out["scores"]) == len(out["labels"]) == len(out["boxes"])
    if len(out["boxes"]):
        assert float(out["boxes"][:, 2].max()) <= 80 + 1e-3 and float(out["boxes"][:, 3].max()) <= 64 + 1e-3


@pytest.mark.parametrize(
    ("name", "short"),
    [
        ("ssdlite320_mobilenet_v3_large", "SSDLite320 MNv3-L"),
        ("fasterrcnn_resnet50_fpn", "Faster R-CNN R50-FPN"),
        ("fasterrcnn_resnet50_fpn_v2", "Faster R-CNN R50-FPN v2"),
        ("fasterrcnn_mobilenet_v3_large_320_fpn", "Faster R-CNN MNv3-L-320-FPN"),
        ("ssd300_vgg16", "SSD300 VGG16"),
        ("fasterrcnn_resnet50_fpn (untrained, fp16)", "Faster R-CNN R50-FPN (untrained, fp16)"),  # variant label
        ("my_detector", "my_detector"),  # not a torchvision family: unchanged
    ],
)
def test_short_name_by_rule(name, short):
    assert short_name(name) == short


def test_short_names_tell_every_registered_detector_apart_and_are_shorter():
    shorts = [spec.short_name for spec in list_models()]
    assert len(set(shorts)) == len(shorts)
    assert all(len(spec.short_name) <= len(spec.name) for spec in list_models())
    assert max(len(s) for s in shorts) <= 28
