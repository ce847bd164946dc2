"""Timed inference: timings, warm-up, batching, failed images, boxes in original pixels, threads, devices."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.images import load_image
from core.inference import devices, engine
from core.inference.devices import DeviceError, check_precision, configure_threads, resolve_device
from core.inference.engine import load_detector, run_detector
from core.inference.weights import BuiltModel
from core.records import DetectionResult
from tests.factories import load_script

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


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [
        (True, True, torch.device("cuda", 0)),  # CUDA first
        (False, True, torch.device("mps")),  # then Apple MPS
        (False, False, torch.device("cpu")),  # then the CPU
    ],
)
def test_auto_device_picks_cuda_then_mps_then_the_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert resolve_device("auto") == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_auto_device_on_this_machine_without_cuda_is_mps_or_the_cpu():
    mps = torch.backends.mps.is_available()  # torch's own probe, not DetLens's
    assert resolve_device("auto") == (torch.device("mps") if mps else torch.device("cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
@pytest.mark.parametrize(("device", "message"), [("cuda", "no CUDA GPU"), ("tpu", "unknown device")])
def test_unavailable_device_is_a_clear_error(device, message):
    with pytest.raises(DeviceError, match=message):
        resolve_device(device)


@pytest.mark.parametrize(
    ("precision", "cpu_has", "refusal"),
    [
        ("bf16", {"fp32"}, r"bf16 autocast on the CPU needs native bf16 \(AVX512-BF16 or AMX\); this CPU runs fp32"),
        ("fp16", {"fp32", "bf16"}, r"fp16 autocast on the CPU needs native fp16 \(AVX512-FP16 or AMX-FP16\)"),
        ("bf16", {"fp32", "bf16"}, None),
        ("fp16", {"fp32", "fp16"}, None),
    ],
)
def test_half_precision_on_the_cpu_only_where_it_is_native(monkeypatch, precision, cpu_has, refusal):
    monkeypatch.setattr(devices, "cpu_native_precisions", lambda: frozenset(cpu_has))
    if refusal is None:
        assert check_precision(precision, torch.device("cpu")) == precision
    else:
        with pytest.raises(DeviceError, match=refusal):
            check_precision(precision, torch.device("cpu"))


def test_half_precision_is_refused_on_other_devices():
    with pytest.raises(DeviceError, match="needs a CUDA device or a CPU with native bf16; mps runs fp32"):
        check_precision("bf16", torch.device("mps"))


def _cpuinfo_flags() -> set[str]:
    """The CPU's feature flags as the Linux kernel lists them (a reference independent of torch's probes)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return next((set(line.split(":", 1)[1].split()) for line in text.splitlines() if line.startswith("flags")), set())


@pytest.mark.skipif(not _cpuinfo_flags(), reason="needs the x86 flags of /proc/cpuinfo")
def test_the_cpu_precisions_are_those_the_kernel_lists_for_this_cpu():
    flags = _cpuinfo_flags()
    expected = {"fp32"}
    if flags & {"avx512_bf16", "amx_tile"}:  # AVX512-BF16 or AMX
        expected.add("bf16")
    if flags & {"avx512_fp16", "amx_fp16"}:  # AVX512-FP16 or AMX-FP16
        expected.add("fp16")
    assert devices.cpu_native_precisions() == expected


def _cpuinfo_cores() -> int:
    """Physical cores as /proc/cpuinfo lists them: distinct (physical id, core id) pairs (hyper-threads share one)."""
    cores, package = set(), None
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "physical id":
            package = value
        elif key == "core id":
            cores.add((package, value))
    return len(cores)


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="reads /proc/cpuinfo (Linux)")
def test_threads_are_set_to_the_physical_cores_the_kernel_lists(monkeypatch, restore_threads):
    expected = _cpuinfo_cores()
    if not expected:
        pytest.skip("/proc/cpuinfo lists no core ids here")
    monkeypatch.delenv("DETLENS_THREADS", raising=False)
    torch.set_num_threads(expected + 1)  # something else first: configure_threads must set it
    assert configure_threads() == expected == torch.get_num_threads()


@pytest.mark.parametrize(("env", "given", "expected"), [("1", None, 1), ("3", None, 3), ("3", 2, 2)])
def test_threads_follow_detlens_threads_and_an_explicit_count(monkeypatch, restore_threads, env, given, expected):
    monkeypatch.setenv("DETLENS_THREADS", env)
    assert configure_threads(given) == expected == torch.get_num_threads()


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


# --- GPU paths: batches of same-size images, autocast, channels_last (core.inference.engine.infer_batch, scripts/bench_runtimes.py) -----------

FRCNN_SMALL = "fasterrcnn_mobilenet_v3_large_320_fpn"


def _decisive(name: str) -> torch.nn.Module:
    """An untrained, seeded detector whose class scores are decisive (a few boxes far above 0.5), so that a tie among
    near-uniform untrained scores cannot pick different boxes in two equally correct computations."""
    from core.inference.models import get_model
    from core.inference.weights import build_model, parse_weights

    torch.manual_seed(0)
    module = build_model(get_model(name), parse_weights("untrained")).module.eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        if hasattr(module, "roi_heads"):
            layer = module.roi_heads.box_predictor.cls_score
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 0.5)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen) * 2.0 - 2.0)
        else:
            for seq in module.head.classification_head.module_list:
                conv = seq[-1]
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * 2.0)
                conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen) * 2.0 - 4.0)
    return module


def _same_size(n: int, device: str = "cpu", size: tuple[int, int] = (96, 128)) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    return [torch.rand(3, *size, generator=gen).to(device) for _ in range(n)]


def _frame(out: dict[str, torch.Tensor]):
    import pandas as pd

    xyxy = out["boxes"].float().cpu().numpy()
    return pd.DataFrame({"label_id": out["labels"].cpu().numpy(), "score": out["scores"].float().cpu().numpy(),
                         "x1": xyxy[:, 0], "y1": xyxy[:, 1], "x2": xyxy[:, 2], "y2": xyxy[:, 3]})  # fmt: skip


@pytest.mark.parametrize("name", [SMALL, FRCNN_SMALL])
def test_a_batch_gives_the_boxes_of_one_image_at_a_time(name):
    module, images = _decisive(name), _same_size(3)
    batched, timing = engine.infer_batch(module, images)
    assert timing.batch_size == 3 and len(batched) == 3
    for image, got in zip(images, batched, strict=True):
        (alone,), _ = engine.infer_batch(module, [image])
        assert (alone["scores"] >= 0.5).sum() > 0  # decisive boxes to compare, not two empty lists
        assert torch.equal(got["labels"], alone["labels"])
        torch.testing.assert_close(got["boxes"], alone["boxes"], rtol=0, atol=1e-3)
        torch.testing.assert_close(got["scores"], alone["scores"], rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("images", "message"),
    [([], "at least one image"), ([torch.rand(3, 64, 64), torch.rand(3, 64, 80)], "one size; got 3x64x64, 3x64x80")],
)
def test_a_batch_holds_images_of_one_size(small, images, message):
    with pytest.raises(ValueError, match=message):
        engine.infer_batch(small.module, images)


def test_the_per_image_time_of_a_batch_is_its_share_and_says_so(small):
    _, timing = engine.infer_batch(small.module, _same_size(2))
    assert timing.batch_ms > 0 and timing.per_image_ms == timing.batch_ms / 2
    assert timing.per_image == "batch_ms / batch_size" and timing.images_per_s == pytest.approx(2e3 / timing.batch_ms)
    assert (timing.precision, timing.channels_last) == ("fp32", False)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_autocast_batches_are_refused_on_a_cpu_without_the_precision(monkeypatch, small, precision):
    monkeypatch.setattr(devices, "cpu_native_precisions", lambda: frozenset({"fp32"}))
    with pytest.raises(DeviceError, match=f"needs native {precision}"):
        engine.infer_batch(small.module, _same_size(2), precision=precision)


def test_a_bf16_batch_on_the_cpu_runs_under_autocast_and_keeps_the_boxes(monkeypatch):
    """bf16 where the CPU has it (forced here, so the test runs on any CPU: torch emulates it elsewhere)."""
    from core.compare.agreement import image_agreement

    monkeypatch.setattr(devices, "cpu_native_precisions", lambda: frozenset({"fp32", "bf16"}))
    module = _decisive(SMALL)
    images = _same_size(2)
    reference, _ = engine.infer_batch(module, images)
    half, timing = engine.infer_batch(module, images, precision="bf16")
    assert timing.precision == "bf16" and all(o["scores"].dtype == torch.bfloat16 for o in half)  # autocast was on
    agreements = [image_agreement(_frame(a), _frame(b), threshold=0.5) for a, b in zip(half, reference, strict=True)]
    assert all(a.n_reference > 0 for a in agreements)
    assert np.mean([a.f1 for a in agreements]) >= 0.9


def _channels_last_agrees(device: str, precision: str = "fp32") -> None:
    import copy

    from core.compare.agreement import image_agreement

    module = _decisive(SMALL).to(device)
    twin = copy.deepcopy(module)
    images = _same_size(4, device)
    contiguous, t1 = engine.infer_batch(module, images, precision=precision)
    nhwc, t2 = engine.infer_batch(twin, images, precision=precision, channels_last=True)
    assert not t1.channels_last and t2.channels_last and engine.is_channels_last(twin)
    assert not engine.is_channels_last(module)
    agreements = [image_agreement(_frame(a), _frame(b), threshold=0.5) for a, b in zip(nhwc, contiguous, strict=True)]
    assert all(a.n_reference > 0 for a in agreements)
    if precision == "fp32":  # the same computation in another memory layout: the same boxes
        assert all(a.f1 == 1.0 and a.mean_iou >= 0.99 and a.max_score_diff <= 0.01 for a in agreements)
    else:  # fp16 kernels of either layout round differently: the criterion of the other autocast tests
        assert np.mean([a.f1 for a in agreements]) >= 0.9


def test_channels_last_keeps_the_boxes_on_the_cpu():
    _channels_last_agrees("cpu")


@pytest.mark.slow  # a benchmark run end to end: every configuration, timed
def test_gpu_batch_bench_measures_every_configuration_against_the_seed_loop(monkeypatch, tmp_path):
    bench = load_script("bench_runtimes")

    monkeypatch.setattr(devices, "cpu_native_precisions", lambda: frozenset({"fp32", "bf16"}))

    ckpt = tmp_path / "decisive.pth"
    torch.save(_decisive(SMALL).state_dict(), ckpt)
    seed, rows = bench.gpu_batch_table(
        SMALL, str(ckpt), "cpu", [1, 2], ["fp32", "fp16"], channels_last=True, images=4, size=64, warmup=0, rounds=1
    )
    assert seed["boxes"] > 0 and seed["images_per_s"] == pytest.approx(1e3 / seed["ms_per_image"])
    refused = [r for r in rows if "refused" in r]
    assert [r["config"] for r in refused] == ["fp16 (every batch)"] and "needs native fp16" in refused[0]["refused"]
    measured = [r for r in rows if "refused" not in r]
    assert [(r["batch"], r["channels_last"]) for r in measured] == [(1, False), (2, False), (1, True), (2, True)]
    for r in measured:
        assert r["images"] == 4 and r["speedup"] == pytest.approx(r["images_per_s"] / seed["images_per_s"])
        assert r["ms_per_image"] == pytest.approx(1e3 / r["images_per_s"])
        assert r["mean_f1"] == 1.0  # fp32 batches and channels_last give the seed loop's boxes


@pytest.mark.parametrize(
    ("cpu_has", "bf16_line"),
    [({"fp32"}, "bf16 (every batch)"), pytest.param({"fp32", "bf16"}, "batch 2 bf16", marks=pytest.mark.slow)],
)
def test_gpu_batch_bench_prints_a_row_per_configuration(monkeypatch, capsys, cpu_has, bf16_line):
    bench = load_script("bench_runtimes")

    monkeypatch.setattr(devices, "cpu_native_precisions", lambda: frozenset(cpu_has))
    argv = ["--gpu-batch", "1,2", "--images", "2", "--size", "48", "--rounds", "1", "--warmup", "0", "--device", "cpu",
            "--precision", "fp32,bf16"]  # fmt: skip
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "seed loop (1 image per call, fp32, contiguous, eager)" in out
    assert "batch 1 fp32 contiguous eager" in out and "batch 2 fp32 contiguous eager" in out
    assert bf16_line in out and "ms/image: batch time / batch size" in out


@pytest.mark.needs_cuda
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_autocast_batches_agree_with_fp32(precision):
    from core.compare.agreement import image_agreement

    module, images = _decisive(SMALL).cuda(), _same_size(4, "cuda")
    reference, _ = engine.infer_batch(module, images)
    half, timing = engine.infer_batch(module, images, precision=precision)
    assert timing.precision == precision and timing.batch_size == 4
    agreements = [image_agreement(_frame(a), _frame(b), threshold=0.5) for a, b in zip(half, reference, strict=True)]
    assert all(a.n_reference > 0 for a in agreements)
    assert np.mean([a.f1 for a in agreements]) >= 0.9


@pytest.mark.needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_channels_last_equals_contiguous(precision):
    _channels_last_agrees("cuda", precision)


@pytest.mark.needs_cuda
def test_cuda_gpu_batch_bench_with_amp_channels_last_and_compile(tmp_path):
    bench = load_script("bench_runtimes")

    ckpt = tmp_path / "decisive.pth"
    torch.save(_decisive(SMALL).state_dict(), ckpt)
    seed, rows = bench.gpu_batch_table(SMALL, str(ckpt), "cuda", [1, 4], ["fp32", "fp16", "bf16"], channels_last=True,
                                       compile_=True, images=8, size=256, warmup=1, rounds=1)  # fmt: skip
    assert seed["boxes"] > 0 and not [r for r in rows if "refused" in r]
    assert len(rows) == 3 * 2 * 2 * 2
    for r in rows:
        assert r["images_per_s"] > 0 and r["mean_f1"] >= 0.9, r
