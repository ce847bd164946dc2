"""The pages' RunFrame views give the tables of the pandas views they replace; pages run on a stored run of
thousands of boxes."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.analytics import RunFrame
from core.records import RunInfo, latest_run
from core.store import Store
from dashboard import cache, figures, runviews, views
from tests.test_analytics import MODELS, random_run
from tests.test_matching import reference_agreement

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.57])
@pytest.mark.parametrize("classes", [None, ["cup", "dog"]])
def test_image_table_matches_the_pandas_view(threshold, classes):
    inf, det = random_run(7, n_images=25, n_boxes=500)
    models = list(MODELS[:2])
    expected = views.image_table(inf, det, models, threshold, classes).set_index("image_id").sort_index()
    got = runviews.image_table(RunFrame.from_frames(inf, det), models, threshold, classes)
    got = got.set_index("image_id").sort_index()
    for column in ("image_name", "detections", "latency_ms", "errors", "disagreement", "per_model"):
        pd.testing.assert_series_equal(got[column], expected[column], check_dtype=False, obj=column)


@pytest.mark.parametrize("threshold", [0.1, 0.5, 0.8])
def test_pair_agreement_matches_the_pandas_view(threshold):
    inf, det = random_run(8, n_images=25, n_boxes=800)
    a, b = MODELS[0], MODELS[1]
    expected = views.pair_agreement(inf, det, a, b, threshold)
    got = runviews.pair_agreement(RunFrame.from_frames(inf, det), a, b, threshold)
    assert (got.both, got.only_a, got.only_b) == (expected.both, expected.only_a, expected.only_b)
    pd.testing.assert_frame_equal(got.per_image, expected.per_image)


@pytest.mark.parametrize("threshold", [0.0, 0.4])
def test_pair_agreement_equals_image_by_image_matching(threshold):
    """The vectorised whole-run matching on the frame's arrays gives the former per-image `match_boxes` loop's
    numbers exactly (mean IoUs included)."""
    inf, det = random_run(9, n_images=30, n_boxes=1500)
    x1, y1 = (det["x1"] // 125) * 125, (det["y1"] // 125) * 125  # a coarse grid: many competing overlaps, ties
    det = det.assign(x1=x1, y1=y1, x2=x1 + 100, y2=y1 + 100 - 20 * (det["score"] > 0.5))
    a, b = MODELS[0], MODELS[1]
    ok = inf[inf["error"] == ""]
    ids = sorted(set(ok.loc[ok["model"] == a, "image_id"]) & set(ok.loc[ok["model"] == b, "image_id"]))
    expected, mean_iou = reference_agreement(latest_run(det), threshold, ids, a, b)
    got = runviews.pair_agreement(RunFrame.from_frames(inf, det), a, b, threshold)
    pd.testing.assert_frame_equal(got.per_image, expected, check_exact=True)
    assert got.both > 30  # real competition for boxes
    assert got.mean_iou == mean_iou or (math.isnan(got.mean_iou) and math.isnan(mean_iou))


def test_compare_static_is_built_once_per_frame():
    inf, det = random_run(10, n_images=12, n_boxes=200)
    rf = RunFrame.from_frames(inf, det)
    static = runviews.compare_static(rf)
    assert runviews.compare_static(rf) is static  # remembered with the frame: no rebuild on a rerun
    assert static["models"] == list(dict.fromkeys(inf["model"]))
    pd.testing.assert_frame_equal(static["card"], figures.model_card(inf, cache.model_table()))
    assert static["names"] == views.image_names(inf)


@pytest.mark.parametrize(
    ("models", "name", "errors"), [((), "", False), ((MODELS[1],), "photo_1", False), ((), "", True)]
)
def test_data_filter_keeps_the_boxes_the_pandas_page_kept(models, name, errors):
    inf, det = random_run(9)
    view, index = runviews.data_filter(RunFrame.from_frames(inf, det), models, name, errors)
    rf = RunFrame.from_frames(inf, det)
    expected = det[det["image_id"].isin(view["image_id"]) & det["model"].isin(view["model"])]
    assert len(index) == len(expected)
    got = runviews.detection_page(rf, index, 1, 10**9)
    assert sorted(got["score"]) == sorted(expected["score"])


def test_pages_run_on_a_stored_run_of_thousands_of_boxes(private_run_store):
    inf, det = random_run(10, n_images=200, n_boxes=6000)
    store = Store(private_run_store)
    store.start_run(RunInfo("run-big", "2026-01-01T00:00:00+00:00", {"models": list(MODELS)}))
    store.add_records("run-big", inf.assign(run_id="run-big"), det.assign(run_id="run-big"))
    store.finish_run("run-big")
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["run"] = "run-big"
    at.run()
    for page in ("pages/gallery.py", "pages/compare.py", "pages/data.py"):
        at.switch_page(f"../{page}").run()
        assert not at.exception, page
        at.session_state["detlens_threshold"] = 0.35
        at.run()
        assert not at.exception, page
    assert "6000 rows" in " ".join(s.value for s in at.subheader)  # Data: every box counted, one page shown
    assert max(len(df.value) for df in at.dataframe) <= 500  # a page, not the table
