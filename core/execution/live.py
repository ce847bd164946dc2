"""Live comparison: two or more series (detectors) on the same frames, as they come, from a camera or a video file.

Each series has a one-frame mailbox: a frame offered while the series is still busy with an earlier one waits there,
and a newer frame replaces it (the older one is *dropped*, and counted). Nothing queues, so a slow model shows fewer
frames, never stale ones. `LiveComparison.step` runs one series on its waiting frame; `start` gives every series
its own thread that steps whenever a frame waits (model calls on one device still take turns: core.inference.devices.device_lock).
`simulate` plays a file's frames in virtual time instead (no threads, no sleeps): each series is busy for the time
its call took, measured by the injected clock, as if each had the source to itself; tests and benchmarks use it.

Per series it keeps each processed frame's latency (the model's own `total_ms`, as in the records), detections at the
threshold, the time it was done; and per pair (the first series against each other one) the disagreement on frames
both processed, matched as the records are (core.compare.matching.match_boxes: same label, IoU >= AGREEMENT_IOU), rolled
over the last `window` such frames.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.compare.matching import match_boxes
from core.config import AGREEMENT_IOU, DEFAULT_WARMUP, LIVE_HISTORY, LIVE_WINDOW_FRAMES
from core.images import LoadedImage
from core.images.video import VideoFrame
from core.inference.engine import Detector, run_detector
from core.records import DetectionResult

Detect = Callable[[VideoFrame], DetectionResult]
FRAME_COLUMNS = ("series", "frame", "time_s", "latency_ms", "busy_ms", "n_detections", "done_at")
PAIR_COLUMNS = ("pair", "frame", "time_s", "both", "only_a", "only_b", "disagreement")


@dataclass(frozen=True)
class LiveSeries:
    """A series of the comparison: its name, how it detects, and whether its weights are untrained."""

    name: str
    detect: Detect
    untrained: bool = False


@dataclass(frozen=True)
class FrameResult:
    """One frame through one series: the boxes at or above the threshold, the model's latency (`total_ms`), the
    time the live loop waited for the call (`busy_ms`, device turns included) and when it was done (clock seconds)."""

    series: str
    frame: int
    time_s: float
    latency_ms: float
    busy_ms: float
    done_at: float
    boxes: np.ndarray
    labels: tuple[str, ...]
    scores: np.ndarray
    error: str = ""

    @property
    def n_detections(self) -> int:
        return len(self.labels)


@dataclass
class _State:
    """A series' mailbox and history (guarded by the comparison's lock)."""

    series: LiveSeries
    waiting: VideoFrame | None = None
    busy: bool = False
    offered: int = 0
    dropped: int = 0
    processed: int = 0
    errors: int = 0
    results: deque[FrameResult] = field(default_factory=deque)
    by_frame: dict[int, FrameResult] = field(default_factory=dict)


@dataclass(frozen=True)
class SeriesSummary:
    """Where a series stands: frames offered, processed and dropped, fps achieved over the recent window."""

    name: str
    offered: int
    processed: int
    dropped: int
    errors: int
    fps: float
    median_latency_ms: float
    untrained: bool


@dataclass(frozen=True)
class LiveSnapshot:
    """A consistent copy of the comparison for the charts (small frames, never the pixels)."""

    summary: list[SeriesSummary]
    frames: pd.DataFrame  # FRAME_COLUMNS, one row per processed frame per series (recent history)
    pairs: pd.DataFrame  # PAIR_COLUMNS, `disagreement` rolled over the window
    latest: dict[str, FrameResult]


def detector_fn(detector: Detector, threshold: float, *, warmup: int = DEFAULT_WARMUP) -> Detect:
    """A `Detect` running a loaded detector on a frame through the engine (same timing as a run's records); the
    first call warms the model up (untimed, as in a run). Boxes below `threshold` are left out."""
    state = {"cold": warmup > 0}

    def detect(frame: VideoFrame) -> DetectionResult:
        image = LoadedImage(f"f{frame.index}", "", frame.image, frame.image.width, frame.image.height, "video", 0.0)
        result = run_detector(detector, [image], warmup=warmup if state["cold"] else 0)[0]
        state["cold"] = False
        keep = result.scores >= threshold
        if keep.all():
            return result
        names = tuple(n for n, k in zip(result.label_names, keep, strict=True) if k)
        result.boxes, result.scores, result.labels = result.boxes[keep], result.scores[keep], result.labels[keep]
        result.label_names = names
        return result

    return detect


class LiveComparison:
    """Series on the same frames; frames dropped, not queued, when a series is busy (see the module's docstring)."""

    def __init__(
        self,
        series: Sequence[LiveSeries],
        *,
        clock: Callable[[], float] = time.monotonic,
        window: int = LIVE_WINDOW_FRAMES,
        history: int = LIVE_HISTORY,
        iou: float = AGREEMENT_IOU,
    ) -> None:
        names = [s.name for s in series]
        if not names:
            raise ValueError("a live comparison needs at least one series")
        if len(set(names)) != len(names):
            raise ValueError(f"series names must differ: {names}")
        self.clock, self.window, self.history, self.iou = clock, window, history, iou
        self._states = {s.name: _State(s, results=deque(maxlen=history)) for s in series}
        self._pairs: dict[str, deque[tuple[int, float, int, int, int]]] = {
            self._pair_name(names[0], other): deque(maxlen=history) for other in names[1:]
        }
        self._lock = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self.started_at = clock()

    @staticmethod
    def _pair_name(a: str, b: str) -> str:
        return f"{a} vs {b}"

    @property
    def names(self) -> list[str]:
        return list(self._states)

    # -- frames in ------------------------------------------------------------------------------------------------

    def offer(self, frame: VideoFrame) -> None:
        """Give `frame` to every series: it waits for a busy series, replacing (dropping) the frame waiting there."""
        with self._lock:
            for state in self._states.values():
                state.offered += 1
                if state.waiting is not None:
                    state.dropped += 1
                state.waiting = frame
            self._lock.notify_all()

    def step(self, name: str, *, at: float | None = None) -> FrameResult | None:
        """Run series `name` on its waiting frame (None when none waits). `at`: the time the call starts in virtual
        time (`simulate`); by default the clock's. Called by the series' thread, or directly (tests)."""
        with self._lock:
            state = self._states[name]
            frame, state.waiting = state.waiting, None
            if frame is None:
                return None
            state.busy = True
        t0 = self.clock()
        try:
            result: DetectionResult | None = state.series.detect(frame)
            error = result.error
        except Exception as exc:  # a model that fails on a frame must not stop the comparison
            result, error = None, f"{type(exc).__name__}: {exc}"
        busy_ms = (self.clock() - t0) * 1e3
        done_at = (at if at is not None else t0) + busy_ms / 1e3
        latency = result.total_ms if result is not None and math.isfinite(result.total_ms) else busy_ms
        out = FrameResult(
            name,
            frame.index,
            frame.time_s,
            latency,
            busy_ms,
            done_at,
            result.boxes if result is not None and not error else np.zeros((0, 4), np.float32),
            result.label_names if result is not None and not error else (),
            result.scores if result is not None and not error else np.zeros(0, np.float32),
            error.splitlines()[0][:200] if error else "",
        )
        with self._lock:
            self._record(state, out)
            state.busy = False
            self._lock.notify_all()
        return out

    def _record(self, state: _State, out: FrameResult) -> None:
        state.processed += 1
        state.errors += bool(out.error)
        if len(state.results) == state.results.maxlen:
            state.by_frame.pop(state.results[0].frame, None)
        state.results.append(out)
        state.by_frame[out.frame] = out
        names = self.names
        for other in names[1:] if state.series.name == names[0] else [names[0]]:
            mate = self._states[other].by_frame.get(out.frame)
            if mate is None or out.error or mate.error:
                continue
            a, b = (out, mate) if state.series.name == names[0] else (mate, out)
            both = len(match_boxes(a.boxes, a.labels, b.boxes, b.labels, self.iou))
            self._pairs[self._pair_name(a.series, b.series)].append(
                (out.frame, out.time_s, both, a.n_detections - both, b.n_detections - both)
            )

    # -- virtual time (files, tests, benchmarks) --------------------------------------------------------------------

    def simulate(self, frames: Iterable[VideoFrame], *, on_frame: Callable[[VideoFrame], None] | None = None) -> None:
        """Play `frames` at their own timestamps in virtual time, in this thread: a series free when a frame arrives
        takes it; a busy one keeps the latest frame waiting (the one it replaces is dropped) and takes it when its
        call ends. Each call's duration is measured by the clock. Waiting frames are run when the source ends."""
        free_at = {name: -math.inf for name in self._states}
        for frame in frames:
            for name in self._states:  # series that free up before this frame take what waits for them
                while self._states[name].waiting is not None and free_at[name] <= frame.time_s:
                    free_at[name] = self._done(self.step(name, at=free_at[name]))
            self.offer(frame)
            for name in self._states:
                if free_at[name] <= frame.time_s:
                    free_at[name] = self._done(self.step(name, at=frame.time_s))
            if on_frame is not None:
                on_frame(frame)
        for name in self._states:
            if self._states[name].waiting is not None:
                self.step(name, at=free_at[name])

    @staticmethod
    def _done(result: FrameResult | None) -> float:
        assert result is not None
        return result.done_at

    # -- real time (camera, file playback) ---------------------------------------------------------------------------

    def start(self) -> None:
        """One thread per series, each running its waiting frame as soon as there is one (daemon threads)."""
        if self._threads:
            return
        self._stopping = False
        for name in self._states:
            thread = threading.Thread(target=self._serve, args=(name,), name=f"detlens-live-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, name: str) -> None:
        state = self._states[name]
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._stopping or state.waiting is not None)
                if self._stopping:
                    return
            self.step(name)

    def idle(self) -> bool:
        """No frame waits and no series is busy."""
        with self._lock:
            return all(s.waiting is None and not s.busy for s in self._states.values())

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until `idle()` (the threads ran every waiting frame), `stop()` or `timeout`; returns whether it is
        idle."""
        with self._lock:
            self._lock.wait_for(
                lambda: self._stopping or all(s.waiting is None and not s.busy for s in self._states.values()), timeout
            )
            return all(s.waiting is None and not s.busy for s in self._states.values())

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the threads (a call in flight ends first; frames still waiting are left)."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    # -- reading ---------------------------------------------------------------------------------------------------

    def latest(self) -> dict[str, FrameResult]:
        """Each series' latest result (cheap: for drawing every camera frame)."""
        with self._lock:
            return {name: s.results[-1] for name, s in self._states.items() if s.results}

    def snapshot(self) -> LiveSnapshot:
        """A copy for the charts: per-series summary, per-frame rows, rolling disagreement per pair, latest results."""
        with self._lock:
            states = [(s.series, s.offered, s.processed, s.dropped, s.errors, list(s.results)) for s in self._states.values()]  # fmt: skip
            pairs = {k: list(v) for k, v in self._pairs.items()}
        summary, rows, latest = [], [], {}
        for series, offered, processed, dropped, errors, results in states:
            recent = results[-self.window :]
            span = recent[-1].done_at - recent[0].done_at if len(recent) > 1 else 0.0
            fps = (len(recent) - 1) / span if span > 0 else math.nan
            ok = [r.latency_ms for r in results if not r.error]
            summary.append(
                SeriesSummary(series.name, offered, processed, dropped, errors, fps,
                              float(np.median(ok)) if ok else math.nan, series.untrained)
            )  # fmt: skip
            rows += [(r.series, r.frame, r.time_s, r.latency_ms, r.busy_ms, r.n_detections, r.done_at) for r in results]
            if results:
                latest[series.name] = results[-1]
        frames = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
        pair_rows = []
        for pair, entries in pairs.items():
            for i, (frame, t, both, only_a, only_b) in enumerate(entries):
                recent = entries[max(0, i - self.window + 1) : i + 1]
                total = sum(e[2] + e[3] + e[4] for e in recent)
                agree = sum(e[2] for e in recent)
                pair_rows.append((pair, frame, t, both, only_a, only_b, 1 - agree / total if total else math.nan))
        return LiveSnapshot(summary, frames, pd.DataFrame(pair_rows, columns=list(PAIR_COLUMNS)), latest)
