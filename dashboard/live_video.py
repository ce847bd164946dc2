"""The Live page's helpers (not dashboard/live.py, which polls stored jobs): a live session of series on a camera
(streamlit-webrtc) or a video file (core.images.video), its boxes drawn on frames, recording and keeping it as a run.

A `LiveSession` lives in the browser session's state. Its series run in this server process, one thread each
(core.execution.live): live frames are not a stored run. Keeping one is a job like any other (core.execution.jobs, core.execution.videojobs): the
worker runs every kept frame, and the records are those of any run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image, ImageDraw

from core.config import LIVE_MAX_BOXES_DRAWN, LIVE_RECORD_MAX_FRAMES, UNTRAINED_MARK, WEIGHTS_UNTRAINED
from core.execution import jobs
from core.execution.live import FrameResult, LiveComparison, LiveSeries, SeriesSummary, detector_fn
from core.execution.runner import RunSettings
from core.execution.videojobs import submit_video
from core.images import ImageSource, content_id
from core.images.video import Sampling, Video, VideoError, VideoFrame
from core.inference.engine import load_detector
from core.inference.series import Variant
from dashboard import cache
from dashboard.figures.live import series_color
from dashboard.launch import resolve_under_roots

SESSION_KEY = "live_session"
CAMERA_KEY = "live_camera"
UPLOADS_KEY = "live_uploads"  # file_id -> where this session's uploaded videos were kept
RTC_CONFIGURATION = {"iceServers": []}  # offline: no STUN/TURN server; the browser and this server share a host or LAN
CAMERA_TEXTS = {
    "device_access_denied": "The browser refused the camera: allow it for this site, or use a video file.",
    "device_not_available": "No camera found: plug one in, or use a video file.",
    "media_api_not_available": "This browser gives no camera here (it needs https or localhost): use a video file.",
}


@dataclass(frozen=True)
class SeriesChoice:
    """What the page asks for one series."""

    model: str
    weights: str
    runtime: str
    precision: str


def build_series(choices: Sequence[SeriesChoice], device: str, threshold: float) -> list[LiveSeries]:
    """Load each series' detector (the engine's shared cache) and name it: the run's series name, with its weights
    when two series share a name. Raises what `load_detector` raises (weights unavailable, device, runtime)."""
    loaded = [load_detector(c.model, c.weights, device, c.precision, runtime=c.runtime) for c in choices]
    names = [det.series for det in loaded]
    out: list[LiveSeries] = []
    for det, name in zip(loaded, names, strict=True):
        if names.count(name) > 1:
            name = f"{name} [{det.weights}]"
        if name in [s.name for s in out]:
            name = f"{name} #{len(out) + 1}"
        out.append(LiveSeries(name, detector_fn(det, threshold), untrained=det.weights == WEIGHTS_UNTRAINED))
    return out


@dataclass
class LiveSession:
    """A comparison and its source's state: frames seen and offered, the latest frame, the end or error, recording."""

    comparison: LiveComparison
    source: str  # "camera" or the video's name
    rate: float  # frames per second offered to the series
    realtime: bool = True  # a file plays at its own speed (frames dropped by slow series); else every frame runs
    choices: tuple[SeriesChoice, ...] = ()
    device: str = "cpu"
    threshold: float = 0.5
    seen: int = 0
    offered: int = 0
    ended: str = ""  # why the source ended ("" while it plays)
    error: str = ""
    latest: VideoFrame | None = None
    recording: bool = False
    recorded: list[ImageSource] = field(default_factory=list)
    record_full: bool = False
    video_path: Path | None = None
    clock: Callable[[], float] = time.monotonic
    _next_due: float = 0.0
    _started: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _overlays: Overlays = field(default_factory=lambda: Overlays())

    @property
    def untrained(self) -> bool:
        return any(c.weights == WEIGHTS_UNTRAINED for c in self.choices)

    def camera_frame(self, image: Image.Image) -> Image.Image:
        """A camera frame in (streamlit-webrtc's thread): offered at `rate` (one a period; a late frame restarts the
        schedule), recorded if asked; returns the frame with every series' latest boxes, side by side. Frame times
        count from the camera's first frame."""
        now = self.clock()
        period = 1.0 / self.rate
        with self._lock:
            index, self.seen = self.seen, self.seen + 1
            if index == 0:
                self._started = now
            due = index == 0 or now >= self._next_due
            if due:
                late = index == 0 or now - self._next_due >= period
                self._next_due = now + period if late else self._next_due + period
        if due:
            frame = VideoFrame(index, now - self._started, image)
            self._offer(frame)
            self._record(frame)
        return side_by_side(image, self.comparison.latest(), self.comparison.names, self._overlays)

    def _offer(self, frame: VideoFrame) -> None:
        with self._lock:
            self.offered += 1
            self.latest = frame
        self.comparison.offer(frame)

    def _record(self, frame: VideoFrame) -> None:
        with self._lock:
            if not self.recording:
                return
            if len(self.recorded) >= LIVE_RECORD_MAX_FRAMES:
                self.recording, self.record_full = False, True
                return
        source = frame.source(self.source)
        with self._lock:
            self.recorded.append(source)

    def play(self, path: Path) -> None:
        """Play a video file in a thread of its own: frames sampled at `rate`, offered at their own pace (realtime)
        or each once the series are done with the previous one; the end or the error is kept."""
        self.video_path = path
        self._thread = threading.Thread(target=self._play, args=(path,), name="detlens-live-player", daemon=True)
        self._thread.start()

    def _play(self, path: Path) -> None:
        start = time.monotonic()
        try:
            with Video(path, self.source) as video:
                for frame in video.frames(fps=self.rate, max_frames=None):
                    if self.ended:
                        return
                    if self.realtime:
                        time.sleep(max(0.0, start + frame.time_s - time.monotonic()))  # the player paces the source
                    else:
                        self.comparison.wait_idle()
                    self._offer(frame)
            self.comparison.wait_idle(timeout=600.0)  # the series finish the frames that wait for them
            self.ended = self.ended or f"the video ended: {self.offered} frame(s) offered"
        except VideoError as exc:
            self.error, self.ended = str(exc), "the video stopped on an error"
        except Exception as exc:  # the page must stay usable whatever the decoder does
            self.error, self.ended = f"{type(exc).__name__}: {exc}", "the video stopped on an error"
        finally:
            self.comparison.wait_idle(timeout=600.0)
            self.comparison.stop()  # a file's frames are all in: its series' threads end

    def wait_done(self, timeout: float) -> bool:
        """Block until a playing file has ended (tests); True when it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return bool(self.ended)

    def stop(self) -> None:
        self.ended = self.ended or "stopped"
        self.comparison.stop()

    def settings(self) -> RunSettings:
        """The run settings a kept run uses: each series as a variant of its model (`runtime-precision`, so each keeps
        its precision), this session's device and threshold. ValueError when two series of one model have different
        weights (a run holds one weights choice per model)."""
        models = list(dict.fromkeys(c.model for c in self.choices))
        weights = {m: {c.weights for c in self.choices if c.model == m} for m in models}
        mixed = [m for m, w in weights.items() if len(w) > 1]
        if mixed:
            raise ValueError(f"a run holds one weights choice per model; {', '.join(mixed)} has several here")
        return RunSettings(
            models=models,
            weights={m: next(iter(w)) for m, w in weights.items()},
            device=self.device,
            threshold=self.threshold,
            runtimes={
                m: list(dict.fromkeys(Variant(c.runtime, c.precision).token for c in self.choices if c.model == m))
                for m in models
            },  # fmt: skip
        )


def start(
    choices: Sequence[SeriesChoice], device: str, threshold: float, *, source: str, rate: float, realtime: bool = True
) -> LiveSession:
    """A new session with its series loaded and their threads started (the caller stops the previous one)."""
    series = build_series(choices, device, threshold)
    comparison = LiveComparison(series)
    comparison.start()
    return LiveSession(comparison, source, rate, realtime, tuple(choices), device, threshold)


def saved_upload(name: str, data: bytes, file_id: str) -> Path:
    """`save_upload` once per uploaded file of this browser session, after checking it is a video (VideoError)."""
    saved: dict[str, Path] = st.session_state.setdefault(UPLOADS_KEY, {})
    if file_id not in saved:
        Video(data, name).close()
        saved[file_id] = save_upload(name, data)
    return saved[file_id]


def save_upload(name: str, data: bytes) -> Path:
    """An uploaded video kept under the store folder (`videos/<content hash><suffix>`), where the worker reads it."""
    folder = cache.store().path / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{content_id(data)}{Path(name).suffix.lower()[:8] or '.video'}"
    if not path.exists():
        path.write_bytes(data)
    return path


def keep_video(session: LiveSession, user: str) -> str:
    """Queue the session's video as a run (every frame at the session's rate, none dropped); returns the run id."""
    assert session.video_path is not None
    store = cache.store()
    jobs.check_settings(session.settings())
    run_id = submit_video(
        store, session.settings(), session.video_path, Sampling(fps=session.rate), user=user, name=session.source
    )
    jobs.ensure_worker(store)
    return run_id


def keep_recording(session: LiveSession, user: str) -> str:
    """Queue the recorded camera frames as a run (the worker runs every series on each); returns the run id."""
    with session._lock:
        frames = list(session.recorded)
        session.recorded.clear()
    store = cache.store()
    run_id = jobs.submit(store, session.settings(), frames, user=user)
    jobs.ensure_worker(store)
    return run_id


def draw_boxes(size: tuple[int, int], result: FrameResult | None, color: str, title: str) -> Image.Image:
    """A transparent layer of `size` with `result`'s boxes and labels (the best LIVE_MAX_BOXES_DRAWN), and the series'
    name on top; composited over each frame until the series' next result."""
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    if result is not None:
        order = np.argsort(-result.scores, kind="stable")[:LIVE_MAX_BOXES_DRAWN]
        for i in order:
            x1, y1, x2, y2 = (float(v) for v in result.boxes[i])
            draw.rectangle([x1, y1, x2, y2], outline=color, width=2)
            draw.text((x1 + 2, y1 + 1), f"{result.labels[i]} {result.scores[i]:.2f}", fill=color)
    draw.rectangle([0, 0, size[0], 14], fill=(0, 0, 0, 255))
    draw.text((3, 1), title[:60], fill=color)
    return layer


class Overlays:
    """Each series' box layer, drawn once per result (a camera sends many frames per result)."""

    def __init__(self) -> None:
        self._layers: dict[str, tuple[tuple[int, tuple[int, int]], Image.Image]] = {}
        self._lock = threading.Lock()

    def layer(self, name: str, result: FrameResult | None, size: tuple[int, int], color: str) -> Image.Image:
        key = (result.frame if result is not None else -1, size)
        with self._lock:
            found = self._layers.get(name)
        if found is not None and found[0] == key:
            return found[1]
        layer = draw_boxes(size, result, color, name)
        with self._lock:
            self._layers[name] = (key, layer)
        return layer


def side_by_side(
    image: Image.Image, latest: dict[str, FrameResult], names: Sequence[str], overlays: Overlays | None = None
) -> Image.Image:
    """The frame once per series, each with that series' latest boxes, in one row."""
    overlays = overlays or Overlays()
    base = image.convert("RGBA")
    row = Image.new("RGB", (image.width * len(names), image.height))
    for i, name in enumerate(names):
        panel = Image.alpha_composite(base, overlays.layer(name, latest.get(name), image.size, series_color(i)))
        row.paste(panel.convert("RGB"), (i * image.width, 0))
    return row


def untrained_note(session: LiveSession) -> str:
    return f"Untrained weights in this comparison: {UNTRAINED_MARK}." if session.untrained else ""


def resolve_file(text: str, roots: Sequence[Path]) -> Path:
    """The video file `text` names, if it lies under an allowed root once links and `..` are resolved."""
    return resolve_under_roots(text, roots, kind="file")


def problem_line(exc: BaseException) -> str:
    """Why a live session could not start, in one line."""
    text = " ".join(str(exc).split())[:400]
    return f"Could not start: {text or type(exc).__name__}"


def status_line(session: LiveSession) -> str:
    where = "camera" if session.source == "camera" else f"`{session.source}`"
    state = f"ended: {session.ended}" if session.ended else "playing"
    if session.source == "camera" and not session.ended:
        state = "waiting for the camera (press START)" if not session.seen else "camera on"
    return f"Source {where}, {session.rate:g} frame(s)/s offered, {session.offered} offered so far, {state}."


def series_caption(row: SeriesSummary, latest: FrameResult | None) -> str:
    latency = "-" if row.median_latency_ms != row.median_latency_ms else f"{row.median_latency_ms:.0f} ms"
    text = f"{row.processed} processed, {row.dropped} dropped, median latency {latency}"
    if latest is not None:
        text += f", {latest.n_detections} box(es) on frame {latest.frame}"
    if row.errors:
        text += f", {row.errors} failed"
    return text + (" · untrained" if row.untrained else "")


def camera_ui(session: LiveSession) -> None:
    """The browser's camera through WebRTC (streamlit-webrtc): each frame comes back with every series' boxes."""
    import av
    from streamlit_webrtc import WebRtcMode, webrtc_streamer

    def callback(frame: av.VideoFrame) -> av.VideoFrame:
        return av.VideoFrame.from_image(session.camera_frame(frame.to_image()))

    webrtc_streamer(
        key=CAMERA_KEY,
        mode=WebRtcMode.SENDRECV,
        rtc_configuration=RTC_CONFIGURATION,
        media_stream_constraints={"video": True, "audio": False},
        video_frame_callback=callback,
        translations=CAMERA_TEXTS,  # type: ignore[arg-type]
    )


def recording_ui(session: LiveSession, user: str) -> None:
    """Record the camera's offered frames, and keep them as a run (a job the worker runs)."""
    session.recording = st.checkbox("Record the frames offered to the models", key="live_record")
    n = len(session.recorded)
    if session.record_full:
        st.warning(f"Recording stopped at {LIVE_RECORD_MAX_FRAMES} frames.")
    if st.button(f"Keep the recording as a run ({n} frames)", key="live_keep_recording", disabled=not n):
        run_id = keep_recording(session, user)
        st.success(f"Queued run `{run_id}` with {n} frames. Follow it on the Runs page.")
