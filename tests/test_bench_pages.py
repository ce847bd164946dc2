"""scripts/bench_pages.py: the ground truth it writes covers every image of the run it built and evaluates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.analytics import load_run_frame
from core.evaluate import (
    evaluate,
    image_names_from,
    image_sizes_from,
    load_ground_truth,
    match_outcomes,
    prf_at,
    with_images,
)
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


def test_evaluate_page_on_a_stored_run_shows_core_evaluates_metrics(private_run_store, bench):
    """The Evaluate page on a run opened with ?run= (its RunFrame evaluated) shows, per model, the metrics of
    core.evaluate.evaluate and the precision/recall of core.evaluate.match_outcomes on the run's tables."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from dashboard import groundtruth

    bench.build(private_run_store, 16, 400)
    gt = load_ground_truth(bench.write_ground_truth(private_run_store))
    info = bench.gt_session(private_run_store / bench.GT_FILE)
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(str(SCRIPT.parent.parent / "dashboard" / "app.py"), default_timeout=300)
    at.query_params["run"] = bench.RUN_ID
    at.session_state[groundtruth.GT_KEY] = info
    at.run()
    at.switch_page("../pages/evaluate.py").run()
    assert not at.exception
    inf, det, _ = Store(private_run_store).load_run(bench.RUN_ID)
    shown_metrics, shown_prf = at.dataframe[1].value, at.dataframe[2].value  # after the category mapping
    shown_metrics, shown_prf = shown_metrics.set_index("model"), shown_prf.set_index("model")
    models = list(dict.fromkeys(inf["model"]))
    assert sorted(shown_metrics.index) == sorted(models) == sorted(shown_prf.index)
    for model in models:
        rows = inf[inf["model"] == model]
        matched = with_images(gt, image_names_from(rows), image_sizes=image_sizes_from(rows))
        metrics = evaluate(matched, det, model=model)
        for column in ("AP", "AP50", "AP75", "AR100"):
            assert shown_metrics.loc[model, column] == pytest.approx(getattr(metrics, column), nan_ok=True)
        assert shown_metrics.loc[model, "GT boxes"] == metrics.n_gt
        prf = prf_at(match_outcomes(matched, det, 0.5, model=model))
        assert tuple(shown_prf.loc[model, ["TP", "FP", "FN"]]) == (prf.tp, prf.fp, prf.fn)
