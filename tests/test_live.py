"""core.execution.live: frames dropped, not queued, when a series is slower than the source; fps, latency and the rolling
disagreement. Fake detectors advance a fake clock: no model, no sleep, the same result on any machine."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from core.execution.live import LiveComparison, LiveSeries
from core.images.video import VideoFrame
from core.records import DetectionResult

IMAGE = Image.new("RGB", (16, 16))


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_detector(clock: FakeClock, seconds: float, boxes_for=lambda frame: []):
    """A detector whose call takes `seconds` of the fake clock; boxes_for(frame) -> [(label, x1, y1, x2, y2)]."""

    def detect(frame: VideoFrame) -> DetectionResult:
        clock.now += seconds
        found = boxes_for(frame)
        return DetectionResult(
            "", f"f{frame.index}", 16, 16, "fake", "untrained", "cpu", "fp32", 1,
            boxes=np.array([b[1:] for b in found], np.float32).reshape(-1, 4),
            scores=np.full(len(found), 0.9, np.float32), labels=np.ones(len(found), np.int64),
            label_names=tuple(b[0] for b in found),
            preprocess_ms=0.0, inference_ms=seconds * 1e3, postprocess_ms=0.0,
        )  # fmt: skip

    return detect


def frames(n: int, fps: float) -> list[VideoFrame]:
    return [VideoFrame(i, i / fps, IMAGE) for i in range(n)]


def comparison(clock: FakeClock, *latencies: float, **kwargs) -> LiveComparison:
    series = [LiveSeries(f"s{i}", fake_detector(clock, s)) for i, s in enumerate(latencies)]
    return LiveComparison(series, clock=clock, **kwargs)


def test_a_frame_offered_to_a_busy_series_replaces_the_waiting_one():
    clock = FakeClock()
    live = comparison(clock, 0.1)
    for frame in frames(3, 10):
        live.offer(frame)
    result = live.step("s0")
    assert result.frame == 2 and result.busy_ms == pytest.approx(100.0)  # the newest frame, not the oldest
    assert live.step("s0") is None  # nothing queued behind it
    (row,) = live.snapshot().summary
    assert (row.offered, row.processed, row.dropped) == (3, 1, 2)


def test_a_series_slower_than_the_source_drops_frames_the_fast_one_keeps():
    """10 frames at 10 fps (0.0 ... 0.9 s); s0 takes 0.05 s, s1 0.25 s. Worked by hand for s1: f0 runs 0-0.25;
    f1 waits, f2 replaces it (drop); f2 runs 0.25-0.5; f3 waits, f4 replaces it (drop); f4 runs 0.5-0.75, f5 waits,
    f6 and f7 replace it in turn (2 drops); f7 runs 0.75-1.0; f8 waits, f9 replaces it (drop); f9 runs 1.0-1.25."""
    clock = FakeClock()
    live = comparison(clock, 0.05, 0.25)
    live.simulate(frames(10, 10))
    snap = live.snapshot()
    fast, slow = snap.summary
    assert (fast.processed, fast.dropped) == (10, 0)
    assert (slow.processed, slow.dropped, slow.offered) == (5, 5, 10)
    got = snap.frames[snap.frames["series"] == "s1"]
    assert got["frame"].tolist() == [0, 2, 4, 7, 9]
    assert got["done_at"].tolist() == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.25])
    assert slow.fps == pytest.approx(4 / 1.0) and fast.fps == pytest.approx(9 / 0.9)
    assert slow.median_latency_ms == pytest.approx(250.0) and fast.median_latency_ms == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("latency", "expected"),
    [
        (0.0625, list(range(16))),  # faster than the source: every frame
        (0.125, list(range(16))),  # free exactly when the next frame comes: every frame
        (0.25, [0, 1, 3, 5, 7, 9, 11, 13, 15]),  # free at f2, f4, ...: takes the one waiting (f1, f3, ...)
        (0.375, [0, 2, 5, 8, 11, 14, 15]),  # free at f3, f6, ...: takes f2, f5, ...; f15 waits for the end
        (2.0, [0, 15]),  # busy past the last frame: only the last one waiting is run
    ],
)
def test_which_frames_a_series_runs_follows_from_its_latency(latency, expected):
    """16 frames at 8 fps (0, 0.125, ... 1.875 s; binary-exact times and latencies, so ties are exact). Worked by
    hand: a series free when a frame arrives takes the frame that waited (the newest before it), then the new
    frame waits; the rest are dropped."""
    clock = FakeClock()
    live = comparison(clock, latency)
    live.simulate(frames(16, 8))
    snap = live.snapshot()
    (row,) = snap.summary
    assert snap.frames["frame"].tolist() == expected
    assert (row.processed, row.dropped) == (len(expected), 16 - len(expected))


def test_disagreement_rolls_over_frames_both_series_processed():
    """s0 sees a cat on every frame; s1 sees the same cat on even frames and a dog elsewhere on odd ones. Per frame:
    even -> both 1 (disagreement 0), odd -> only_a 1, only_b 1 (disagreement 1). Window 2: from the second frame on,
    (0 + 2) / (1 + 2) = 2/3."""
    clock = FakeClock()
    cat = ("cat", 1.0, 1.0, 8.0, 8.0)
    dog = ("dog", 9.0, 9.0, 15.0, 15.0)
    series = [
        LiveSeries("a", fake_detector(clock, 0.01, lambda f: [cat])),
        LiveSeries("b", fake_detector(clock, 0.01, lambda f: [cat] if f.index % 2 == 0 else [dog])),
    ]
    live = LiveComparison(series, clock=clock, window=2)
    live.simulate(frames(4, 10))
    pairs = live.snapshot().pairs
    assert pairs["pair"].unique().tolist() == ["a vs b"]
    assert pairs["both"].tolist() == [1, 0, 1, 0] and pairs["only_b"].tolist() == [0, 1, 0, 1]
    assert pairs["disagreement"].tolist() == pytest.approx([0.0, 2 / 3, 2 / 3, 2 / 3])


def test_no_boxes_anywhere_is_no_disagreement_figure_at_all():
    clock = FakeClock()
    live = comparison(clock, 0.01, 0.01)
    live.simulate(frames(3, 10))
    assert live.snapshot().pairs["disagreement"].isna().all()


def test_a_detector_that_fails_is_counted_and_the_others_go_on():
    clock = FakeClock()

    def broken(frame):
        clock.now += 0.02
        raise RuntimeError("no\nluck")

    live = LiveComparison([LiveSeries("ok", fake_detector(clock, 0.01)), LiveSeries("bad", broken)], clock=clock)
    live.simulate(frames(3, 10))
    ok, bad = live.snapshot().summary
    assert (ok.processed, ok.errors) == (3, 0)
    assert (bad.processed, bad.errors) == (3, 3) and math.isnan(bad.median_latency_ms)
    assert live.snapshot().latest["bad"].error == "RuntimeError: no"


@pytest.mark.parametrize("names", [[], ["x", "x"]])
def test_series_must_exist_and_differ(names):
    with pytest.raises(ValueError):
        LiveComparison([LiveSeries(n, lambda f: None) for n in names])


def test_threads_run_what_is_offered():
    """The real-time path: a thread per series picks up the waiting frame; wait_idle returns once it is done."""
    clock = FakeClock()
    live = comparison(clock, 0.0, 0.0)
    live.start()
    try:
        live.offer(VideoFrame(0, 0.0, IMAGE))
        assert live.wait_idle(timeout=30)
        assert [row.processed for row in live.snapshot().summary] == [1, 1]
    finally:
        live.stop()
