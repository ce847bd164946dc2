"""Robustness: GPU out-of-memory (injected on the CPU, real under ``needs_cuda``) and concurrent runs and sessions."""

from __future__ import annotations

import io
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.execution import runner
from core.execution.runner import RunSettings
from core.images import ImageSource, load_image
from core.inference.engine import Detector, load_detector, run_detector
from core.records import DetectionResult
from tests.factories import finish_jobs

SMALL = "ssdlite320_mobilenet_v3_large"
APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
OOM_TEXT = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which 1.06 GiB is "
    "free. Of the allocated memory 75.2 GiB is allocated by PyTorch. If reserved but unallocated memory is large try "
    "setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation."
)


def _png(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _photo(width: int, height: int, seed: int = 0):
    return load_image(_png(width, height, seed), f"photo_{width}x{height}_{seed}.png")


@pytest.fixture(scope="module")
def small() -> Detector:
    return load_detector(SMALL, "untrained", "cpu")


class _OutOfMemoryOn(torch.nn.Module):
    """Wraps a detector's module and raises an out-of-memory error for batches holding an image of a chosen size.

    It keeps weak references to the inputs of the failed call, so a test can tell whether they were freed.
    """

    def __init__(self, inner: torch.nn.Module, sizes: set[tuple[int, int]], error: Exception) -> None:
        super().__init__()
        self.inner = inner
        self.sizes = sizes  # (width, height) of the images that "do not fit"
        self.error = error
        self.failed_inputs: list[weakref.ref] = []
        self.calls = 0

    def forward(self, batch: list[torch.Tensor]):
        self.calls += 1
        if any((t.shape[-1], t.shape[-2]) in self.sizes for t in batch):
            self.failed_inputs = [weakref.ref(t) for t in batch]
            raise self.error
        return self.inner(batch)


def _faulty(det: Detector, sizes: set[tuple[int, int]], error: Exception | None = None) -> Detector:
    """The same model behind a wrapper that runs out of memory on `sizes` (a separate Detector: not the CPU one)."""
    module = _OutOfMemoryOn(det.module, sizes, error or torch.cuda.OutOfMemoryError(OOM_TEXT))
    return Detector(det.spec, module, det.categories, det.weights, det.device, det.precision)


class _Counting:
    """A lazy fallback that counts how often it is asked for its detector."""

    def __init__(self, det: Detector) -> None:
        self.det = det
        self.calls = 0

    def __call__(self) -> Detector:
        self.calls += 1
        return self.det


def _same_detections(got: DetectionResult, want: DetectionResult) -> None:
    assert got.ok and want.ok and len(want.scores) > 0
    np.testing.assert_array_equal(got.labels, want.labels)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.boxes, want.boxes, rtol=1e-5, atol=1e-3)


# --- GPU out of memory ---------------------------------------------------------------------------------------------


def test_out_of_memory_without_retry_is_one_clear_line_and_the_run_goes_on(small):
    images = [_photo(80, 60, 0), _photo(96, 72, 1), _photo(80, 60, 2)]
    faulty = _faulty(small, {(96, 72)})
    results = run_detector(faulty, images, warmup=0)
    assert [r.ok for r in results] == [True, False, True]
    error = results[1].error
    assert error.startswith("CUDA out of memory on cpu (Tried to allocate 2.00 GiB) with a batch of 1 image(s)")
    assert "smaller batch size" in error and "\n" not in error and "PYTORCH_CUDA_ALLOC_CONF" not in error
    assert results[1].device == "cpu" and not results[1].notes and len(results[1].boxes) == 0
    plain = run_detector(small, [images[0], images[2]], warmup=0)
    _same_detections(results[0], plain[0])
    _same_detections(results[2], plain[1])


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (torch.cuda.OutOfMemoryError(OOM_TEXT), "CUDA"),
        (RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported"), "CUDA"),
        (RuntimeError("MPS backend out of memory (MPS allocated: 1.2 GB, other allocations: 3 GB)"), "MPS"),
    ],
    ids=["OutOfMemoryError", "RuntimeError-cuda", "RuntimeError-mps"],
)
def test_out_of_memory_is_retried_on_the_fallback_with_the_plain_cpu_boxes(small, error, kind):
    images = [_photo(80, 60, 0), _photo(96, 72, 1), _photo(80, 60, 2), _photo(72, 96, 3)]
    faulty = _faulty(small, {(96, 72)}, error)
    fallback = _Counting(small)
    results = run_detector(faulty, images, warmup=1, fallback=fallback)
    assert all(r.ok for r in results) and fallback.calls == 1
    retried = results[1]
    assert retried.device == "cpu" and retried.precision == "fp32"
    assert len(retried.notes) == 1 and retried.notes[0].startswith(f"retried on CPU after {kind} out of memory on cpu")
    assert [bool(r.notes) for r in results] == [False, True, False, False]  # the next images ran on `faulty` again
    _same_detections(retried, run_detector(small, [images[1]], warmup=0)[0])
    assert faulty.module.calls >= 4  # warm-up, 4 timed calls (1 failed)


def test_a_batch_that_runs_out_of_memory_is_retried_whole_and_the_next_batch_runs_on_the_gpu_again(small):
    images = [_photo(80, 60, 0), _photo(96, 72, 1), _photo(80, 60, 2), _photo(72, 96, 3)]
    faulty = _faulty(small, {(96, 72)})
    results = run_detector(faulty, images, warmup=0, batch_size=2, fallback=lambda: small)
    assert all(r.ok for r in results) and all(r.batch_size == 2 for r in results)
    assert [bool(r.notes) for r in results] == [True, True, False, False]
    plain = run_detector(small, images, warmup=0, batch_size=2)
    for got, want in zip(results, plain, strict=True):
        _same_detections(got, want)


def test_no_fallback_model_is_loaded_unless_memory_runs_out(small):
    fallback = _Counting(small)
    results = run_detector(small, [_photo(80, 60, 0), _photo(64, 48, 1)], warmup=0, fallback=fallback)
    assert all(r.ok and not r.notes for r in results) and fallback.calls == 0


def test_other_model_failures_are_not_retried(small):
    faulty = _faulty(small, {(96, 72)}, RuntimeError("expected 3 channels, got 4"))
    fallback = _Counting(small)
    (result,) = run_detector(faulty, [_photo(96, 72, 1)], warmup=0, fallback=fallback)
    assert result.error == "model failed: RuntimeError: expected 3 channels, got 4" and fallback.calls == 0


def test_a_fallback_that_cannot_load_keeps_the_out_of_memory_error(small):
    def broken() -> Detector:
        raise OSError("no space left on device")

    first, second = run_detector(_faulty(small, {(96, 72)}), [_photo(96, 72, 1), _photo(80, 60, 0)], fallback=broken)
    assert first.error.startswith("CUDA out of memory on cpu")
    assert first.error.endswith("the retry could not start: OSError: no space left on device")
    assert second.ok


def test_a_retry_that_fails_too_says_both(small):
    also_broken = _faulty(small, {(96, 72)}, RuntimeError("bad input"))
    (result,) = run_detector(_faulty(small, {(96, 72)}), [_photo(96, 72, 1)], warmup=0, fallback=also_broken)
    assert result.error.startswith("CUDA out of memory on cpu")
    assert result.error.endswith("; the CPU retry failed too: model failed: RuntimeError: bad input")
    assert "\n" not in result.error and result.notes[-1].startswith("retried on CPU after CUDA out of memory")


def test_the_batch_is_freed_before_the_cuda_cache_is_emptied(small, monkeypatch):
    faulty = _faulty(small, {(96, 72)})
    seen: list[list[bool]] = []

    def empty_cache() -> None:
        seen.append([ref() is None for ref in faulty.module.failed_inputs])

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", empty_cache)
    (result,) = run_detector(faulty, [_photo(96, 72, 1)], warmup=0)
    assert result.error.startswith("CUDA out of memory")
    assert seen == [[True]]  # emptied once, after the failed call's input tensor was gone


def test_the_runner_retries_on_a_cpu_detector_loaded_only_on_demand(monkeypatch, small):
    """RunSettings.oom_cpu_retry wires a lazy CPU fp32 fallback for a non-CPU detector (faked here on the CPU)."""
    asked: list[tuple] = []
    faulty = _faulty(small, {(96, 72)})
    faulty.device = torch.device("meta")  # what the runner sees: not the CPU, so a fallback is offered

    def fake_load(model, weights="default", device="auto", precision="fp32", **kwargs):
        asked.append((model, weights, device, precision))
        return faulty if device != "cpu" else small

    def run_on_cpu(detector, images, **kwargs):  # the engine on the CPU, with whatever fallback the runner gave
        cpu = Detector(detector.spec, detector.module, detector.categories, detector.weights, small.device, "fp32")
        return run_detector(cpu, images, **kwargs)

    monkeypatch.setattr(runner, "load_detector", fake_load)
    monkeypatch.setattr(runner, "resolve_device", lambda choice: torch.device("meta"))
    monkeypatch.setattr(runner, "environment", lambda device: {"device": str(device)})
    monkeypatch.setattr(runner, "run_detector", run_on_cpu)
    sources = [ImageSource.from_bytes(f"{w}x{h}.png", _png(w, h, i)) for i, (w, h) in enumerate([(80, 60), (96, 72)])]
    out = runner.run(sources, RunSettings([SMALL], "untrained", device="cuda", warmup=0))
    assert asked == [(SMALL, "untrained", "meta", "fp32"), (SMALL, "untrained", "cpu", "fp32")]
    assert list(out.inferences["error"]) == ["", ""] and list(out.inferences["device"]) == ["cpu", "cpu"]
    assert out.info.settings["oom_cpu_retry"] is True and bool(out.results[1].notes)

    asked.clear()
    out = runner.run(sources, RunSettings([SMALL], "untrained", device="cuda", warmup=0, oom_cpu_retry=False))
    assert asked == [(SMALL, "untrained", "meta", "fp32")]  # no CPU model without the setting
    assert out.inferences["error"].iloc[1].startswith("CUDA out of memory")


@pytest.mark.needs_cuda
@pytest.mark.parametrize("retry", [True, False])
def test_a_real_cuda_out_of_memory_is_retried_on_the_cpu(retry):
    """A real OOM: the process may use only what it holds plus 128 MiB; a 48 MP photo does not fit, small ones do."""
    big = Image.new("RGB", (8000, 6000), (120, 130, 140))  # 144 MB as uint8 on the GPU, a small PNG file
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    det = load_detector(SMALL, "untrained", "cuda", "fp32")
    sources = [
        ImageSource.from_bytes("small_a.png", _png(160, 120, 0)),
        ImageSource.from_bytes("huge.png", buf.getvalue()),
        ImageSource.from_bytes("small_b.png", _png(120, 160, 2)),
    ]
    run_detector(det, [sources[0].load()], warmup=1)  # allocator and kernels warm before the cap
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, (torch.cuda.memory_reserved(0) + 128 * 2**20) / total), 0)
    try:
        out = runner.run(sources, RunSettings([SMALL], "untrained", device="cuda", warmup=0, oom_cpu_retry=retry))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)
    small_a, huge, small_b = out.results
    assert small_a.ok and small_b.ok and small_a.device == small_b.device == "cuda:0" and not small_b.notes
    if retry:
        assert huge.ok and huge.device == "cpu" and huge.notes[-1].startswith("retried on CPU after CUDA out of memory")
    else:
        assert huge.error.startswith("CUDA out of memory on cuda:0") and huge.device == "cuda:0"
    assert torch.cuda.memory_allocated(0) < 512 * 2**20  # the failed batch's tensors were given back


# --- concurrency ---------------------------------------------------------------------------------------------------


@pytest.mark.slow  # a stress test: four whole runs at once (2-2.6 s)
def test_four_threads_running_whole_runs_at_once_get_the_serial_results_and_share_one_detector(monkeypatch):
    settings = RunSettings([SMALL], "untrained", device="cpu", warmup=1)
    lists = [[ImageSource.from_bytes(f"t{t}_{i}.png", _png(72, 56, 10 * t + i)) for i in range(3)] for t in range(4)]
    serial = {r.image_id: r for sources in lists for r in runner.run(sources, settings).results}

    loaded: list[Detector] = []
    real_load = runner.load_detector

    def recording_load(*args, **kwargs):
        det = real_load(*args, **kwargs)
        loaded.append(det)
        return det

    monkeypatch.setattr(runner, "load_detector", recording_load)
    gate = threading.Barrier(4)

    def one(sources):
        gate.wait()  # all four start together
        return runner.run(sources, settings)

    with ThreadPoolExecutor(max_workers=4) as pool:
        outputs = list(pool.map(one, lists))
    assert len(loaded) == 4 and all(d is loaded[0] for d in loaded)
    assert len({out.info.run_id for out in outputs}) == 4
    for sources, out in zip(lists, outputs, strict=True):
        assert [r.image_id for r in out.results] == [s.image_id for s in sources]
        assert len(out.inferences) == 3 and (out.inferences["error"] == "").all()
        for r in out.results:
            _same_detections(r, serial[r.image_id])


def test_the_run_page_passes_the_cpu_retry_setting_to_the_run(monkeypatch):
    """The checkbox next to the batch size (on by default) reaches the RunSettings that core.execution.runner executes."""
    from core.execution import runner

    seen: list[bool] = []
    real_execute = runner.execute

    def recording_execute(planned, **kwargs):
        seen.append(planned.settings.oom_cpu_retry)
        return real_execute(planned, **kwargs)

    monkeypatch.setattr(runner, "execute", recording_execute)
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("../pages/run.py").run()
    at.multiselect(key="run_models").set_value([SMALL]).run()
    at.selectbox(key=f"run_weights_{SMALL}").set_value("untrained").run()
    assert at.checkbox(key="run_oom_cpu_retry").value is True
    at.multiselect(key="run_gallery").set_value(["cat.jpg"]).run()
    finish_jobs(at.button(key="run_go").click().run())
    at.checkbox(key="run_oom_cpu_retry").uncheck().run()
    at.multiselect(key="run_gallery").set_value(["coffee.jpg"]).run()
    finish_jobs(at.button(key="run_go").click().run())
    assert not at.exception and seen == [True, False]
    assert len(at.session_state["detlens_inferences"]) == 2
