"""scripts/bench_pages.py: the ground truth it writes covers every image of the run it built and evaluates."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from core.analytics import load_run_frame
from core.evaluate import evaluate, image_names_from, image_sizes_from, load_ground_truth, with_images
from core.store import Store

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_pages.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_pages", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
