"""In a real browser, a hostile file name is shown as text: no element, no script, no remote fetch."""

from __future__ import annotations

from core.config import GALLERY_DIR, HEADLINE_MODELS
from tests.e2e.test_dashboard import RUN_TIMEOUT_MS, assert_no_exception, choose, open_page

HOSTILE = "<img src=x onerror=alert(1)>![t](http://127.0.0.1:9/t.png).png"


def test_a_hostile_file_name_renders_as_text(streamlit_server, browser_page, wait_for_app, artifacts_dir):
    page = browser_page
    dialogs, requests = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{streamlit_server}/run", wait_until="domcontentloaded")
    wait_for_app(page)
    for model in HEADLINE_MODELS:
        choose(page, f"Weights: {model}", "untrained")
        wait_for_app(page)
    page.get_by_text("Upload", exact=True).click()
    wait_for_app(page)
    data = (GALLERY_DIR / "coffee.jpg").read_bytes()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        files=[{"name": HOSTILE, "mimeType": "image/png", "buffer": data}]
    )
    page.get_by_text("1 image(s) chosen.").wait_for(timeout=60_000)
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("inference(s) added to the session").first.wait_for(timeout=RUN_TIMEOUT_MS)

    open_page(page, "Gallery", wait_for_app)
    page.get_by_text("Thumbnails").click()
    wait_for_app(page)
    page.get_by_text(HOSTILE, exact=False).first.wait_for(timeout=30_000)
    page.screenshot(path=str(artifacts_dir / "e2e_hostile_name.png"), full_page=True)
    assert page.locator('img[src="x"]').count() == 0
    assert not dialogs
    assert not [u for u in requests if "t.png" in u]
    assert_no_exception(page, artifacts_dir)
