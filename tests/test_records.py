"""The two tidy tables: schema, counts at the threshold, round trip through files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.config import DETECTION_COLUMNS, DETECTION_DTYPES, INFERENCE_COLUMNS, INFERENCE_DTYPES
from core.records import (
    DetectionResult,
    RunInfo,
    coco_results,
    detections_frame,
    inferences_frame,
    models_in,
    new_run_id,
    write_run,
)
from tests.factories import detection_result, read_written_run


def make_result(scores=(0.9, 0.4, 0.02), error="", image_id="img1", model="m") -> DetectionResult:
    n = 0 if error else len(scores)
    boxes = np.array([[i, i, i + 10, i + 5] for i in range(n)], np.float32).reshape(-1, 4)
    return detection_result(image_id, model=model, boxes=boxes, scores=scores, error=error)


def test_inference_rows_follow_the_schema():
    df = inferences_frame([make_result(), make_result(error="not an image")], run_id="r1", threshold=0.5)
    assert tuple(df.columns) == INFERENCE_COLUMNS
    assert {c: str(t) for c, t in df.dtypes.items()} == {
        c: str(pd.Series(dtype=d).dtype) for c, d in INFERENCE_DTYPES.items()
    }
    ok, bad = df.iloc[0], df.iloc[1]
    assert ok["total_ms"] == pytest.approx(11.5) and ok["error"] == "" and ok["width"] == 100
    assert bad["error"] == "not an image" and pd.isna(bad["total_ms"]) and pd.isna(bad["width"])


@pytest.mark.parametrize(("threshold", "count"), [(0.0, 3), (0.3, 2), (0.5, 1), (0.95, 0)])
def test_n_detections_counts_at_or_above_the_threshold(threshold, count):
    df = inferences_frame([make_result()], run_id="r", threshold=threshold)
    assert int(df["n_detections"].iloc[0]) == count


def test_detection_rows_keep_every_box_above_the_floor():
    df = detections_frame([make_result(), make_result(image_id="img2", scores=(0.7,))], run_id="r1")
    assert tuple(df.columns) == DETECTION_COLUMNS
    assert {c: str(t) for c, t in df.dtypes.items()} == {
        c: str(pd.Series(dtype=d).dtype) for c, d in DETECTION_DTYPES.items()
    }
    assert len(df) == 4 and df["score"].min() == pytest.approx(0.02)
    assert df.loc[0, ["x1", "y1", "x2", "y2"]].tolist() == [0, 0, 10, 5]


def test_no_boxes_gives_an_empty_typed_table():
    df = detections_frame([make_result(error="bad")], run_id="r")
    assert df.empty and tuple(df.columns) == DETECTION_COLUMNS


@pytest.mark.parametrize("parquet", [False, True])
def test_round_trip_through_files(tmp_path, parquet):
    results = [make_result(), make_result(image_id="0123", error="truncated")]
    info = RunInfo(new_run_id(), "2026-01-01T00:00:00+00:00", {"models": ["m"]}, {"torch": "x", "threads": 2})
    inf = inferences_frame(results, run_id=info.run_id, threshold=0.5)
    det = detections_frame(results, run_id=info.run_id)
    written = write_run(tmp_path, inf, det, info, parquet=parquet)
    assert (tmp_path / "inferences.parquet" in written) == parquet
    inf2, det2, info2 = read_written_run(tmp_path)
    pd.testing.assert_frame_equal(inf2, inf)
    pd.testing.assert_frame_equal(det2, det)
    assert info2 == info and inf2.loc[1, "image_id"] == "0123"


def test_run_ids_are_unique():
    assert len({new_run_id() for _ in range(50)}) == 50


def test_coco_results_use_xywh_boxes_and_label_ids_as_category_ids():
    det = detections_frame([make_result(), make_result(image_id="img2", scores=(0.7,))], run_id="r")
    out = coco_results(det, {"img1": 5, "img2": 9}, min_score=0.3)
    assert [(r["image_id"], r["category_id"], r["score"]) for r in out] == [(5, 1, 0.9), (5, 2, 0.4), (9, 1, 0.7)]
    assert out[1]["bbox"] == [1.0, 1.0, 10.0, 5.0]
    assert coco_results(det, {"img2": 1}) == [out[2] | {"image_id": 1}]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["b", "a", "b", "c", "a"], ["b", "a", "c"]),  # first appearance, not sorted
        (["a", None, "b", None], ["a", "b"]),  # a missing model is no model
        ([], []),
    ],
)
@pytest.mark.parametrize("dtype", ["string", "str", object])
def test_models_are_listed_in_the_order_they_first_appear(values, expected, dtype):
    frame = pd.DataFrame({"model": pd.Series(values, dtype=dtype), "score": np.arange(len(values), dtype=float)})
    got = models_in(frame)
    assert got == expected and all(type(m) is str for m in got)


def test_a_table_without_a_model_column_has_no_models():
    assert models_in(pd.DataFrame({"score": [0.5]})) == []
