"""Per-class thresholds (#23): the vectorised filter against a pandas merge, the RunFrame views the Gallery and Compare
use, the thresholds JSON round trip, and the pages' "Per-class thresholds" toggle (AppTest)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from core.analytics import RunFrame, queries
from core.analytics.thresholds import ClassThresholds, row_thresholds
from core.compare.matching import compare_models
from core.evaluate.operating import OperatingPoint, ThresholdsFileError, read_thresholds_json, thresholds_json
from core.records import latest_run
from dashboard import runviews
from tests import factories
from tests import test_gallery as gallery_test
from tests.test_analytics import MODELS, random_run
from tests.test_pages import compare_tab, metrics, open_page, texts

A, B = MODELS[0], MODELS[1]

# (per-model thresholds, global default): one model, two, a class absent from the run, a threshold of 0 and of 1
CASES = [
    ({A: {"person": 0.8, "car": 0.2}}, 0.5),
    ({A: {"dog": 0.9}, B: {"dog": 0.1, "cup": 0.6}}, 0.3),
    ({B: {"giraffe": 0.9, "person": 0.0}, MODELS[2]: {"N/A": 1.0}}, 0.57),
    ({"not a model": {"person": 0.99}}, 0.4),
    ({}, 0.333),
]


def reference_kept(det: pd.DataFrame, per_model: dict, default: float) -> pd.DataFrame:
    """The boxes at or above their threshold, by pandas: the thresholds merged onto the boxes by (model, label)."""
    table = pd.DataFrame(
        [(m, c, t) for m, classes in per_model.items() for c, t in classes.items()],
        columns=["model", "label", "t"],
    ).astype({"model": "string", "label": "string", "t": "float64"})
    merged = det.merge(table, on=["model", "label"], how="left")
    return det[(merged["score"] >= merged["t"].fillna(default)).to_numpy()]


def kept_case(per_model: dict, default: float, seed: int, **size: int):  # noqa: ANN201
    """A random run (latest rows), its RunFrame, the thresholds and the boxes the pandas reference keeps."""
    inf, det = random_run(seed, **size)
    det = latest_run(det)
    return (
        inf,
        det,
        RunFrame.from_frames(inf, det),
        ClassThresholds.of(per_model, default),
        reference_kept(det, per_model, default),
    )


@pytest.mark.parametrize(("per_model", "default"), CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_box_mask_keeps_the_boxes_at_or_above_their_class_threshold(seed, per_model, default):
    inf, det, rf, th, want = kept_case(per_model, default, seed)
    got = queries.boxes(rf, th)
    key = ["image_id", "model", "label", "score", "x1"]
    pd.testing.assert_frame_equal(
        got[key].sort_values(key).reset_index(drop=True), want[key].sort_values(key).reset_index(drop=True),
        check_dtype=False,
    )  # fmt: skip
    matrix = queries.count_matrix(rf, th)
    expected = want.groupby(["image_id", "model"]).size()
    got_counts = {(rf.image_ids[i], rf.models[m]): int(matrix[i, m]) for i, m in zip(*np.nonzero(matrix), strict=True)}
    assert got_counts == {k: int(v) for k, v in expected.items()}
    classes = queries.class_counts(rf, th)
    assert dict(zip(zip(classes["label"], classes["model"], strict=True), classes["boxes"], strict=True)) == dict(
        want.groupby(["label", "model"]).size()
    )
    assert queries.labels_above(rf, th) == sorted(want["label"].unique())


@pytest.mark.parametrize(("per_model", "default"), CASES[:3])
def test_one_images_boxes_and_the_gallery_table_follow_the_thresholds(per_model, default):
    inf, det, rf, th, want = kept_case(per_model, default, 3, n_images=12, n_boxes=300)
    for image_id in ["img000", "img005", "img011"]:
        got = queries.image_boxes(rf, image_id, th)
        assert sorted(got["score"]) == sorted(want.loc[want["image_id"] == image_id, "score"])
    table = runviews.image_table(rf, list(MODELS[:2]), th).set_index("image_id")
    per_image = want[want["model"].isin(MODELS[:2])].groupby("image_id").size()
    assert table["detections"].to_dict() == {i: int(per_image.get(i, 0)) for i in table.index}


@pytest.mark.parametrize(("per_model", "default"), CASES[:3])
def test_pair_agreement_and_compare_table_on_the_kept_boxes(per_model, default):
    inf, det, rf, th, want = kept_case(per_model, default, 4, n_images=20, n_boxes=500)
    ok = inf[inf["error"] == ""]
    both_ran = sorted(set(ok.loc[ok["model"] == A, "image_id"]) & set(ok.loc[ok["model"] == B, "image_id"]))
    expected = compare_models(want, A, B, threshold=0.0, image_ids=both_ran)  # image by image, on the kept boxes
    got = runviews.pair_agreement(rf, A, B, th)
    assert (got.both, got.only_a, got.only_b) == (expected.both, expected.only_a, expected.only_b)
    pd.testing.assert_frame_equal(got.per_image, expected.per_image)
    table = runviews.compare_data(rf, th)["table"]
    counts = want.groupby(["image_id", "model"]).size()
    got_counts = dict(zip(zip(table["image_id"], table["model"], strict=True), table["count"], strict=True))
    assert got_counts == {k: int(counts.get(k, 0)) for k in got_counts}


def test_row_thresholds_of_a_float_is_the_float_and_the_text_says_per_class():
    inf, det = random_run(0, n_images=3, n_boxes=20)
    rf = RunFrame.from_frames(inf, det)
    assert row_thresholds(rf, 0.25) == 0.25
    th = ClassThresholds.of({A: {"cat": 0.9, "dog": None, "cup": math.nan}}, 0.5, source="t.json")
    assert th.table == ((A, "cat", 0.9),), "unset thresholds are left out"
    assert f"score ≥ {th:.2f}" == "score ≥ per-class thresholds (t.json; others 0.50)"
    assert hash(th) == hash(ClassThresholds.of({A: {"cat": 0.9}}, 0.5, source="t.json")), "a memo key"


# --- the thresholds JSON -------------------------------------------------------------------------------------------


def point(label: str, t: float) -> OperatingPoint:
    return OperatingPoint(label, t, 0.9, 0.5, 0.6, 4, 0.8, 0.6, 0.7)


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ([point("cat", 0.42), point("dog", 0.9)], {"cat": 0.42, "dog": 0.9}),
        ([point("cup", math.nan), point("person", 0.0)], {"cup": None, "person": 0.0}),
        ([], {}),
    ],
)
def test_thresholds_json_round_trips(points, expected):
    doc = thresholds_json(points, series="my model", objective="max-f1", target=None)
    assert read_thresholds_json(doc.encode()) == ("my model", expected)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG not json", "not JSON"),
        (b"[1, 2]", 'no "thresholds" object'),
        (json.dumps({"thresholds": {"cat": 0.5}}).encode(), 'no "series" name'),
        (json.dumps({"series": "a", "thresholds": {"cat": "high"}}).encode(), "threshold of class 'cat' is 'high'"),
        (json.dumps({"series": "a", "thresholds": {"cat": 1.5}}).encode(), "give a number from 0 to 1"),
    ],
)
def test_a_bad_thresholds_file_is_one_line_of_error(content, message):
    with pytest.raises(ThresholdsFileError) as info:
        read_thresholds_json(content)
    assert message in str(info.value) and "\n" not in str(info.value)


# --- the pages -----------------------------------------------------------------------------------------------------


def test_gallery_counts_follow_the_kept_thresholds_when_the_toggle_is_on():
    at = gallery_test.open_gallery()
    assert not at.get("toggle") or "per_class_toggle" not in {t.key for t in at.toggle}, "no thresholds kept yet"
    at.session_state["per_class_thresholds"] = {gallery_test.A: {"cat": 0.95}}  # A's cats score 0.9
    at.run()
    at.toggle(key="per_class_toggle").set_value(True).run()
    assert not at.exception
    third = gallery_test.captions(at)[3]  # img_003: A's 3 cats at 0.9 no longer count; B's dog at 0.6 does
    assert "Faster R-CNN R50-FPN: 0" in third and "SSDLite320 MNv3-L: 1" in third
    assert "per-class thresholds (Evaluate; others 0.50)" in texts(at).replace("\\", "")
    at.toggle(key="per_class_toggle").set_value(False).run()
    assert "Faster R-CNN R50-FPN: 3" in gallery_test.captions(at)[3]


def test_gallery_detail_counts_and_overlay_follow_the_thresholds():
    at = open_page("pages/gallery.py", factories.seeded(), threshold=0.5)
    at.session_state["per_class_thresholds"] = {"fasterrcnn_resnet50_fpn": {"dog": 0.95}}
    at.selectbox(key="gallery_sort").set_value("name").run()
    at.toggle(key="gallery_desc").set_value(False).run()
    at.toggle(key="per_class_toggle").set_value(True).run()
    at.button(key="gallery_open_0").click().run()  # cat.jpg: A's cat 0.95 and dog 0.9, B's cat 0.8 (cup 0.3)
    assert not at.exception
    shown = metrics(at)
    assert [shown["fasterrcnn_resnet50_fpn"], shown["ssdlite320_mobilenet_v3_large"]] == ["1 boxes", "1 boxes"]
    (chart,) = [c for c in at.get("plotly_chart") if c.key == "gallery_overlay"]
    names = {t.get("name") for t in json.loads(chart.proto.spec)["data"]}
    assert "dog" not in names and "cat" in names


def test_compare_agreement_and_class_counts_change_with_the_toggle():
    at = open_page("pages/compare.py", factories.seeded(), threshold=0.5)
    a, b = "fasterrcnn_resnet50_fpn", "ssdlite320_mobilenet_v3_large"
    at.session_state["per_class_thresholds"] = {a: {"dog": 0.95}, b: {"cup": 0.75}}
    at.run()
    before = metrics(compare_tab(at, "Agreement"))
    (chart,) = [c for c in compare_tab(at, "Scores and classes").get("plotly_chart") if c.key == "cmp_classes"]
    assert {x for t in json.loads(chart.proto.spec)["data"] for x in t["x"]} == {"cat", "cup", "dog"}
    assert (before["Both"], before["Only in A"], before["Only in B"]) == ("2", "1", "1")
    at.toggle(key="per_class_toggle").set_value(True).run()
    assert not at.exception
    shown = metrics(compare_tab(at, "Agreement"))
    # A's dog (0.9 < 0.95) and B's shifted cup (0.7 < 0.75) drop: the cats agree; A's cup and B's 0.8 cup are alone
    assert (shown["Both"], shown["Only in A"], shown["Only in B"]) == ("1", "1", "1")
    (chart,) = [c for c in compare_tab(at, "Scores and classes").get("plotly_chart") if c.key == "cmp_classes"]
    spec = json.loads(chart.proto.spec)
    assert "per-class thresholds" in spec["layout"]["title"]["text"]
    assert {x for t in spec["data"] for x in t["x"]} == {"cat", "cup"}, "A's only dog is under its threshold"


def test_a_loaded_thresholds_file_is_kept_and_applied_and_a_bad_one_is_one_line():
    at = gallery_test.open_gallery()
    doc = thresholds_json([point("cat", 0.95)], series=gallery_test.A, objective="max-f1", target=None)
    at.file_uploader(key="per_class_file").set_value(("ops.json", b"{not json", "application/json")).run()
    assert not at.exception
    (error,) = at.sidebar.error
    shown = error.value.replace("\\", "")
    assert "ops.json" in shown and "not JSON" in shown and "\n" not in shown
    at.file_uploader(key="per_class_file").set_value(("ops.json", doc.encode(), "application/json")).run()
    assert at.session_state["per_class_thresholds"] == {gallery_test.A: {"cat": 0.95}}
    at.toggle(key="per_class_toggle").set_value(True).run()
    assert not at.exception
    assert "Faster R-CNN R50-FPN: 0" in gallery_test.captions(at)[3]
    assert "per-class thresholds (ops.json; others 0.50)" in texts(at).replace("\\", "")
