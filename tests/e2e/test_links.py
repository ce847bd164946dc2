"""A copied link survives a server restart: the same stored run, image and threshold open in a fresh browser."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import GALLERY_DIR
from core.execution.runner import RunSettings, run
from core.images import ImageSource
from core.records import RunInfo, new_run_id, now_iso
from core.store import Store, record_into
from tests.e2e import serving

SMALL = "ssdlite320_mobilenet_v3_large"


@contextlib.contextmanager
def server(store: Path, log_path: Path) -> Iterator[str]:
    """`streamlit run` on a free port over the given run store; yields the base URL."""
    try:
        with serving.streamlit(store, log_path) as url:
            yield url
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


def stored_run(store: Path) -> tuple[str, str]:
    """A finished run of SSDLite (untrained) on two gallery photos; returns (run_id, coffee.jpg's image id)."""
    sources = [ImageSource.from_path(GALLERY_DIR / n).hashed() for n in ("cat.jpg", "coffee.jpg")]
    s = Store(store)
    run_id = new_run_id()
    settings = RunSettings([SMALL], "untrained", device="cpu", warmup=0)
    s.start_run(RunInfo(run_id, now_iso(), {"models": [SMALL]}))
    output = run(sources, settings, run_id=run_id, on_result=record_into(s, run_id, 0.5, sources=sources))
    s.finish_run(run_id, info=output.info)
    return run_id, sources[1].image_id


def open_link(browser, url: str, wait_for_app, artifacts_dir: Path, shot: str) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        page.goto(url, wait_until="domcontentloaded")
        wait_for_app(page)
        page.get_by_role("heading", name="Gallery").first.wait_for(timeout=60_000)
        page.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for(state="visible", timeout=60_000)
        page.screenshot(path=str(artifacts_dir / shot), full_page=True)
        assert page.get_by_text("coffee.jpg").count() >= 1, "the linked image is shown"
        assert page.get_by_text("Viewing stored run").count() == 1
        assert page.locator('[data-testid="stSidebar"]').get_by_text("0.30", exact=True).count() == 1
        assert page.locator('[data-testid="stException"]').count() == 0
    finally:
        context.close()


def test_a_link_opens_the_same_view_after_a_server_restart(browser, wait_for_app, artifacts_dir, tmp_path):
    store = tmp_path / "store"
    run_id, coffee = stored_run(store)
    link = f"/gallery?run={run_id}&image={coffee}&t=0.3"
    with server(store, artifacts_dir / "streamlit-link-1.log") as base:
        open_link(browser, base + link, wait_for_app, artifacts_dir, "e2e_link_before_restart.png")
    with server(store, artifacts_dir / "streamlit-link-2.log") as base:  # a new process: nothing in memory
        open_link(browser, base + link, wait_for_app, artifacts_dir, "e2e_link_after_restart.png")
