"""The pages' RunFrame views (dashboard.runviews) against hand counts on a small run, and against the image-by-image
matching; pages run on a stored run of thousands of boxes."""

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
from tests import factories
from tests.test_analytics import MODELS, random_run
from tests.test_matching import reference_agreement

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")


A, B = "fasterrcnn_resnet50_fpn", "ssdlite320_mobilenet_v3_large"
OLD_RUN = "20251231-000000-aaaaaa"  # sorts before factories.RUN: an earlier run of the same (image, model)


def hand_run() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three photos, models A and B (IoUs by hand: same box 1.0; (0,0,100,100) against (0,0,100,60) 0.6).

    cat.jpg (A 900 ms, B 30 ms): A cat 0.95 and dog 0.9; B the same cat 0.8 and a cup 0.3 far from everything.
    coffee.jpg (A 1100 ms, B 35 ms): A cup 0.85 (0,0,100,100); B cup 0.7 (0,0,100,60) and cup 0.8 far away.
    rocket.jpg (A 50 ms, B failed): A person 0.6; an earlier run of A there saw a person 0.99 (not the latest run).
    """
    cat, coffee, rocket = (factories.gallery_ref(n) for n in ("cat.jpg", "coffee.jpg", "rocket.jpg"))
    inf = [
        factories.inference(cat, A, total=900), factories.inference(cat, B, total=30),
        factories.inference(coffee, A, total=1100), factories.inference(coffee, B, total=35),
        factories.inference(rocket, A, total=50) | {"run_id": OLD_RUN}, factories.inference(rocket, A, total=50),
        factories.inference(rocket, B, total=40, error="bad image"),
    ]  # fmt: skip
    det = [
        factories.box(cat, A, "cat", 0.95, (10, 10, 60, 50)), factories.box(cat, A, "dog", 0.9, (200, 100, 300, 200)),
        factories.box(cat, B, "cat", 0.8, (10, 10, 60, 50)), factories.box(cat, B, "cup", 0.3, (5, 5, 15, 15)),
        factories.box(coffee, A, "cup", 0.85, (0, 0, 100, 100)), factories.box(coffee, B, "cup", 0.7, (0, 0, 100, 60)),
        factories.box(coffee, B, "cup", 0.8, (300, 300, 350, 350)),
        factories.box(rocket, A, "person", 0.99, (0, 0, 10, 10)) | {"run_id": OLD_RUN},
        factories.box(rocket, A, "person", 0.6, (0, 0, 10, 10)),
    ]  # fmt: skip
    return factories.tables(inf, det)


# Per photo: (boxes per model, median latency of its successful rows, failed rows, unmatched boxes between A and B).
IMAGE_TABLE_CASES = [
    ((A, B), 0.0, None, {"cat.jpg": ((2, 2), 465.0, 0, 2), "coffee.jpg": ((1, 2), 567.5, 0, 1),
                         "rocket.jpg": ((1, 0), 50.0, 1, 1)}),
    ((A, B), 0.5, None, {"cat.jpg": ((2, 1), 465.0, 0, 1), "coffee.jpg": ((1, 2), 567.5, 0, 1),
                         "rocket.jpg": ((1, 0), 50.0, 1, 1)}),
    ((A, B), 0.85, None, {"cat.jpg": ((2, 0), 465.0, 0, 2), "coffee.jpg": ((1, 0), 567.5, 0, 1),
                          "rocket.jpg": ((0, 0), 50.0, 1, 0)}),  # the earlier run's 0.99 person is not shown
    ((A, B), 0.0, ["cup"], {"cat.jpg": ((0, 1), 465.0, 0, 1), "coffee.jpg": ((1, 2), 567.5, 0, 1),
                            "rocket.jpg": ((0, 0), 50.0, 1, 0)}),
    ((A, B), 0.75, ["cup", "cat"], {"cat.jpg": ((1, 1), 465.0, 0, 0), "coffee.jpg": ((1, 1), 567.5, 0, 2),
                                    "rocket.jpg": ((0, 0), 50.0, 1, 0)}),
    ((A,), 0.0, None, {"cat.jpg": ((2,), 900.0, 0, 0), "coffee.jpg": ((1,), 1100.0, 0, 0),
                       "rocket.jpg": ((1,), 50.0, 0, 0)}),
    ((B,), 0.5, ["cup"], {"cat.jpg": ((0,), 30.0, 0, 0), "coffee.jpg": ((2,), 35.0, 0, 0),
                          "rocket.jpg": ((0,), math.nan, 1, 0)}),
]  # fmt: skip


@pytest.mark.parametrize(("models", "threshold", "classes", "expected"), IMAGE_TABLE_CASES)
def test_image_table_counts_latency_errors_and_disagreement_by_hand(models, threshold, classes, expected):
    inf, det = hand_run()
    got = runviews.image_table(RunFrame.from_frames(inf, det), list(models), threshold, classes)
    assert sorted(got["image_name"]) == sorted(expected)
    for row in got.itertuples(index=False):
        counts, latency, errors, disagreement = expected[row.image_name]
        assert row.per_model == dict(zip(models, counts, strict=True)), row.image_name
        assert row.detections == sum(counts), row.image_name
        assert row.latency_ms == latency or (math.isnan(latency) and math.isnan(row.latency_ms)), row.image_name
        assert (row.errors, row.disagreement) == (errors, disagreement), row.image_name


def test_image_table_without_disagreement_and_of_unknown_models():
    inf, det = hand_run()
    rf = RunFrame.from_frames(inf, det)
    assert runviews.image_table(rf, [A, B], 0.0, disagree=False)["disagreement"].eq(0).all()
    assert runviews.image_table(rf, ["no_such_model"], 0.0).empty


# (both, only A, only B per photo both models processed; mean IoU of the matched pairs): rocket.jpg is left out (B failed)
PAIR_CASES = [
    (0.0, {"cat.jpg": (1, 1, 1), "coffee.jpg": (1, 0, 1)}, 0.8),
    (0.5, {"cat.jpg": (1, 1, 0), "coffee.jpg": (1, 0, 1)}, 0.8),
    (0.75, {"cat.jpg": (1, 1, 0), "coffee.jpg": (0, 1, 1)}, 1.0),  # B's 0.7 cup, the one that overlaps, drops out
    (0.85, {"cat.jpg": (0, 2, 0), "coffee.jpg": (0, 1, 0)}, math.nan),
]


@pytest.mark.parametrize(("threshold", "per_image", "mean_iou"), PAIR_CASES)
def test_pair_agreement_by_hand(threshold, per_image, mean_iou):
    inf, det = hand_run()
    got = runviews.pair_agreement(RunFrame.from_frames(inf, det), A, B, threshold)
    names = dict(zip(inf["image_id"], inf["image_name"], strict=False))
    shown = {names[r.image_id]: (r.both, r.only_a, r.only_b) for r in got.per_image.itertuples(index=False)}
    assert shown == per_image
    assert (got.both, got.only_a, got.only_b) == tuple(sum(v[k] for v in per_image.values()) for k in range(3))
    assert got.mean_iou == pytest.approx(mean_iou, nan_ok=True)


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
