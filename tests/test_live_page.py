"""The Live page through AppTest, on the file path: a short generated video on an allowed server folder, two
untrained SSDLite series, its charts and counts, keeping the video as a run, and bad input that leaves it usable."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core.config import UNTRAINED_MARK
from core.store import Store, default_store_dir
from dashboard.live_video import SESSION_KEY
from tests import videos
from tests.factories import run_pending
from tests.test_pages import APP, TIMEOUT, texts

SMALL = "ssdlite320_mobilenet_v3_large"
N_FRAMES, RATE = 8, 10


@pytest.fixture
def roots(tmp_path, monkeypatch):
    folder = tmp_path / "videos"
    folder.mkdir()
    monkeypatch.setenv("DETLENS_FOLDER_ROOTS", str(folder))
    monkeypatch.setenv("DETLENS_WORKER_AUTOSTART", "0")
    return folder


def live_page(threshold: float = 0.0) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["detlens_threshold"] = threshold
    at.run()
    at.switch_page("../pages/live.py").run()
    for i in range(2):
        at.selectbox(key=f"live_model_{i}").set_value(SMALL)
        at.selectbox(key=f"live_weights_{i}").set_value("untrained")
    at.radio(key="live_video_where").set_value("Server file")
    return at.run()


def choose_file(at: AppTest, path) -> AppTest:
    return at.text_input(key="live_server_file").set_value(str(path)).run()


def test_a_video_file_plays_through_two_series_with_moving_charts(roots):
    clip = videos.write_video(roots / "clip.mp4", N_FRAMES, size=(64, 48), rate=RATE)
    at = choose_file(live_page(), clip)
    at.checkbox(key="live_realtime").uncheck()  # every sampled frame to every series: deterministic counts
    at.number_input(key="live_rate").set_value(10.0)
    at.button(key="live_start").click().run()
    assert not at.exception and not at.error
    session = at.session_state[SESSION_KEY]
    assert session.wait_done(TIMEOUT) and not session.error
    at.run()
    assert not at.exception
    names = session.comparison.names
    assert len(names) == 2 and all(n.startswith(SMALL) for n in names)
    summary = session.comparison.snapshot().summary
    assert [(r.processed, r.dropped) for r in summary] == [(N_FRAMES, 0), (N_FRAMES, 0)]
    captions = [c.value for c in at.caption]
    assert sum(f"{N_FRAMES} processed, 0 dropped" in c for c in captions) == 2
    charts = {c.proto.id: c for c in at.get("plotly_chart")}
    assert len(charts) == 4
    assert all(UNTRAINED_MARK in c.proto.spec for c in charts.values())  # every chart says untrained
    assert "the video ended" in texts(at) and UNTRAINED_MARK in texts(at)
    assert len(at.get("image")) == 1  # the latest frame, once per series side by side


def test_keeping_the_video_queues_a_run_of_every_sampled_frame(roots):
    clip = videos.write_video(roots / "clip.mp4", N_FRAMES, size=(64, 48), rate=RATE)
    at = choose_file(live_page(), clip)
    at.number_input(key="live_rate").set_value(5.0)
    at.button(key="live_start").click().run()
    at.session_state[SESSION_KEY].wait_done(TIMEOUT)
    at.button(key="live_keep_video").click().run()
    assert not at.exception and any("Queued run" in s.value for s in at.success)
    store = Store(default_store_dir())
    (run_id,) = run_pending(store)
    inf = store.load_run(run_id)[0]
    assert inf["image_name"].tolist() == [f"clip.mp4#f{i:06d}@{i / RATE:.3f}s" for i in (0, 2, 4, 6)]
    assert store.job(run_id).status == "finished" and (inf["weights"] == "untrained").all()


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda root: root / "missing.mp4", "is not a file"),
        (lambda root: root.parent / "outside.mp4", "outside the folders"),
    ],
)
def test_a_bad_server_file_is_said_and_start_stays_off(roots, make, words):
    path = make(roots)
    path.write_bytes(b"x") if "outside" in str(path) else None
    at = choose_file(live_page(), path)
    assert not at.exception
    assert any(words in e.value for e in at.error)
    assert at.button(key="live_start").disabled


def test_a_file_that_is_not_a_video_does_not_start_and_the_page_stays_usable(roots):
    fake = roots / "notes.mp4"
    fake.write_text("not a video at all\n" * 10)
    at = choose_file(live_page(), fake)
    at.button(key="live_start").click().run()
    assert not at.exception
    assert any("not a video" in e.value for e in at.error)
    assert SESSION_KEY not in at.session_state
    clip = videos.write_video(roots / "clip.mp4", 4, size=(64, 48), rate=RATE)
    choose_file(at, clip).button(key="live_start").click().run()
    assert not at.exception and not at.error
    assert at.session_state[SESSION_KEY].wait_done(TIMEOUT)


def test_a_stream_that_breaks_is_said_with_its_frames_shown(roots, tmp_path):
    clip = videos.write_video(tmp_path / "clip.mp4", 12, size=(64, 48), rate=RATE)
    broken = videos.with_garbage(clip, roots / "broken.mp4")
    at = choose_file(live_page(), broken)
    at.checkbox(key="live_realtime").uncheck()
    at.number_input(key="live_rate").set_value(10.0)
    at.button(key="live_start").click().run()
    session = at.session_state[SESSION_KEY]
    assert session.wait_done(TIMEOUT)
    at.run()
    assert not at.exception
    assert any("corrupt after frame" in e.value for e in at.error)
    assert 0 < session.offered < 12


def test_an_uploaded_file_that_is_not_a_video_is_said_and_an_uploaded_video_plays(roots):
    at = live_page()
    at.radio(key="live_video_where").set_value("Upload").run()
    at.file_uploader(key="live_upload").set_value(("notes.mp4", b"plain text " * 50, "video/mp4")).run()
    assert not at.exception
    assert any("not a video" in e.value and "notes" in e.value for e in at.error)
    assert at.button(key="live_start").disabled
    clip = videos.write_video(roots / "clip.mp4", 4, size=(64, 48), rate=RATE)
    at.file_uploader(key="live_upload").set_value(("clip.mp4", clip.read_bytes(), "video/mp4")).run()
    at.button(key="live_start").click().run()
    assert not at.exception and not at.error
    session = at.session_state[SESSION_KEY]
    assert session.wait_done(TIMEOUT) and session.source == "clip.mp4"
    assert session.offered == 2  # 4 frames at 10 fps offered at 5 fps: the ones at 0.0 and 0.2 s
    assert session.video_path.parent == default_store_dir() / "videos"


def test_a_camera_session_offers_at_its_rate_and_its_recording_becomes_a_run(monkeypatch):
    """Camera frames at t = 100.0, 100.1, 100.5, 100.6, 101.2, 102.4 s with rate 2 (a period of 0.5 s): offered at
    100.0 (first), 100.5 (due), 101.2 (due at 101.0), 102.4 (late: the schedule restarts); times from the first."""
    monkeypatch.setenv("DETLENS_WORKER_AUTOSTART", "0")
    from PIL import Image

    from core.execution.live import LiveComparison, LiveSeries
    from dashboard.live_video import LiveSession, SeriesChoice, keep_recording

    now = [0.0]
    offered = []
    comparison = LiveComparison([LiveSeries("a", lambda f: offered.append(f.index)), LiveSeries("b", lambda f: None)])
    choice = SeriesChoice(SMALL, "untrained", "eager", "fp32")
    session = LiveSession(comparison, "camera", 2.0, choices=(choice,), clock=lambda: now[0], recording=True)
    for i, t in enumerate([100.0, 100.1, 100.5, 100.6, 101.2, 102.4]):
        now[0] = t
        image = Image.fromarray(videos.frame_pixels(i, 40, 30))
        shown = session.camera_frame(image)
        assert shown.size == (80, 30)  # one panel per series
    assert (session.seen, session.offered) == (6, 4)
    names = [s.name for s in session.recorded]
    assert names == ["camera#f000000@0.000s", "camera#f000002@0.500s", "camera#f000004@1.200s", "camera#f000005@2.400s"]
    run_id = keep_recording(session, "tester")
    store = Store(default_store_dir())
    assert run_pending(store) == [run_id] and not session.recorded
    inf = store.load_run(run_id)[0]
    assert inf["image_name"].tolist() == names and (inf["weights"] == "untrained").all()


@pytest.mark.parametrize(
    ("choices", "runtimes", "series"),
    [
        ([(SMALL, "untrained", "eager", "fp32")] * 2, {SMALL: ["eager-fp32"]}, [SMALL]),
        ([(SMALL, "untrained", "eager", "fp32"), (SMALL, "untrained", "onnxruntime", "fp32")],
         {SMALL: ["eager-fp32", "onnxruntime-fp32"]}, [SMALL, f"{SMALL}@onnxruntime"]),
        ([("fasterrcnn_resnet50_fpn", "untrained", "eager", "bf16"), (SMALL, "untrained", "eager", "fp32")],
         {"fasterrcnn_resnet50_fpn": ["eager-bf16"], SMALL: ["eager-fp32"]},
         ["fasterrcnn_resnet50_fpn@eager-bf16", SMALL]),
    ],
)  # fmt: skip
def test_a_kept_run_has_each_series_as_a_variant_of_its_model(choices, runtimes, series):
    from core.execution.live import LiveComparison, LiveSeries
    from dashboard.live_video import LiveSession, SeriesChoice

    session = LiveSession(LiveComparison([LiveSeries("a", lambda f: None)]), "camera", 1.0,
                          choices=tuple(SeriesChoice(*c) for c in choices))  # fmt: skip
    settings = session.settings()
    assert settings.runtimes == runtimes and settings.precision == "fp32"
    assert [s.name for s in settings.series()] == series


def test_a_kept_run_refuses_one_model_with_two_weights():
    from core.execution.live import LiveComparison, LiveSeries
    from dashboard.live_video import LiveSession, SeriesChoice

    choices = (SeriesChoice(SMALL, "untrained", "eager", "fp32"), SeriesChoice(SMALL, "default", "eager", "fp32"))
    session = LiveSession(LiveComparison([LiveSeries("a", lambda f: None)]), "camera", 1.0, choices=choices)
    with pytest.raises(ValueError, match="one weights choice per model"):
        session.settings()
