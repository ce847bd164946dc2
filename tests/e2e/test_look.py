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


# Streamlit's markup for a metric label and a multiselect's chips (1.67), at a given width: what CLIPPED_JS must flag
_METRIC = '<div data-testid="stMetricLabel" style="width:{w}px;overflow:hidden;white-space:nowrap;text-overflow:ellipsis">{text}</div>'  # noqa: E501
_CHIPS = ('<div data-testid="stMultiSelectTagsContainer" style="display:flex;width:{w}px;overflow-x:auto">'
          '<span data-tag style="display:flex;flex:none"><span title="{text}" style="white-space:nowrap">{text}</span>'
          '</span><span data-tag style="display:flex;flex:none"><span title="b" style="white-space:nowrap">b</span></span>'
          '</div>')  # fmt: skip
_CHIP_CUT = ('<span data-tag style="display:flex;width:{w}px"><span title="{text}" style="overflow:hidden;'
             'white-space:nowrap;text-overflow:ellipsis">{text}</span></span>')  # fmt: skip


@pytest.mark.parametrize(
    ("markup", "width", "flagged"),
    [
        (_METRIC, 60, True),  # "Only fasterrcnn_r..."
        (_METRIC, 600, False),
        (_CHIPS, 120, True),  # the second chip scrolled out of the box
        (_CHIPS, 600, False),
        (_CHIP_CUT, 60, True),  # "ssdlite32..."
        (_CHIP_CUT, 600, False),
    ],
)
def test_the_clipping_check_sees_cut_metric_labels_and_chips(browser_page, markup, width, flagged):
    text = "ssdlite320_mobilenet_v3_large"
    browser_page.set_content(f"<body>{markup.format(w=width, text=text)}</body>")
    found = browser_page.evaluate(look.CLIPPED_JS)
    assert bool(found) is flagged, found
    assert all(text in f for f in found)
