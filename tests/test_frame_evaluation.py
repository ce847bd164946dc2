"""The Evaluate page's one path (dashboard.evaluation.frame_evaluation on the viewed RunFrame): its COCO metrics are
core.evaluate.evaluate's on the matched ground truth and the variant's boxes; its precision/recall at a threshold and
the Gallery's per-image "GT errors" are hand counts on a small run."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from core.analytics import RunFrame
from core.evaluate import evaluate, image_names_from, image_sizes_from, load_ground_truth, with_images
from core.images import content_id
from core.records import latest_run
from dashboard import evaluation
from tests import factories
from tests.test_analytics import MODELS, random_gt, random_run

A, B = "fasterrcnn_resnet50_fpn", "ssdlite320_mobilenet_v3_large"


def frame_eval(inf: pd.DataFrame, det: pd.DataFrame, data: bytes) -> evaluation.FrameEvaluation:
    return evaluation.frame_evaluation(content_id(data), data, "gt.json", RunFrame.from_frames(inf, det))


@pytest.mark.parametrize(("seed", "runs"), [(0, ("r1",)), (1, ("r1",)), (2, ("r1", "r2"))])
def test_frame_evaluation_gives_core_evaluates_metrics(seed, runs):
    """Per model: its latest successful row per image, the ground truth matched to those images by name and size,
    and its boxes of those (run, image) pairs, evaluated by core.evaluate.evaluate directly."""
    inf, det = random_run(seed, runs=runs)
    data = random_gt(det, seed)
    got = {e.label: e for e in frame_eval(inf, det, data).evals}
    assert sorted(got) == sorted(MODELS)  # one variant per model: every row has the same weights, device, precision
    gt = load_ground_truth(data)
    for model in MODELS:
        ok = inf[(inf["model"] == model) & (inf["error"] == "")]
        rows = ok[ok["run_id"] == ok.groupby("image_id")["run_id"].transform("max")]
        matched = with_images(gt, image_names_from(rows), image_sizes=image_sizes_from(rows))
        pairs = set(zip(rows["run_id"], rows["image_id"], strict=True))
        mine = latest_run(det)[lambda d, m=model: d["model"] == m]
        mine = mine[[pair in pairs for pair in zip(mine["run_id"], mine["image_id"], strict=True)]]
        want = evaluate(matched, mine, model=model)
        e = got[model]
        assert e.metrics.AP > 0 or model != MODELS[0]  # the ground truth holds the first model's boxes, moved
        for name in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "n_images", "n_gt"):
            assert getattr(e.metrics, name) == pytest.approx(getattr(want, name), nan_ok=True), (model, name)
        assert e.metrics.per_class == pytest.approx(want.per_class, nan_ok=True)
        assert e.images == len(matched.image_id_map)
        left_out = [n for n in rows["image_name"] if int(n.removeprefix("photo_").removesuffix(".jpg")) % 7 == 3]
        assert sorted(e.unmatched) == sorted(left_out)  # random_gt leaves every 7th photo out


def hand_run() -> tuple[pd.DataFrame, pd.DataFrame, bytes]:
    """cat.jpg and coffee.jpg (100 x 80) with ground truth; rocket.jpg has none (its boxes count nowhere).

    cat.jpg GT: a cat (10,10)-(50,40) and a dog (60,40)-(90,70). A: cat 0.9 on the cat (TP), cat 0.8 beside it (IoU
    0.95, a duplicate: FP), dog 0.4 on the dog (TP at thresholds <= 0.4, else the dog is missed), cup 0.7 where there
    is nothing (FP). B processed it and found nothing.
    coffee.jpg GT: a cup (0,0)-(50,50). A: cup 0.6 at (0,0)-(50,40) (IoU 0.8: TP). B: cup 0.3 on it (TP at <= 0.3).
    rocket.jpg: A person 0.99, B person 0.99: no ground truth.
    """
    cat, coffee, rocket = (factories.gallery_ref(n) for n in ("cat.jpg", "coffee.jpg", "rocket.jpg"))
    inf = [factories.inference(image, m) for image in (cat, coffee, rocket) for m in (A, B)]
    det = [
        factories.box(cat, A, "cat", 0.9, (10, 10, 50, 40), 17), factories.box(cat, A, "cat", 0.8, (12, 10, 50, 40), 17),
        factories.box(cat, A, "dog", 0.4, (60, 40, 90, 70), 18), factories.box(cat, A, "cup", 0.7, (0, 60, 10, 70), 47),
        factories.box(coffee, A, "cup", 0.6, (0, 0, 50, 40), 47), factories.box(coffee, B, "cup", 0.3, (0, 0, 50, 50), 47),
        factories.box(rocket, A, "person", 0.99, (0, 0, 50, 50), 1),
        factories.box(rocket, B, "person", 0.99, (0, 0, 50, 50), 1),
    ]  # fmt: skip
    gt = {
        "images": [{"id": 1, "file_name": "cat.jpg", "width": 100, "height": 80},
                   {"id": 2, "file_name": "coffee.jpg", "width": 100, "height": 80}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 17, "bbox": [10, 10, 40, 30], "area": 1200, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 18, "bbox": [60, 40, 30, 30], "area": 900, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 47, "bbox": [0, 0, 50, 50], "area": 2500, "iscrowd": 0},
        ],
        "categories": [{"id": 17, "name": "cat"}, {"id": 18, "name": "dog"}, {"id": 47, "name": "cup"}],
    }  # fmt: skip
    return *factories.tables(inf, det), json.dumps(gt).encode()


# threshold -> model -> (TP, FP, FN), counted by hand from hand_run's docstring
PRF_CASES = [
    (0.3, {A: (3, 2, 0), B: (1, 0, 2)}),
    (0.5, {A: (2, 2, 1), B: (0, 0, 3)}),
    (0.85, {A: (1, 0, 2), B: (0, 0, 3)}),
    (0.95, {A: (0, 0, 3), B: (0, 0, 3)}),
]


@pytest.mark.parametrize(("threshold", "expected"), PRF_CASES)
def test_precision_recall_at_the_threshold_by_hand(threshold, expected):
    inf, det, data = hand_run()
    table = evaluation.frame_prf_table(frame_eval(inf, det, data), threshold).set_index("model")
    assert sorted(table.index) == sorted(expected)
    for model, (tp, fp, fn) in expected.items():
        row = table.loc[model]
        assert (row["TP"], row["FP"], row["FN"]) == (tp, fp, fn), model
        precision = tp / (tp + fp) if tp + fp else math.nan
        assert row["precision"] == pytest.approx(precision, nan_ok=True)
        assert row["recall"] == pytest.approx(tp / (tp + fn))


# (models, threshold) -> per image with ground truth: false positives + missed GT boxes, summed over the models
GT_ERROR_CASES = [
    ((A,), 0.5, {"cat.jpg": 3, "coffee.jpg": 0}),  # cat: duplicate cat, cup, missed dog
    ((A, B), 0.5, {"cat.jpg": 5, "coffee.jpg": 1}),  # B misses everything at 0.5
    ((A, B), 0.3, {"cat.jpg": 4, "coffee.jpg": 0}),  # A finds the dog, B the cup
    ((B,), 0.3, {"cat.jpg": 2, "coffee.jpg": 0}),
    ((A,), 0.95, {"cat.jpg": 2, "coffee.jpg": 1}),
    ((), 0.5, {}),
]


@pytest.mark.parametrize(("models", "threshold", "expected"), GT_ERROR_CASES)
def test_gt_errors_per_image_by_hand(models, threshold, expected):
    inf, det, data = hand_run()
    got = evaluation.gt_errors(frame_eval(inf, det, data), list(models), threshold)
    names = dict(zip(inf["image_id"], inf["image_name"], strict=False))
    assert {names[i]: int(n) for i, n in got.items()} == expected  # rocket.jpg (no ground truth) is not listed


def test_a_later_run_of_a_model_replaces_its_earlier_boxes_in_the_evaluation():
    """A session that ran A again on cat.jpg (fp16, finding only the cat) evaluates that run there, as every page
    shows it; coffee.jpg keeps its only run: two variants of A, each on the images whose latest run it is."""
    inf, det, data = hand_run()
    cat_id = factories.gallery_ref("cat.jpg").image_id
    later = "20260102-000000-bbbbbb"
    again = inf[(inf["image_id"] == cat_id) & (inf["model"] == A)].assign(run_id=later, precision="fp16")
    box = det[(det["image_id"] == cat_id) & (det["model"] == A)].head(1).assign(run_id=later)
    inf2, det2 = pd.concat([inf, again], ignore_index=True), pd.concat([det, box], ignore_index=True)
    ev = frame_eval(inf2, det2, data)
    images = {e.label: e.images for e in ev.evals}
    assert images == {f"{A} (fp32)": 1, f"{A} (fp16)": 1, B: 2}
    prf = evaluation.frame_prf_table(ev, 0.5).set_index("model")
    assert tuple(prf.loc[f"{A} (fp16)", ["TP", "FP", "FN"]]) == (1, 0, 1)  # the cat found, the dog missed
    assert tuple(prf.loc[f"{A} (fp32)", ["TP", "FP", "FN"]]) == (1, 0, 0)  # coffee.jpg's cup
