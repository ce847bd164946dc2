"""core.evalcore: the array kernels give exactly what they replace: pycocotools' box IoU, faster-coco-eval's COCOeval on
result dicts (and pycocotools' figures to 1e-12, as tests/test_evaluate.py holds for the dict path), and `match_all`
however its pairs are chunked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core import evalcore
from core.evalcore.vector import ResultArrays
from core.evaluate.outcomes import match_all
from tests.test_outcomes import random_case


def random_boxes(rng: np.random.Generator, n: int, grid: bool) -> np.ndarray:
    """[x, y, w, h] rows: on a coarse grid (exact ties, touching edges, zero widths) or anywhere."""
    if grid:
        return rng.integers(0, 5, size=(n, 4)).astype(np.float64) * 10.0
    return np.column_stack([rng.uniform(0, 90, (n, 2)), rng.uniform(0.5, 40, (n, 2))])


@pytest.mark.parametrize(("seed", "grid"), [(s, g) for s in range(4) for g in (False, True)])
def test_pair_ious_are_pycocotools_bit_for_bit(seed, grid):
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    dt, gt = random_boxes(rng, 40, grid), random_boxes(rng, 15, grid)
    crowd = rng.random(15) < 0.3
    want = np.asarray(mask_utils.iou(dt, gt, crowd.astype(int).tolist()))
    d, g = np.meshgrid(np.arange(40), np.arange(15), indexing="ij")
    got = evalcore.coco_pair_ious(dt[d.ravel()], gt[g.ravel()], crowd[g.ravel()]).reshape(40, 15)
    assert (want > 0).any() and (want == 0).any(), "boxes that meet and boxes that do not"
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("seed", "grid"), [(0, False), (1, True), (2, False), (3, True)])
@pytest.mark.parametrize("chunk", [1, 7, 50])
def test_match_all_is_the_same_in_chunks_of_images(monkeypatch, seed, grid, chunk):
    gt, det = random_case(seed, n_images=20, grid=grid)
    whole = match_all(gt, det, model="a")
    monkeypatch.setattr(evalcore.matching, "PAIR_CHUNK", chunk)
    pd.testing.assert_frame_equal(match_all(gt, det, model="a"), whole, check_exact=True)


def coco_case(seed: int) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """A GT (crowds, an image without boxes, a category without GT) and detections: copies of GT boxes moved a
    little, tied scores, more than 100 on one image and class (maxDets cuts), boxes on an image left out of the
    evaluated ids and of a class the GT does not have."""
    rng = np.random.default_rng(seed)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 200, "height": 200} for i in range(1, 9)]
    anns = []
    for i in range(1, 8):
        for _ in range(int(rng.integers(0, 6))):
            x, y, w, h = (float(v) for v in (*rng.uniform(0, 120, 2), *rng.uniform(4, 80, 2)))
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(rng.choice([1, 2, 3])),
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": int(rng.random() < 0.15)})  # fmt: skip
    doc = {"images": images, "annotations": anns,
           "categories": [{"id": c, "name": n} for c, n in ((1, "a"), (2, "b"), (3, "c"), (4, "d"))]}  # fmt: skip
    img, cat, score, boxes = [], [], [], []
    for a in anns:
        for _ in range(int(rng.integers(0, 4))):
            x, y, w, h = np.asarray(a["bbox"]) + rng.normal(0, 3, 4)
            img.append(a["image_id"])
            cat.append(a["category_id"] if rng.random() < 0.85 else int(rng.choice([1, 2, 3, 5])))
            score.append(float(rng.choice([0.5, 0.7])) if rng.random() < 0.3 else float(rng.random()))
            boxes.append([x, y, x + max(w, 1.0), y + max(h, 1.0)])
    for _ in range(130):  # image 1, class 1: past maxDets
        x, y = rng.uniform(0, 150, 2)
        img.append(1), cat.append(1), score.append(float(rng.random())), boxes.append([x, y, x + 30, y + 30])
    img.append(8), cat.append(1), score.append(0.9), boxes.append([0.0, 0.0, 10.0, 10.0])
    return doc, np.array(img), np.array(cat), np.array(score), np.array(boxes), list(range(1, 8))


FIGURES = ("stats", "precision", "scores", "cat_ids", "img_ids")


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("max_dets", [(1, 10, 100), (1, 5, 20)])
def test_cocoeval_from_arrays_is_the_dict_paths(seed, max_dets):
    doc, img, cat, score, boxes, img_ids = coco_case(seed)
    on = np.isin(img, img_ids)
    got = evalcore.coco_summary(
        evalcore.run_cocoeval_arrays(doc, img_ids, max_dets, ResultArrays.from_xyxy(img, cat, score, boxes))
    )
    want = {}
    for backend in (evalcore.FASTER, evalcore.PYCOCOTOOLS):
        results = evalcore.loaded_results(img[on], cat[on], score[on], boxes[on])
        want[backend] = evalcore.coco_summary(
            evalcore.run_cocoeval(doc, results, img_ids, max_dets, backend, owned=True)
        )
    assert got.stats[0] > 0.05, "something measured"
    for name in FIGURES:
        np.testing.assert_array_equal(getattr(got, name), getattr(want[evalcore.FASTER], name), err_msg=name)
        np.testing.assert_allclose(getattr(got, name), getattr(want[evalcore.PYCOCOTOOLS], name), rtol=0, atol=1e-12)


def test_cocoeval_from_arrays_without_detections():
    doc, *_, img_ids = coco_case(0)
    empty = np.zeros(0, dtype=np.int64)
    got = evalcore.coco_summary(
        evalcore.run_cocoeval_arrays(
            doc, img_ids, (1, 10, 100), ResultArrays.from_xyxy(empty, empty, empty.astype(float), np.zeros((0, 4)))
        )
    )
    want = evalcore.coco_summary(evalcore.run_cocoeval(doc, [], img_ids, (1, 10, 100), evalcore.FASTER))
    for name in FIGURES:
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)


def random_matching_input(seed: int, grid: bool) -> tuple:
    """`greedy_match` arguments: 30 images, GT boxes of 3 classes (some crowd), detections near them (some of another
    class, tied scores), sorted by (image, decreasing score)."""
    rng = np.random.default_rng(seed)
    g_img = rng.integers(0, 30, 120)
    g_lab = rng.integers(1, 4, 120)
    g_xywh = random_boxes(rng, 120, grid)
    g_crowd = rng.random(120) < 0.1
    src = rng.integers(0, 120, 900)
    d_img = g_img[src]
    d_lab = np.where(rng.random(900) < 0.7, g_lab[src], rng.integers(1, 4, 900))
    d_xywh = g_xywh[src] + (0 if grid else rng.normal(0, 2, (900, 4)))
    d_score = np.where(rng.random(900) < 0.3, 0.5, rng.random(900))
    order = evalcore.match_order(d_img, d_score)
    return d_img[order], d_score[order], d_lab[order], d_xywh[order], g_img, g_lab, g_xywh, g_crowd


@pytest.mark.parametrize(("seed", "grid"), [(s, g) for s in range(4) for g in (False, True)])
def test_matching_within_classes_only_changes_the_wrong_class_reason(seed, grid):
    args = random_matching_input(seed, grid)
    full = evalcore.greedy_match(*args, 0.5)
    lean = evalcore.greedy_match(*args, 0.5, wrong_class=False)
    assert (full.reason == evalcore.WHY_WRONG_CLASS).any() and (full.outcome == evalcore.OUT_TP).any()
    for name in ("outcome", "iou", "gt_index", "matched_score"):
        np.testing.assert_array_equal(getattr(lean, name), getattr(full, name), err_msg=name)
    want = np.where(full.reason == evalcore.WHY_WRONG_CLASS, evalcore.WHY_LOW_IOU, full.reason)
    np.testing.assert_array_equal(lean.reason, want)


@pytest.mark.parametrize(("installed", "array_path"), [("1.8.0", True), ("1.9.0", False), ("2.0.0", False)])
def test_only_a_checked_faster_coco_eval_takes_the_array_path(monkeypatch, installed, array_path):
    """The array path feeds faster-coco-eval's internals: another version gets the dict path, with the same figures."""
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "version", lambda dist: installed)
    from core.evalcore import cocoeval

    calls = []
    monkeypatch.setattr(cocoeval, "run_cocoeval_arrays", lambda *a, **k: calls.append("arrays") or "arrays")
    monkeypatch.setattr(cocoeval, "run_cocoeval", lambda *a, **k: calls.append("dicts") or "dicts")
    doc, img, cat, score, boxes, img_ids = coco_case(0)
    evalcore.evaluate_arrays(doc, img_ids, (1, 10, 100), evalcore.FASTER, img, cat, score, boxes)
    assert calls == ["arrays" if array_path else "dicts"]
