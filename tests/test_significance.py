"""The paired bootstrap (core.evaluate.significance) and its kernel, COCO AP on weighted images (core.evalcore.weighted),
against pycocotools' COCOeval on the same and on resampled datasets."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest

from core.evalcore.vector import ResultArrays, coco_flags
from core.evalcore.weighted import weighted_ap
from core.evaluate.series import SeriesError, from_results
from core.evaluate.significance import (
    A_BETTER,
    B_BETTER,
    NO_DIFFERENCE,
    compare,
    resample_weights,
    weighted_median,
)
from tests.detection_fixtures import coco_fixture, degraded, write_json


def pycocotools_eval(gt: dict, dets: list[dict]):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO()
        c.dataset = copy.deepcopy(gt)
        c.createIndex()
        r = c.loadRes(copy.deepcopy(dets)) if dets else COCO()
        ev = COCOeval(c, r, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def arrays(dets: list[dict]):
    xywh = np.array([d["bbox"] for d in dets], dtype=np.float64).reshape(-1, 4)
    return (np.array([d["image_id"] for d in dets]), np.array([d["category_id"] for d in dets]),
            np.array([d["score"] for d in dets], dtype=np.float64), np.hstack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]]))  # fmt: skip


def untied(dets: list[dict]) -> list[dict]:
    """The same predictions with distinct scores (a resample's copies of an image tie with each other otherwise)."""
    return [dict(d, score=d["score"] * 0.9 + k * 1e-6) for k, d in enumerate(dets)]


def per_class_ap(ev, area: int = 0) -> np.ndarray:
    """pycocotools' (T, K) AP per class (NaN where a class has no box that counts)."""
    p = ev.eval["precision"][:, :, :, area, -1]
    return np.where((p > -1).all(axis=1), p.mean(axis=1), np.nan)


@pytest.mark.parametrize(("seed", "n_images"), [(0, 30), (2, 30), (7, 30), (5, 400)])
def test_weights_of_one_give_cocoevals_ap_per_class_and_area(seed, n_images):
    """30 images: fewer points per class than recall thresholds; 400: more (the two ways weighted_ap reads AP)."""
    gt, dets = coco_fixture(seed, n_images)
    for a in gt["annotations"]:
        a.pop("segmentation")
    ids = [im["id"] for im in gt["images"]]
    ev = pycocotools_eval(gt, dets)
    flags = coco_flags(gt, ids, (1, 10, 100), ResultArrays.from_xyxy(*arrays(dets)))
    got = weighted_ap(flags, np.ones((1, len(ids)), dtype=np.int64), areas=(0, 1, 2, 3))[0]
    for area in range(4):
        np.testing.assert_allclose(got[area], per_class_ap(ev, area), atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("seed", [1, 4])
def test_weights_equal_cocoeval_on_the_resampled_dataset(seed):
    gt, dets = coco_fixture(seed, n_images=20)
    for a in gt["annotations"]:
        a.pop("segmentation")
    dets = untied(dets)
    ids = [im["id"] for im in gt["images"]]
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, len(ids), len(ids))
    # the resampled dataset spelled out: each draw a new copy of its image, boxes and predictions
    images, anns, res = [], [], []
    for copy_no, k in enumerate(draw.tolist()):
        new_id = 1000 + copy_no
        images.append(dict(gt["images"][k], id=new_id))
        anns += [dict(a, image_id=new_id) for a in gt["annotations"] if a["image_id"] == ids[k]]
        res += [dict(d, image_id=new_id) for d in dets if d["image_id"] == ids[k]]
    for n, a in enumerate(anns, start=1):
        a["id"] = n
    resampled = dict(gt, images=images, annotations=anns)
    ev = pycocotools_eval(resampled, res)
    flags = coco_flags(gt, ids, (1, 10, 100), ResultArrays.from_xyxy(*arrays(dets)))
    weights = np.bincount(draw, minlength=len(ids))[None, :]
    got = weighted_ap(flags, np.vstack([weights, weights]), exact_rows=1)  # row 1: the float32 path
    np.testing.assert_allclose(got[0, 0], per_class_ap(ev), atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(got[1, 0], per_class_ap(ev), atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("n", [1, 2, 7, 10])
def test_weighted_median_is_the_median_of_the_resample(n):
    rng = np.random.default_rng(n)
    values = rng.gamma(3, 10, n)
    draws = rng.integers(0, n, (25, n))
    weights = np.stack([np.bincount(d, minlength=n) for d in draws])
    np.testing.assert_allclose(weighted_median(values, weights), [np.median(values[d]) for d in draws])


def test_resample_weights_are_seeded_counts_of_n_draws():
    w = resample_weights(50, 200, seed=3)
    assert w.shape == (201, 50) and (w[0] == 1).all() and (w[1:].sum(axis=1) == 50).all()
    np.testing.assert_array_equal(w, resample_weights(50, 200, seed=3))
    assert not np.array_equal(w, resample_weights(50, 200, seed=4))


@pytest.fixture
def pair(tmp_path):
    gt, dets = coco_fixture(11, n_images=60)
    g = write_json(tmp_path / "gt.json", gt)
    paths = [write_json(tmp_path / "base.json", dets), write_json(tmp_path / "same.json", dets),
             write_json(tmp_path / "worse.json", degraded(dets, 0.35))]  # fmt: skip
    return from_results(g, paths), gt, dets


def test_the_same_seed_gives_the_same_intervals(pair):
    ss, _, _ = pair
    a = compare(ss, "base", "worse", resamples=200, seed=5)
    b = compare(ss, "base", "worse", resamples=200, seed=5)
    c = compare(ss, "base", "worse", resamples=200, seed=6)
    assert a.to_json() == b.to_json()
    assert a.metrics["AP"].low != c.metrics["AP"].low


def test_an_identical_pair_is_no_significant_difference(pair):
    ss, _, _ = pair
    c = compare(ss, "base", "same", resamples=300)
    ap = c.metrics["AP"]
    assert ap.low <= 0 <= ap.high and ap.diff == 0
    assert c.verdict == NO_DIFFERENCE == "no significant difference at these images"


def test_a_clearly_worse_candidate_is_called_so_both_ways(pair):
    ss, gt, dets = pair
    ref_a = pycocotools_eval(gt, dets).stats[0]
    c = compare(ss, "base", "worse", resamples=300)
    assert c.metrics["AP"].a == pytest.approx(ref_a, abs=1e-12)  # the point figure is COCOeval's
    assert c.metrics["AP"].high < 0 and c.verdict == A_BETTER
    assert compare(ss, "worse", "base", resamples=300).verdict == B_BETTER
    assert set(c.per_class) <= {"person", "car", "cat", "dog"} and c.per_class
    assert {k for k in c.per_slice} <= {"size: small", "size: medium", "size: large"}


def test_slices_are_resampled_within_themselves(pair):
    ss, _, _ = pair
    first_half = np.arange(1, 31)
    c = compare(ss, "base", "worse", resamples=100, sizes=False, slices={"tag: first": first_half})
    assert "tag: first" in c.per_slice and c.per_slice["tag: first"]["AP"].low <= c.per_slice["tag: first"]["AP"].high


def test_bad_resamples_and_unknown_series_are_series_errors(pair):
    ss, _, _ = pair
    with pytest.raises(SeriesError, match="at least 1"):
        compare(ss, "base", "same", resamples=0)
    with pytest.raises(SeriesError, match="no series 'nope'"):
        compare(ss, "base", "nope")
