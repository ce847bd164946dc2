"""Browser helpers shared by the end-to-end tests: wait for a settled page, pick a selectbox option."""

from __future__ import annotations

APP_RUN_TIMEOUT_MS = 120_000  # first run imports torch and friends: slow on a small CI machine


SETTLED_JS = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return app !== null
        && app.getAttribute('data-test-connection-state') === 'CONNECTED'
        && app.getAttribute('data-test-script-state') === 'notRunning'
        && document.querySelector('[data-testid="stElementContainer"][data-stale="true"]') === null;
}"""


def settle(page, timeout_ms: int = APP_RUN_TIMEOUT_MS) -> None:
    """Wait until the page is connected, its script run has finished and no element of an earlier run is left.

    A rerun redraws moved widgets beside their stale copies until it ends; a click in that window finds two elements
    with one label (a CI flake: strict mode violation on "Weights: ..."), so all three conditions are checked at once.
    """
    page.wait_for_function(SETTLED_JS, timeout=timeout_ms)


def choose(page, label: str, option: str, attempts: int = 4) -> None:
    """Pick `option` in the selectbox labelled `label`.

    Waits until the page is settled and exactly one box carries the label (a rerun may still be redrawing it beside a
    stale copy), and opens the list again when a rerun that started just after the click redrew the box with its list
    closed (a CI flake: the option never appeared).
    """
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect

    box = page.get_by_label(label, exact=True)
    for attempt in range(attempts):
        settle(page)
        expect(box).to_have_count(1, timeout=APP_RUN_TIMEOUT_MS)
        try:
            box.click(timeout=15_000)
            page.get_by_role("option", name=option, exact=True).click(timeout=15_000)
            return
        except PlaywrightError:  # a timeout, or a rerun that drew a second box between the count and the click
            if attempt == attempts - 1:
                raise
            page.keyboard.press("Escape")
