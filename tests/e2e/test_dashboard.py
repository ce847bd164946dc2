"""End to end in headless Chromium against `streamlit run`: run the headline pair, then read Gallery and Compare."""

from __future__ import annotations

import re

from core.config import GALLERY_DIR, HEADLINE_MODELS, UNTRAINED_MARK
from tests.e2e.ui import choose

RUN_TIMEOUT_MS = 300_000


OPEN_TILE = re.compile(r"^Open ")  # a Gallery tile's button: "Open NAME"


def assert_no_exception(page, artifacts_dir) -> None:
    errors = page.locator('[data-testid="stException"]')
    if errors.count():
        log = (artifacts_dir / "streamlit.log").read_text(errors="replace").splitlines()[-60:]
        raise AssertionError(f"the app shows an exception: {errors.first.inner_text()[:800]}\n" + "\n".join(log))


def assert_charts_render(page, minimum: int) -> None:
    charts = page.locator('[data-testid="stPlotlyChart"] .main-svg')
    charts.first.wait_for(state="visible", timeout=60_000)
    assert charts.count() >= minimum


def open_page(page, name: str, wait_for_app) -> None:
    page.locator('[data-testid="stSidebarNav"] a').filter(has_text=name).click()
    page.get_by_role("heading", name=name).first.wait_for(timeout=60_000)
    wait_for_app(page)


def upload_and_run_untrained(page, base_url: str, wait_for_app, files) -> None:
    """On the Run page: the headline pair with untrained weights on uploaded `files`; wait for the results."""
    page.goto(f"{base_url}/run", wait_until="domcontentloaded")
    wait_for_app(page)
    for model in HEADLINE_MODELS:
        choose(page, f"Weights: {model}", "untrained")
        wait_for_app(page)
    page.get_by_text("Upload", exact=True).click()
    wait_for_app(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(files=files)
    page.get_by_text("1 image(s) chosen.").wait_for(timeout=60_000)
    assert page.get_by_text(UNTRAINED_MARK, exact=False).count() >= 1
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("2 inference(s) added to the session").wait_for(timeout=RUN_TIMEOUT_MS)


def test_run_then_gallery_and_compare_in_a_real_browser(streamlit_server, browser_page, wait_for_app, artifacts_dir):
    page = browser_page
    upload_and_run_untrained(page, streamlit_server, wait_for_app, str(GALLERY_DIR / "cat.jpg"))
    assert_no_exception(page, artifacts_dir)
    page.screenshot(path=str(artifacts_dir / "e2e_run.png"), full_page=True)

    open_page(page, "Gallery", wait_for_app)
    thumbnail = page.locator('[data-testid="stImage"] img').first  # the grid: a thumbnail kept in the store
    thumbnail.wait_for(state="visible", timeout=60_000)
    assert page.evaluate("(img) => img.naturalWidth", thumbnail.element_handle()) > 0, "the thumbnail loaded"
    page.locator('[data-testid="stButton"]').get_by_role("button", name=OPEN_TILE).first.click()
    wait_for_app(page)
    assert_charts_render(page, 1)
    assert page.get_by_text(UNTRAINED_MARK, exact=False).count() >= 1
    assert page.get_by_text("cat.jpg").count() >= 1
    assert_no_exception(page, artifacts_dir)
    page.screenshot(path=str(artifacts_dir / "e2e_gallery.png"), full_page=True)

    open_page(page, "Compare", wait_for_app)
    assert_charts_render(page, 4)  # the Speed tab: latency, stage medians, speed versus count, published accuracy
    for tab, charts in (("Scores and classes", 3), ("Agreement", 1)):  # another tab draws its own charts when opened
        page.get_by_role("tab", name=tab).click()
        wait_for_app(page)
        assert_charts_render(page, charts)
    assert_no_exception(page, artifacts_dir)
    page.screenshot(path=str(artifacts_dir / "e2e_compare.png"), full_page=True)
    assert not [e for e in page.console_errors if "Failed to load resource" not in e]
