"""The look of every page in Chromium at 1280x800 and 1920x1080, with a finished run (untrained, four photos): no
console error, no clipped text in buttons, labels and captions, the key columns of each table in view; full-page
screenshots in test-artifacts/ (tests/e2e/look.py holds the checks, shared with scripts/screenshots.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e import look


@pytest.fixture(scope="module")
def look_server(tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path):
    store = tmp_path_factory.mktemp("look-store")
    run_id = look.make_store(store)
    with look.server(store, artifacts_dir / "streamlit-look.log") as url:
        yield url, run_id


@pytest.mark.parametrize("size", look.SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("page", list(look.PAGES), ids=lambda p: p or "home")
def test_every_page_looks_finished(browser, look_server, artifacts_dir, page, size):
    url, run_id = look_server
    result = look.check_page(browser, url, page, run_id, size, artifacts_dir)
    assert result.screenshot is not None and result.screenshot.is_file()
    assert result.problems == [], f"{result.page} at {size}: see {result.screenshot}"
