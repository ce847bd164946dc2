"""Timed inference: timings, warm-up, batching, failed images, boxes in original pixels, threads, devices."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from core import engine
from core.devices import DeviceError, check_precision, configure_threads, physical_cores, resolve_device
from core.engine import DetectionResult, load_detector, run_detector
from core.images import load_image
from core.weights import BuiltModel

SMALL = "ssdlite320_mobilenet_v3_large"


def _photo(width: int, height: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    arr = (rng.random((height, width, 3)) * 255).astype(np.uint8)
    return load_image(_png_bytes(Image.fromarray(arr)), f"photo_{width}x{height}_{seed}.png")


def _png_bytes(img: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def small():
    return load_detector(SMALL, "untrained", "cpu")


class _Counting(torch.nn.Module):
    """Wraps a model and counts its calls."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, batch):
        self.calls += 1
        return self.inner(batch)


def test_timings_are_recorded_and_add_up(small):
    (result,) = run_detector(small, [_photo(96, 64)], warmup=1)
    assert result.ok and result.weights == "untrained" and result.device == "cpu"
    assert result.preprocess_ms > 0 and result.inference_ms > 0 and result.postprocess_ms > 0
    assert result.total_ms == pytest.approx(result.preprocess_ms + result.inference_ms + result.postprocess_ms)
    assert result.inference_ms > result.postprocess_ms


def test_warmup_calls_are_not_recorded(small):
    counting = engine.Detector(
        small.spec, _Counting(small.module), small.categories, small.weights, small.device, "fp32"
    )
    images = [_photo(64, 64, seed=i) for i in range(3)]
    results = run_detector(counting, images, warmup=2)
    assert len(results) == 3 and counting.module.calls == 5


@pytest.mark.parametrize(("batch_size", "expected"), [(1, [1, 1, 1]), (2, [2, 2, 1]), (4, [3, 3, 3])])
def test_batches_split_their_time_evenly(small, batch_size, expected):
    images = [_photo(64, 48, seed=i) for i in range(3)]
    results = run_detector(small, images, warmup=0, batch_size=batch_size)
    assert [r.batch_size for r in results] == expected
    if batch_size == 2:
        assert results[0].inference_ms == results[1].inference_ms != results[2].inference_ms


def test_batched_and_single_runs_find_the_same_boxes(small):
    images = [_photo(64, 48, seed=i) for i in range(2)]
    single = run_detector(small, images, warmup=0, batch_size=1)
    batched = run_detector(small, images, warmup=0, batch_size=2)
    for a, b in zip(single, batched, strict=True):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)


def test_boxes_are_in_original_image_pixels(small):
    wide = _photo(960, 240)  # SSDLite sees 320x320: boxes past x=320 prove they were scaled back
    (result,) = run_detector(small, [wide], warmup=0)
    assert len(result.boxes) > 0
    assert result.boxes[:, [0, 2]].max() <= 960 + 1e-3 and result.boxes[:, [1, 3]].max() <= 240 + 1e-3
    assert result.boxes[:, 2].max() > 320


def test_score_floor_is_applied(small):
    (result,) = run_detector(small, [_photo(64, 64)], warmup=0, score_floor=0.02)
    assert (result.scores >= 0.02).all()
    assert len(result.label_names) == len(result.labels)
    assert all(name == small.categories[i] for name, i in zip(result.label_names, result.labels, strict=True))


def test_a_failed_image_is_one_record_and_the_run_goes_on(small):
    images = [_photo(64, 64, 1), load_image(b"<html>nope</html>", "page.jpg"), _photo(64, 64, 2)]
    results = run_detector(small, images, warmup=0)
    assert [r.image_name for r in results] == [i.name for i in images]
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error and len(results[1].boxes) == 0 and np.isnan(results[1].total_ms)


def test_a_model_failure_is_recorded_per_image(small):
    class Broken(torch.nn.Module):
        def forward(self, batch):
            raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")

    broken = engine.Detector(small.spec, Broken(), small.categories, small.weights, small.device, "fp32")
    results = run_detector(broken, [_photo(32, 32, 1), _photo(32, 32, 2)], warmup=0)
    assert all(
        r.error.startswith("CUDA out of memory on cpu (Tried to allocate 2 GiB) with a batch of 1") for r in results
    )
    assert all("\n" not in r.error for r in results)


def test_threads_calling_one_model_get_the_serial_results(small):
    images = [_photo(80, 60, seed=i) for i in range(4)]
    serial = [run_detector(small, [img], warmup=0)[0] for img in images]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda img: run_detector(small, [img], warmup=0)[0], images * 2))
    for got, want in zip(parallel, serial * 2, strict=True):
        np.testing.assert_array_equal(got.labels, want.labels)
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got.boxes, want.boxes, rtol=1e-5, atol=1e-3)


@pytest.fixture
def fresh_registry(monkeypatch):
    """An empty detector cache for this test (the process's cache is left as it was)."""
    from collections import OrderedDict

    monkeypatch.setattr(engine, "_detectors", OrderedDict())
    monkeypatch.setattr(engine, "_key_locks", {})
    return engine._detectors


def test_one_detector_per_key_even_when_threads_ask_at_once(monkeypatch, fresh_registry):
    builds = []
    real = engine.build_model
    gate = threading.Barrier(4)

    def counting_build(*args, **kwargs):
        builds.append(1)
        return real(*args, **kwargs)

    def ask(_):
        gate.wait()
        return load_detector(SMALL, "untrained", "cpu")

    monkeypatch.setattr(engine, "build_model", counting_build)
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(ask, range(4)))
    assert len(builds) == 1 and all(d is got[0] for d in got)
    assert load_detector(SMALL, "untrained", "cpu", "fp32") is got[0]


def test_the_detector_cache_keeps_the_most_recently_used_up_to_its_bound(monkeypatch, fresh_registry, small):
    """One cache with one bound: a third detector drops the least recently used; asking for it again rebuilds it."""
    builds: list[str] = []

    def fake_build(spec, choice, **kwargs):
        builds.append(spec.name)
        return BuiltModel(module=small.module, categories=small.categories, weights="untrained")

    monkeypatch.setattr(engine, "MAX_LOADED_DETECTORS", 2)
    monkeypatch.setattr(engine, "build_model", fake_build)
    a = load_detector(SMALL, "untrained", "cpu")
    b = load_detector("retinanet_resnet50_fpn", "untrained", "cpu")
    assert load_detector(SMALL, "untrained", "cpu") is a  # used again: now the most recent
    load_detector("fcos_resnet50_fpn", "untrained", "cpu")  # over the bound: b (least recent) goes
    assert [k.model for k in fresh_registry] == [SMALL, "fcos_resnet50_fpn"]
    assert load_detector(SMALL, "untrained", "cpu") is a and builds.count(SMALL) == 1
    assert load_detector("retinanet_resnet50_fpn", "untrained", "cpu") is not b
    assert builds == [SMALL, "retinanet_resnet50_fpn", "fcos_resnet50_fpn", "retinanet_resnet50_fpn"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"boxes": np.zeros((2, 4), np.float32)}, "inconsistent"),
        (
            {
                "boxes": np.array([[5, 0, 1, 1]], np.float32),
                "scores": np.ones(1, np.float32),
                "labels": np.ones(1, np.int64),
                "label_names": ("a",),
            },
            "x1 <= x2",
        ),
        ({"error": "two\nlines"}, "one line"),
    ],
)
def test_detection_result_checks_its_invariants(kwargs, message):
    base = dict(image_id="i", image_name="n", width=1, height=1, model="m", weights="w", device="cpu", precision="fp32")
    with pytest.raises(ValueError, match=message):
        DetectionResult(**base, batch_size=1, **kwargs)


def test_auto_device_is_cpu_without_a_gpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type in (expected, "mps")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
@pytest.mark.parametrize(("device", "message"), [("cuda", "no CUDA GPU"), ("tpu", "unknown device")])
def test_unavailable_device_is_a_clear_error(device, message):
    with pytest.raises(DeviceError, match=message):
        resolve_device(device)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_needs_cuda(precision):
    with pytest.raises(DeviceError, match="needs a CUDA device"):
        check_precision(precision, torch.device("cpu"))


def test_threads_are_set_to_physical_cores(monkeypatch):
    monkeypatch.delenv("DETLENS_THREADS", raising=False)
    assert configure_threads() == physical_cores() == torch.get_num_threads()


@pytest.mark.needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_run_with_precision(precision):
    det = load_detector(SMALL, "untrained", "cuda", precision)
    (result,) = run_detector(det, [_photo(128, 96)], warmup=1)
    assert result.ok and result.device.startswith("cuda") and result.precision == precision
    assert result.inference_ms > 0


@pytest.mark.parametrize("batch_size", [1, 2])
def test_images_are_decoded_one_batch_at_a_time(small, batch_size):
    events = []

    def lazily():
        for i in range(4):
            events.append(f"decode {i}")
            yield _photo(48, 48, seed=i)

    run_detector(small, lazily(), warmup=1, batch_size=batch_size, on_result=lambda r: events.append("result"))
    # before image k is decoded, every image of the batches before k's has its result
    for k in range(4):
        done_before = events[: events.index(f"decode {k}")].count("result")
        assert done_before == (k // batch_size) * batch_size
