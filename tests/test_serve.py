"""dashboard.serve: the app imported and the newest finished run opened before the server listens."""

from __future__ import annotations

import functools
import sys

import pytest
from streamlit.testing.v1 import AppTest

from core.store import Store
from dashboard import cache, runviews, serve
from tests.factories import ground_truth_run


@pytest.fixture
def store_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DETLENS_STORE", str(tmp_path))
    return tmp_path


def stored(store_dir, run_id: str, day: int, *, finish: bool = True) -> None:
    ground_truth_run(store_dir, run_id, created_at=f"2026-01-{day:02d}T00:00:00+00:00")
    if finish:
        Store(store_dir).finish_run(run_id)


@pytest.mark.parametrize(
    ("runs", "opened"),
    [
        ([], None),
        ([("old", 1, True), ("new", 2, True)], "new"),
        ([("old", 1, True), ("new", 2, True), ("running", 3, False)], "new"),  # a run still being written: not yet
    ],
)
def test_the_newest_finished_run_is_opened_into_the_pages_cache(store_dir, monkeypatch, runs, opened):
    for run_id, day, finish in runs:
        stored(store_dir, run_id, day, finish=finish)
    loads = []
    real = cache.load_run_frame
    monkeypatch.setattr(cache, "load_run_frame", lambda s, r: loads.append(r) or real(s, r))
    counts, images = [], []
    monkeypatch.setattr(cache.Store, "run_counts", lambda self, r, real=cache.Store.run_counts: counts.append(r)
                        or real(self, r))  # fmt: skip
    monkeypatch.setattr(cache.Store, "run_images", lambda self, r, real=cache.Store.run_images: images.append(r)
                        or real(self, r))  # fmt: skip
    assert serve.open_newest_run() == opened
    assert loads == counts == images == ([opened] if opened else [])
    if opened:  # what a page asks for: no second load, count or listing
        frame, n, kept = cache.run_frame(opened), cache.run_counts(opened), cache.run_images(opened)
        assert loads == counts == images == [opened] and len(frame.inferences) > 0
        assert n == Store(store_dir).run_counts(opened) and kept.keys() == Store(store_dir).run_images(opened).keys()


def test_compare_and_the_gallery_find_what_they_first_show_built(store_dir, monkeypatch):
    """A link to the newest run on a fresh server: Compare's and the Gallery's first script runs build none of the
    aggregates serve.warm_default_views built (same keys as the pages', default sidebar)."""
    stored(store_dir, "new", 2)
    assert serve.open_newest_run() == "new"
    built = []
    real = runviews.memo

    def counting_memo(rf, fn, *args):
        @functools.wraps(fn)
        def build(*a):
            built.append(fn.__name__)
            return fn(*a)

        return real(rf, build, *args)

    monkeypatch.setattr(runviews, "memo", counting_memo)
    at = AppTest.from_file(str(serve.APP), default_timeout=120)
    at.query_params["run"] = "new"
    at.switch_page("../pages/compare.py").run()
    assert not at.exception and at.title[0].value == "Compare"
    at.switch_page("../pages/gallery.py").run()
    assert not at.exception and at.title[0].value == "Gallery"
    warmed = {"_compare_static", "_compare_data", "_runtime_rows", "labels_above", "_image_table"}
    assert not warmed & set(built), f"built again on the first visit: {sorted(warmed & set(built))}"


def test_what_is_loaded_before_the_server_starts_is_frozen_out_of_the_collector(monkeypatch):
    """Streamlit collects every generation after each script run (runner.postScriptGC): torch's objects frozen
    first, that collection walks only what the sessions made."""
    frozen = []
    monkeypatch.setattr(serve.gc, "freeze", lambda: frozen.append(len(sys.modules)))
    monkeypatch.setattr(serve.gc, "get_freeze_count", lambda: 7)
    assert serve.freeze_loaded() == 7
    assert len(frozen) == 1 and "torch" in sys.modules and "dashboard.cache" in sys.modules


def test_the_server_starts_after_the_app_is_loaded_and_frozen(store_dir, monkeypatch):
    steps = []
    monkeypatch.setattr(serve, "import_app", lambda: steps.append("import"))
    monkeypatch.setattr(serve, "open_newest_run", lambda: steps.append("open"))
    monkeypatch.setattr(serve, "freeze_loaded", lambda: steps.append("freeze"))
    from streamlit.web import cli as stcli

    monkeypatch.setattr(stcli, "main", lambda: steps.append(("serve", sys.argv[1:3])) or 0)
    assert serve.main(["--server.port", "1"]) == 0
    assert steps == ["import", "open", "freeze", ("serve", ["run", str(serve.APP)])]


def test_every_dashboard_module_is_imported_ahead():
    names = serve.import_app()
    assert "dashboard.gallery" in names and "dashboard.figures.detections" in names
    assert not set(names) & serve.SKIPPED
    assert all(n in sys.modules for n in names)


def test_the_server_runs_on_streamlits_fast_http_parser_and_event_loop():
    """requirements.txt's `streamlit[performance]`: uvicorn picks httptools, Streamlit's bootstrap picks uvloop.

    Without them a new visitor's ~65 script files came through h11 on the stdlib loop (docs/performance.md, "The
    server": Data 0.6-0.8 s, Compare 0.4-0.7 s later in Chromium). Streamlit leaves uvicorn's `http` at "auto".
    """
    import uvicorn  # here, not at the top: a missing extra fails this test, not the file's collection
    import uvloop
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    config = uvicorn.Config(app=None, http="auto")
    config.load()
    assert config.http_protocol_class is HttpToolsProtocol
    loop = uvloop.new_event_loop()  # what Streamlit's bootstrap runs the server on when uvloop imports
    loop.close()
