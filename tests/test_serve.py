"""dashboard.serve: the app imported and the newest finished run opened before the server listens."""

from __future__ import annotations

import sys

import pytest

from core.store import Store
from dashboard import cache, serve
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
    assert serve.open_newest_run() == opened
    assert loads == ([opened] if opened else [])
    if opened:
        frame = cache.run_frame(opened)  # what a page asks for: no second load
        assert loads == [opened] and len(frame.inferences) > 0


def test_every_dashboard_module_is_imported_ahead():
    names = serve.import_app()
    assert "dashboard.gallery" in names and "dashboard.figures.detections" in names
    assert not set(names) & serve.SKIPPED
    assert all(n in sys.modules for n in names)
