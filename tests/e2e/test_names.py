"""In a real browser, a hostile file name is shown as text: no element, no script, no remote fetch."""

from __future__ import annotations

from core.config import GALLERY_DIR
from tests.e2e.test_dashboard import OPEN_TILE, assert_no_exception, open_page, upload_and_run_untrained

HOSTILE = "<img src=x onerror=alert(1)>![t](http://127.0.0.1:9/t.png).png"


def test_a_hostile_file_name_renders_as_text(streamlit_server, browser_page, wait_for_app, artifacts_dir):
    page = browser_page
    dialogs, requests = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: requests.append(r.url))
    data = (GALLERY_DIR / "coffee.jpg").read_bytes()
    upload_and_run_untrained(
        page, streamlit_server, wait_for_app, [{"name": HOSTILE, "mimeType": "image/png", "buffer": data}]
    )

    open_page(page, "Gallery", wait_for_app)  # the grid: the name in its tile's caption, long names cut in the middle
    page.get_by_text(HOSTILE[:10], exact=False).first.wait_for(timeout=30_000)
    assert page.locator('img[src="x"]').count() == 0
    page.locator('[data-testid="stButton"]').get_by_role("button", name=OPEN_TILE).first.click()
    wait_for_app(page)  # the opened image: its name as the heading, still text
    page.get_by_role("heading").filter(has_text=HOSTILE).first.wait_for(timeout=30_000)
    page.screenshot(path=str(artifacts_dir / "e2e_hostile_name.png"), full_page=True)
    assert page.locator('img[src="x"]').count() == 0
    assert not dialogs
    assert not [u for u in requests if "t.png" in u]
    assert_no_exception(page, artifacts_dir)
