"""The Live page's camera path in headless Chromium with its fake camera: a generated .y4m plays as the webcam
(`--use-file-for-fake-video-capture`), permission is granted without a prompt, frames go through WebRTC
(streamlit-webrtc, no STUN server) to two untrained SSDLite series in the server, and the page shows their boxes,
counts and moving charts. Every wait is on a condition: nothing here sleeps a fixed time."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import videos
from tests.e2e.conftest import CHROMIUM_ARGS
from tests.e2e.ui import choose

SMALL = "ssdlite320_mobilenet_v3_large"
CAMERA_TIMEOUT_MS = 180_000  # the first frames need the models loaded and WebRTC connected on a loaded 2-core box

PROCESSED_JS = r"""(least) => {
    const text = document.body.innerText;
    const counts = [...text.matchAll(/(\d+) processed, \d+ dropped[^\n]*?, (\d+) box\(es\) on frame/g)];
    return counts.length === 2 && counts.every(m => Number(m[1]) >= least && Number(m[2]) > 0);
}"""

CHARTS_JS = """() => {
    const plots = [...document.querySelectorAll('.js-plotly-plot')];
    const withData = plots.filter(p => (p.calcdata || []).some(trace => trace.length >= 2));
    return withData.length >= 3;
}"""


@pytest.fixture(scope="module")
def camera_file(tmp_path_factory) -> Path:
    """A 2-second 320x240 clip in Y4M (Chromium loops it as the camera)."""
    return videos.write_video(
        tmp_path_factory.mktemp("camera") / "camera.y4m", 20, size=(320, 240), rate=10, codec="rawvideo"
    )


@pytest.fixture(scope="module")
def camera_browser(playwright_instance, chromium_executable, camera_file):
    args = [
        *CHROMIUM_ARGS,
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={camera_file}",
    ]
    browser = playwright_instance.chromium.launch(executable_path=str(chromium_executable), headless=True, args=args)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def camera_page(camera_browser, artifacts_dir, request):
    context = camera_browser.new_context(viewport={"width": 1400, "height": 1600}, permissions=["camera"])
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        yield page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            page.screenshot(path=str(artifacts_dir / "live_camera.png"), full_page=True)
        context.close()


def wait_on(page, js: str, arg, what: str) -> None:
    """Wait for `js` to hold; on a timeout, fail with what the page said about its source and series."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(js, arg=arg, timeout=CAMERA_TIMEOUT_MS)
    except PlaywrightTimeout:
        lines = [line for line in page.inner_text("body").splitlines() if "processed" in line or "offered" in line]
        raise AssertionError(f"timed out waiting for {what}; the page says: {lines}") from None


@pytest.mark.slow
def test_the_camera_feeds_two_series_that_draw_boxes_and_move_the_charts(streamlit_server, camera_page, wait_for_app):
    page = camera_page
    page.goto(f"{streamlit_server}/live?t=0", wait_until="domcontentloaded")  # threshold 0: untrained boxes show
    wait_for_app(page)
    for i in (1, 2):
        choose(page, f"Model {i}", SMALL)
        wait_for_app(page)
        choose(page, f"Weights {i}", "untrained")
        wait_for_app(page)
    page.get_by_text("Camera", exact=True).click()
    wait_for_app(page)
    page.get_by_role("button", name="Start", exact=True).click()
    wait_for_app(page)
    frame = page.frame_locator("iframe[title*='streamlit_webrtc']")
    frame.get_by_role("button", name=re.compile("^start$", re.IGNORECASE)).click(timeout=CAMERA_TIMEOUT_MS)
    wait_on(page, PROCESSED_JS, 3, "both series to process frames with boxes")
    wait_on(page, CHARTS_JS, None, "the charts to move")
    assert page.get_by_text("camera on").count() >= 1
    assert page.get_by_text("untrained weights: not real detections").count() >= 1
    video = frame.locator("video")
    page.wait_for_function(
        "(el) => el.readyState >= 2 && el.videoWidth === 640",  # the frame comes back as two panels side by side
        arg=video.element_handle(timeout=CAMERA_TIMEOUT_MS),
        timeout=CAMERA_TIMEOUT_MS,
    )
