"""scripts/bench_pages.py: the ground truth it writes covers every image of the run it built and evaluates."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from core.analytics import load_run_frame
from core.evaluate import evaluate, image_names_from, image_sizes_from, load_ground_truth, with_images
from core.store import Store
from tests.factories import load_script

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_pages.py"


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_pages")


@pytest.mark.parametrize(("images", "boxes"), [(12, 300), (30, 60)])
def test_ground_truth_covers_every_image_and_evaluates(tmp_path, bench, images, boxes):
    bench.build(tmp_path, images, boxes)
    path = bench.write_ground_truth(tmp_path)
    gt = load_ground_truth(path)
    assert gt.n_images == images and gt.n_boxes >= images  # at least one box per image
    assert not gt.unmapped_categories and gt.dropped_annotations == 0
    assert bench.run_size(tmp_path)[0] == images
    rf = load_run_frame(Store(tmp_path), bench.RUN_ID)
    model = rf.models[0]
    rows = rf.inferences[rf.inferences["model"] == model]
    matched = with_images(gt, image_names_from(rows), image_sizes=image_sizes_from(rows))
    assert len(matched.image_id_map) == images and not matched.size_mismatches
    metrics = evaluate(matched, rf.rows(slice(None)), model=model)
    assert metrics.n_images == images and metrics.AP50 > 0  # the GT holds the first model's confident boxes, moved
    assert bench.write_ground_truth(tmp_path) == path and json.loads(path.read_text())["images"]  # written once


def test_evaluate_page_on_a_stored_run_shows_the_pandas_paths_metrics(private_run_store, bench):
    """The Evaluate page on a run opened with ?run= (RunFrame path) shows the metrics and PRF of the session path."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from core.images import content_id
    from dashboard import evaluation

    bench.build(private_run_store, 16, 400)
    data = bench.write_ground_truth(private_run_store).read_bytes()
    info = bench.gt_session(private_run_store / bench.GT_FILE)
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(str(SCRIPT.parent.parent / "dashboard" / "app.py"), default_timeout=300)
    at.query_params["run"] = bench.RUN_ID
    at.session_state[evaluation.GT_KEY] = info
    at.run()
    at.switch_page("../pages/evaluate.py").run()
    assert not at.exception
    inf, det, _ = Store(private_run_store).load_run(bench.RUN_ID)
    key = content_id(data)
    evals = evaluation.evaluate_view(key, data, info["name"], inf, det)
    outcomes = evaluation.outcomes_view(key, data, info["name"], inf, det, 0.5)
    shown_metrics, shown_prf = at.dataframe[1].value, at.dataframe[2].value  # after the category mapping
    pd.testing.assert_frame_equal(shown_metrics.reset_index(drop=True), evaluation.metrics_table(evals))
    expected_prf = evaluation.prf_table({e.label: outcomes[e.label] for e in evals if e.metrics is not None})
    pd.testing.assert_frame_equal(shown_prf.reset_index(drop=True), expected_prf)
