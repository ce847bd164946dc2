"""Live: two or more detectors side by side on the browser's camera or a video file, with charts that move."""

from __future__ import annotations

import streamlit as st

from core.config import (
    DEVICES,
    HEADLINE_MODELS,
    LIVE_CHART_REFRESH_S,
    LIVE_DEFAULT_RATE,
    PRECISIONS,
    RUNTIMES,
    UNTRAINED_MARK,
)
from core.execution.videojobs import check_video
from core.images.video import VideoError
from core.inference.devices import DeviceError, resolve_device
from core.inference.models import model_names
from core.store import StoreError, current_user
from dashboard import launch, live_video, state
from dashboard.figures import live as charts
from dashboard.text import md

state.init()
st.title("Live")
st.caption(
    "Frames from a camera or a video file go to every series at the chosen rate; a series still busy with a frame "
    "drops the frames that come meanwhile (counted), so a slow model shows fewer frames, never late ones."
)
session: live_video.LiveSession | None = st.session_state.get(live_video.SESSION_KEY)


def series_ui() -> list[live_video.SeriesChoice]:
    n = int(st.number_input("Series", 1, 4, 2, key="live_n_series"))
    cols, out = st.columns(n), []
    for i, col in enumerate(cols):
        default = HEADLINE_MODELS[i % len(HEADLINE_MODELS)]
        model = col.selectbox(
            f"Model {i + 1}", model_names(), index=model_names().index(default), key=f"live_model_{i}"
        )
        weights = col.selectbox(f"Weights {i + 1}", ["default", "untrained"], key=f"live_weights_{i}")
        runtime = col.selectbox(f"Runtime {i + 1}", RUNTIMES, key=f"live_runtime_{i}")
        precision = col.selectbox(f"Precision {i + 1}", PRECISIONS, key=f"live_precision_{i}")
        out.append(live_video.SeriesChoice(model, weights, runtime, precision))
    return out


choices = series_ui()
c1, c2, c3 = st.columns(3)
device_choice = c1.selectbox("Device", DEVICES, key="live_device")
rate = float(c2.number_input("Frames per second to the models", 0.5, 30.0, LIVE_DEFAULT_RATE, 0.5, key="live_rate"))
source = c3.radio("Source", ["Video file", "Camera"], key="live_source", horizontal=True)
if any(c.weights == "untrained" for c in choices):
    st.warning(f"Untrained weights chosen: {UNTRAINED_MARK}. Their boxes and agreement mean nothing.")

video_path, video_name = None, ""
if source == "Video file":
    where = st.radio("Video", ["Upload", "Server file"], key="live_video_where", horizontal=True)
    if where == "Upload":
        upload = st.file_uploader("Video file", key="live_upload")
        try:
            video_path = live_video.saved_upload(upload.name, upload.getvalue(), upload.file_id) if upload else None
            video_name = upload.name if upload else ""
        except VideoError as exc:
            st.error(md(exc))
    else:
        roots = launch.folder_roots()
        st.caption("Allowed roots: " + ", ".join(f"`{r}`" for r in roots))
        text = st.text_input("Video file on the server", key="live_server_file")
        if text:
            try:
                video_path = live_video.resolve_file(text, roots)
            except (launch.FolderNotAllowedError, VideoError) as exc:
                st.error(md(exc))
    realtime = st.checkbox("Play at the video's own speed (slow series drop frames)", True, key="live_realtime")

if st.button("Start", type="primary", key="live_start", disabled=source == "Video file" and video_path is None):
    if session is not None:
        session.stop()
    try:
        device = str(resolve_device(device_choice))
        if video_path is not None and source == "Video file":
            check_video(video_path)
        with st.spinner("Loading the models..."):
            session = live_video.start(choices, device, state.threshold(), source="camera" if source == "Camera"
                                       else video_name or video_path.name, rate=rate,
                                       realtime=source == "Camera" or realtime)  # fmt: skip
        if source == "Video file":
            session.play(video_path)
        st.session_state[live_video.SESSION_KEY] = session
        st.session_state.pop("live_problem", None)
    except Exception as exc:  # weights unavailable offline, a device or runtime refused, not a video: say why
        st.session_state["live_problem"] = live_video.problem_line(exc)
        st.session_state.pop(live_video.SESSION_KEY, None)
        session = None
if st.session_state.get("live_problem"):
    st.error(md(st.session_state["live_problem"]))

if session is not None and session.source == "camera" and source == "Camera":
    live_video.camera_ui(session)


def panel() -> None:
    s: live_video.LiveSession | None = st.session_state.get(live_video.SESSION_KEY)
    if s is None:
        st.info("Choose the series and a source, then Start.")
        return
    if active and s.ended and s.comparison.idle():
        st.rerun()  # the file ended: one full run draws the page at rest (no more timed redraws)
    snap = s.comparison.snapshot()
    st.markdown(live_video.status_line(s))
    if s.error:
        st.error(md(s.error))
    if s.untrained:
        st.warning(live_video.untrained_note(s))
    cols = st.columns(len(snap.summary))
    for col, row in zip(cols, snap.summary, strict=True):
        col.metric(f"{row.name} fps", "-" if row.fps != row.fps else f"{row.fps:.1f}")
        col.caption(live_video.series_caption(row, snap.latest.get(row.name)))
    if s.latest is not None and s.source != "camera":
        st.image(live_video.side_by_side(s.latest.image, snap.latest, s.comparison.names), width="stretch")
    order, untrained = s.comparison.names, s.untrained
    a, b = st.columns(2)
    a.plotly_chart(charts.latency_chart(snap.frames, order, untrained), key="live_latency")
    b.plotly_chart(charts.fps_chart(snap.frames, order, untrained), key="live_fps")
    a.plotly_chart(charts.detections_chart(snap.frames, order, untrained), key="live_detections")
    b.plotly_chart(charts.disagreement_chart(snap.pairs, untrained), key="live_disagreement")


active = session is not None and not session.ended
st.fragment(panel, run_every=LIVE_CHART_REFRESH_S if active or (session and session.source == "camera") else None)()

if session is not None:
    try:
        if session.video_path is not None and st.button("Keep this video as a run", key="live_keep_video"):
            run_id = live_video.keep_video(session, state.reviewer() or current_user())
            st.success(f"Queued run `{run_id}`: every sampled frame, no frame dropped. Follow it on the Runs page.")
        if session.source == "camera":
            live_video.recording_ui(session, state.reviewer() or current_user())
    except (StoreError, VideoError, DeviceError, OSError, ValueError) as exc:
        st.error(md(f"The run was not queued: {exc}"))
