"""Weights: untrained, local files, refused pickles, fine-tuned class names, and the default path through a fake hub."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from core.inference.checkpoint_files import read_categories
from core.inference.checkpoints import file_class_count
from core.inference.models import get_model
from core.inference.weights import (
    WeightsError,
    WeightsUnavailableError,
    build_model,
    cached_weights_path,
    check_weights,
    ensure_weights_file,
    hub_checkpoint_dir,
    parse_weights,
)

SMALL = "ssdlite320_mobilenet_v3_large"


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """A private, empty torch hub cache."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv("DETLENS_OFFLINE", raising=False)
    return home


def _untrained(name: str = SMALL, num_classes: int | None = None) -> torch.nn.Module:
    spec = get_model(name)
    torch.manual_seed(123)
    return spec.builder(weights=None, weights_backbone=None, num_classes=num_classes or spec.num_classes).eval()


def _same_params(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class _Exploit:
    """A pickle payload that would create a marker file if it were ever fully unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize(
    ("value", "kind", "label"), [("default", "default", "default"), ("untrained", "untrained", "untrained")]
)
def test_parse_named_sources(value, kind, label):
    choice = parse_weights(value)
    assert (choice.kind, choice.label) == (kind, label)


def test_parse_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsError, match="weights file not found"):
        parse_weights(tmp_path / "nope.pth")


def test_untrained_is_seeded_and_labelled():
    spec = get_model(SMALL)
    a = build_model(spec, parse_weights("untrained"))
    b = build_model(spec, parse_weights("untrained"))
    assert a.weights == "untrained" and _same_params(a.module, b.module)
    assert not a.module.training


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_file_loads_the_saved_parameters(tmp_path, suffix):
    source = _untrained()
    path = tmp_path / f"mine{suffix}"
    if suffix == ".pth":
        torch.save({"model": source.state_dict()}, path)  # a training checkpoint wrapping the state dict
    else:
        save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    built = build_model(get_model(SMALL), parse_weights(path))
    assert built.weights == path.name
    assert _same_params(built.module, source)


def test_pickle_that_runs_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"weight": _Exploit(marker)}, path, _use_new_zipfile_serialization=True)
    with pytest.raises(WeightsError, match="refused"):
        build_model(get_model(SMALL), parse_weights(path))
    assert not marker.exists()


def test_fine_tuned_checkpoint_with_sidecar_names(tmp_path):
    model = _untrained(num_classes=3)
    path = tmp_path / "ducks.pth"
    torch.save(model.state_dict(), path)
    (tmp_path / "ducks.json").write_text(json.dumps({"categories": ["duck", "goose"]}))
    built = build_model(get_model(SMALL), parse_weights(path))
    assert built.categories == ("__background__", "duck", "goose")
    assert _same_params(built.module, model)


def test_fine_tuned_checkpoint_with_names_given(tmp_path):
    model = _untrained(num_classes=3)
    path = tmp_path / "ducks.pth"
    torch.save(model.state_dict(), path)
    built = build_model(get_model(SMALL), parse_weights(path), class_names=["__background__", "duck", "goose"])
    assert built.categories[1:] == ("duck", "goose")


def test_fine_tuned_checkpoint_without_names_runs_with_numbered_classes(tmp_path):
    """The tutorial saves a state dict and nothing else: the class count comes from its classifier."""
    model = _untrained(num_classes=3)
    path = tmp_path / "ducks.pth"
    torch.save(model.state_dict(), path)
    built = build_model(get_model(SMALL), parse_weights(path))
    assert built.categories == ("__background__", "class 1", "class 2")
    assert built.weights_build.endswith("class names: none given: numbered from the checkpoint's 2 classes")
    assert _same_params(built.module, model)
    check_weights(get_model(SMALL), str(path))  # a job's check before queueing agrees


@pytest.mark.parametrize(
    ("name", "n_classes"),
    [
        ("fasterrcnn_mobilenet_v3_large_320_fpn", 2),
        ("ssdlite320_mobilenet_v3_large", 5),
        pytest.param("retinanet_resnet50_fpn", 4, marks=pytest.mark.slow),  # large builds: the slow loop
        pytest.param("fcos_resnet50_fpn", 3, marks=pytest.mark.slow),
        pytest.param("ssd300_vgg16", 7, marks=pytest.mark.slow),
        pytest.param("keypointrcnn_resnet50_fpn", 2, marks=pytest.mark.slow),
        ("fasterrcnn_mobilenet_v3_large_320_fpn", 91),
    ],
)
def test_the_class_count_is_read_from_each_kind_of_classifier(name, n_classes):
    spec = get_model(name)
    state = spec.builder(weights=None, weights_backbone=None, num_classes=n_classes).state_dict()
    assert file_class_count(spec, state) == n_classes


def test_the_classifier_layout_is_built_once_per_model():
    """Reading a checkpoint's class count builds the model's layout on the meta device once, not per checkpoint."""
    real = get_model("ssdlite320_mobilenet_v3_large")
    builds = []

    def builder(**kwargs):
        builds.append(kwargs)
        return real.builder(**kwargs)

    spec = dataclasses.replace(real, builder=builder)
    for n_classes in (5, 7):
        state = real.builder(weights=None, weights_backbone=None, num_classes=n_classes).state_dict()
        assert file_class_count(spec, state) == n_classes
    assert builds == [{"weights": None, "weights_backbone": None}]


@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.", "model.", "model.module.", "net._orig_mod."])
def test_wrapped_state_dict_keys_load_as_the_bare_model(tmp_path, prefix):
    """DataParallel/DDP (`module.`), a torch.compile'd model (`_orig_mod.`) and a training wrapper's attribute
    (Lightning's `model.`) prefix every key; the model is the same."""
    model = _untrained(num_classes=3)
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {prefix + k: v for k, v in model.state_dict().items()}}, path)
    built = build_model(get_model(SMALL), parse_weights(path))
    assert _same_params(built.module, model)


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(_untrained("fasterrcnn_mobilenet_v3_large_320_fpn").state_dict(), path)
    with pytest.raises(WeightsError, match="does not fit this model"):
        build_model(get_model(SMALL), parse_weights(path))


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (["cat", "dog"], ("__background__", "cat", "dog")),
        (["__background__", "cat"], ("__background__", "cat")),
        ([{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}], ("__background__", "cat", "N/A", "dog")),
    ],
)
def test_sidecar_formats(tmp_path, payload, expected):
    path = tmp_path / "m.pth"
    (tmp_path / "m.pth.json").write_text(json.dumps(payload))
    assert read_categories(path) == expected


def test_default_weights_come_from_the_hub_cache(torch_home):
    spec = get_model(SMALL)
    source = _untrained()
    cache = cached_weights_path(spec)
    assert cache.parent == torch_home / "hub" / "checkpoints"
    cache.parent.mkdir(parents=True)
    torch.save(source.state_dict(), cache)
    built = build_model(spec, parse_weights("default"))
    assert built.weights == "default" and built.categories == spec.categories
    assert _same_params(built.module, source)


def test_hostile_pickle_in_the_hub_cache_is_refused(torch_home, tmp_path):
    spec = get_model(SMALL)
    marker = tmp_path / "pwned"
    cache = cached_weights_path(spec)
    cache.parent.mkdir(parents=True)
    torch.save({"weight": _Exploit(marker)}, cache)
    with pytest.raises(WeightsError, match="refused"):
        build_model(spec, parse_weights("default"))
    assert not marker.exists()


def test_missing_default_weights_fail_fast_naming_file_and_folder(torch_home):
    spec = get_model(SMALL)
    started = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as err:
        build_model(spec, parse_weights("default"))
    assert time.perf_counter() - started < 15
    message = str(err.value)
    assert spec.weights_file in message and str(hub_checkpoint_dir()) in message and "untrained" in message
    assert not any(hub_checkpoint_dir().glob(".part-*"))


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):  # noqa: N802 - http.server API
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        for i in range(0, len(self.body), 1 << 16):
            self.wfile.write(self.body[i : i + (1 << 16)])

    def log_message(self, *args):
        pass


@pytest.fixture
def weights_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def test_download_reports_progress_checks_the_hash_and_caches(torch_home, weights_server):
    body = bytes(range(256)) * 12_000  # ~3 MB, several chunks
    _Handler.body = body
    name = f"fake-{hashlib.sha256(body).hexdigest()[:8]}.pth"
    url = f"http://127.0.0.1:{weights_server.server_port}/{name}"
    seen = []
    path = ensure_weights_file(url, progress=lambda done, total: seen.append((done, total)))
    assert path == hub_checkpoint_dir() / name and path.read_bytes() == body
    assert seen[0] == (0, len(body)) and seen[-1] == (len(body), len(body)) and len(seen) > 2
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert ensure_weights_file(url, progress=lambda *a: pytest.fail("cached file downloaded again")) == path


def test_download_with_a_wrong_hash_leaves_nothing_behind(torch_home, weights_server):
    _Handler.body = b"not the weights you are looking for"
    url = f"http://127.0.0.1:{weights_server.server_port}/fake-deadbeef.pth"
    with pytest.raises(WeightsUnavailableError, match="hash check"):
        ensure_weights_file(url)
    assert list(hub_checkpoint_dir().iterdir()) == []
