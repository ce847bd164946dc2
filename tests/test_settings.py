"""Run settings are checked in one place (`RunSettings.resolve`): every path that starts a run refuses a bad setting
with the same one message, before anything is loaded or stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.cli import main
from core.config import GALLERY_DIR
from core.execution import jobs
from core.execution.cluster import ClusterError, RayOptions
from core.execution.distributed import check_ray_settings
from core.execution.runner import RunSettings, run
from core.images import ImageSource
from core.inference.devices import DeviceError
from core.inference.models import UnknownModelError
from core.inference.series import RuntimeRefusedError
from core.inference.weights import WeightsError
from core.store import Store

SMALL = "ssdlite320_mobilenet_v3_large"

# (case, settings keywords, the CLI's arguments for them, the error); the message is whatever resolve() says
BAD = [
    ("unknown model", {"models": ["no_such_model"]}, ["--models", "no_such_model"], UnknownModelError),
    ("no CUDA", {"device": "cuda"}, ["--device", "cuda"], DeviceError),
    ("unknown runtime", {"default_runtimes": ["tensorrt"]}, ["--runtime", "tensorrt"], RuntimeRefusedError),
    ("missing weights file", {"default_weights": "/no/such/file.pth"}, ["--weights", "/no/such/file.pth"],
     WeightsError),
]  # fmt: skip


def settings(**kw) -> RunSettings:
    base = {"models": [SMALL], "default_weights": "untrained", "device": "cpu", "warmup": 0}
    return RunSettings(**{**base, **kw})


def message(settings_: RunSettings, error: type[Exception]) -> str:
    with pytest.raises(error) as caught:
        settings_.resolve()
    return str(caught.value)


@pytest.mark.parametrize(("case", "kw", "argv", "error"), BAD, ids=[b[0] for b in BAD])
def test_every_path_refuses_a_bad_setting_with_the_same_message(case, kw, argv, error, tmp_path: Path, capsys):
    if case == "no CUDA":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    bad = settings(**kw)
    said = message(bad, error)
    assert said and "\n" not in said

    with pytest.raises(error) as caught:  # the dashboard and `submit` check before queueing
        jobs.check_settings(bad)
    assert str(caught.value) == said

    image = ImageSource.from_path(GALLERY_DIR / "cat.jpg").hashed()
    store = Store(tmp_path / "store")
    with pytest.raises(error) as caught:  # the runner (detect, the worker): before any image runs
        run([image], bad, store=store)
    assert str(caught.value) == said
    assert store.list_runs().empty  # nothing stored

    cli = ["--weights", "untrained", "--device", "cpu", *argv]
    for command in ("detect", "submit"):
        extra = ["--out", str(tmp_path / "out")] if command == "detect" else []
        code = main([command, str(GALLERY_DIR / "cat.jpg"), "--store", str(tmp_path / command), *cli, *extra])
        assert code == 2
        assert capsys.readouterr().err.strip() == f"error: {said}"


@pytest.mark.parametrize(
    ("kw", "error", "phrase"),
    [
        ({"models": ["no_such_model"]}, UnknownModelError, "no_such_model"),
        ({"default_weights": "/no/such/file.pth"}, WeightsError, "/no/such/file.pth"),
        ({"default_runtimes": ["onnxruntime"]}, ClusterError, "eager runtime only"),
    ],
    ids=["unknown model", "missing weights file", "runtime on Ray"],
)
def test_the_ray_path_refuses_through_the_same_check(kw, error, phrase):
    bad = settings(**kw)
    with pytest.raises(error) as caught:
        check_ray_settings(bad, RayOptions())
    assert phrase in str(caught.value)
    if error is not ClusterError:  # the same message as any other path
        assert str(caught.value) == message(bad, error)


def test_good_settings_resolve_to_the_device_series_and_weights():
    resolved = settings(default_runtimes=["eager", "onnxruntime"]).resolve()
    assert str(resolved.device) == "cpu"
    assert [(s.name, s.runtime) for s in resolved.series] == [(SMALL, "eager"), (f"{SMALL}@onnxruntime", "onnxruntime")]
    assert resolved.weights[SMALL].untrained
    assert settings().resolve(engine="ray").device is None  # each Ray actor has its own
