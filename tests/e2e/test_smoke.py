"""Smoke test in a real browser: the dashboard opens, says its name, and shows no exception."""

from __future__ import annotations


def test_dashboard_opens_without_errors(streamlit_server, browser_page, wait_for_app, artifacts_dir):
    page = browser_page
    page.goto(streamlit_server, wait_until="domcontentloaded")
    wait_for_app(page)
    page.get_by_text("DetLens").first.wait_for(state="visible", timeout=60_000)
    page.screenshot(path=str(artifacts_dir / "smoke.png"), full_page=True)
    exceptions = page.locator('[data-testid="stException"]')
    if exceptions.count():
        # The server log holds the full traceback.
        log = (artifacts_dir / "streamlit.log").read_text(errors="replace").splitlines()[-60:]
        raise AssertionError(
            f"the app shows an exception: {exceptions.first.inner_text()[:500]}\nserver log:\n" + "\n".join(log)
        )
