"""The sidebar's run counts come from the store: Home, which shows no records, opens a stored run without loading its
RunFrame (the 2-million-box load that made Home the slowest page in Chromium, issue #22)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.analytics import load_run_frame
from core.store import Store

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "dashboard" / "app.py")


def bench_pages():
    spec = importlib.util.spec_from_file_location("bench_pages", ROOT / "scripts" / "bench_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("images", "boxes"), [(12, 300), (5, 0)])
def test_home_shows_the_runs_counts_without_loading_it(private_run_store, monkeypatch, images, boxes):
    bp = bench_pages()
    bp.build(private_run_store, images, boxes)
    rf = load_run_frame(Store(private_run_store), bp.RUN_ID)  # the figures the sidebar said from the frame
    expected = f"Run: {rf.inferences['image_id'].nunique()} images, {len(rf.inferences)} inferences, {rf.n_boxes} boxes"
    from dashboard import cache

    loads = []
    monkeypatch.setattr(cache, "load_run_frame", lambda *a: loads.append(a) or load_run_frame(*a))
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["run"] = bp.RUN_ID
    at.run()
    assert not at.exception and at.title[0].value == "DetLens"
    assert expected in [c.value for c in at.sidebar.caption]
    assert loads == [], "Home loaded the run's RunFrame"
    at.switch_page("../pages/data.py").run()
    assert not at.exception
    assert len(loads) == 1 and expected in [c.value for c in at.sidebar.caption]


def test_counts_of_an_unknown_run_are_refused(tmp_path):
    from core.store import StoreError

    with pytest.raises(StoreError):
        Store(tmp_path).run_counts("20260101-000000-nope")
