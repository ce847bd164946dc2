"""Cross-model agreement: greedy one-to-one matching of same-label boxes at IoU >= 0.5."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from core.compare.matching import Agreement, compare_models, disagreement_per_image, match_boxes, match_grouped
from core.config import AGREEMENT_IOU, DETECTION_COLUMNS, DETECTION_DTYPES

A, B, C = "model_a", "model_b", "model_c"


def det(image_id: str, model: str, label: str, score: float, xyxy, run_id: str = "run1") -> dict:
    x1, y1, x2, y2 = xyxy
    return {"run_id": run_id, "image_id": image_id, "model": model, "label_id": 1, "label": label, "score": score,
            "x1": x1, "y1": y1, "x2": x2, "y2": y2}  # fmt: skip


def detections(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(DETECTION_COLUMNS)).astype(DETECTION_DTYPES)


def seeded() -> pd.DataFrame:
    """img1: a cat both see (IoU 1), a dog only A sees, a weak cup only B sees (0.3).
    img2: a cup A sees and B sees shifted (IoU 0.6), plus a second cup only B sees.
    img3: only A ran on it (two boxes).
    At threshold 0.5: both 2 (IoU 1.0 and 0.6), only A 1 + 2, only B 1.
    """
    return detections(
        det("img1", A, "cat", 0.95, (10, 10, 60, 50)),
        det("img1", A, "dog", 0.9, (200, 100, 300, 200)),
        det("img1", B, "cat", 0.8, (10, 10, 60, 50)),
        det("img1", B, "cup", 0.3, (5, 5, 15, 15)),
        det("img2", A, "cup", 0.85, (0, 0, 100, 100)),
        det("img2", B, "cup", 0.7, (0, 0, 100, 60)),
        det("img2", B, "cup", 0.8, (300, 300, 350, 350)),
        det("img3", A, "person", 0.9, (0, 0, 10, 10)),
        det("img3", A, "person", 0.6, (50, 50, 60, 60)),
    )


def test_iou_constant_is_the_default():
    assert AGREEMENT_IOU == 0.5


@pytest.mark.parametrize(
    ("box_a", "box_b", "label_b", "expected_iou"),
    [
        pytest.param((0, 0, 10, 10), (0, 0, 10, 10), "cat", 1.0, id="identical"),
        pytest.param((0, 0, 10, 10), (0, 0, 10, 5), "cat", 0.5, id="iou-exactly-0.5-matches"),
        pytest.param((0, 0, 100, 100), (0, 0, 100, 60), "cat", 0.6, id="iou-0.6"),
        pytest.param((0, 0, 10, 10), (0, 0, 10, 4), "cat", None, id="iou-0.4-no-match"),
        pytest.param((0, 0, 10, 10), (0, 0, 10, 10), "dog", None, id="different-label-never-matches"),
        pytest.param((0, 0, 10, 10), (20, 20, 30, 30), "cat", None, id="disjoint"),
        pytest.param((0, 0, 0, 0), (0, 0, 0, 0), "cat", None, id="degenerate-boxes"),
    ],
)
def test_match_boxes_pairs(box_a, box_b, label_b, expected_iou):
    pairs = match_boxes(np.array([box_a]), ["cat"], np.array([box_b]), [label_b])
    if expected_iou is None:
        assert pairs == []
    else:
        assert len(pairs) == 1
        i, j, iou = pairs[0]
        assert (i, j) == (0, 0)
        assert iou == pytest.approx(expected_iou)


def test_match_boxes_is_greedy_one_to_one():
    boxes_a = np.array([[0, 0, 10, 8], [0, 0, 10, 10]], dtype=float)  # IoU with B: 0.8 and 1.0
    boxes_b = np.array([[0, 0, 10, 10]], dtype=float)
    pairs = match_boxes(boxes_a, ["cat", "cat"], boxes_b, ["cat"])
    assert pairs == [(1, 0, pytest.approx(1.0))]


def test_match_boxes_takes_highest_iou_first_not_index_order():
    # A0 overlaps B0 at 0.6, A1 at 0.9: walking A in index order would give B0 to A0; greedy gives it to A1.
    boxes_a = np.array([[0, 0, 10, 6], [0, 0, 10, 9]], dtype=float)
    boxes_b = np.array([[0, 0, 10, 10], [100, 100, 110, 110]], dtype=float)
    pairs = match_boxes(boxes_a, ["x", "x"], boxes_b, ["x", "x"])
    assert pairs == [(1, 0, pytest.approx(0.9))]


def test_match_boxes_result_is_sorted_by_iou():
    boxes = np.array([[0, 0, 10, 6], [50, 50, 60, 60]], dtype=float)
    others = np.array([[0, 0, 10, 10], [50, 50, 60, 60]], dtype=float)
    pairs = match_boxes(boxes, ["x", "y"], others, ["x", "y"])
    assert [(i, j) for i, j, _ in pairs] == [(1, 1), (0, 0)]
    assert [iou for *_, iou in pairs] == pytest.approx([1.0, 0.6])


@pytest.mark.parametrize(
    ("boxes_a", "boxes_b"),
    [
        pytest.param(np.zeros((0, 4)), np.array([[0, 0, 1, 1]]), id="a-empty"),
        pytest.param(np.array([[0, 0, 1, 1]]), np.zeros((0, 4)), id="b-empty"),
        pytest.param(np.zeros((0, 4)), np.zeros((0, 4)), id="both-empty"),
    ],
)
def test_match_boxes_with_no_boxes(boxes_a, boxes_b):
    assert match_boxes(boxes_a, ["c"] * len(boxes_a), boxes_b, ["c"] * len(boxes_b)) == []


def test_match_boxes_checks_labels_length():
    with pytest.raises(ValueError):
        match_boxes(np.zeros((2, 4)), ["a"], np.zeros((0, 4)), [])


def test_compare_models_two_a_boxes_over_one_b_box():
    dets = detections(
        det("img", A, "cat", 0.9, (0, 0, 10, 10)),
        det("img", A, "cat", 0.9, (0, 0, 10, 9)),
        det("img", B, "cat", 0.9, (0, 0, 10, 10)),
    )
    agreement = compare_models(dets, A, B, threshold=0.5)
    assert (agreement.both, agreement.only_a, agreement.only_b) == (1, 1, 0)
    assert agreement.mean_iou == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("threshold", "both", "only_a", "only_b", "mean_iou"),
    [
        pytest.param(0.5, 2, 3, 1, 0.8, id="t0.5"),
        pytest.param(0.2, 2, 3, 2, 0.8, id="t0.2-weak-cup-counts"),
        pytest.param(0.75, 1, 3, 1, 1.0, id="t0.75-shifted-cup-of-B-dropped"),
        pytest.param(0.99, 0, 0, 0, math.nan, id="nothing-above"),
    ],
)
def test_compare_models_overall(threshold, both, only_a, only_b, mean_iou):
    agreement = compare_models(seeded(), A, B, threshold=threshold)
    assert isinstance(agreement, Agreement)
    assert (agreement.both, agreement.only_a, agreement.only_b) == (both, only_a, only_b)
    if math.isnan(mean_iou):
        assert math.isnan(agreement.mean_iou)
        assert math.isnan(agreement.agreement)
    else:
        assert agreement.mean_iou == pytest.approx(mean_iou)
        assert agreement.agreement == pytest.approx(both / (both + only_a + only_b))
    assert (agreement.model_a, agreement.model_b, agreement.threshold, agreement.iou) == (A, B, threshold, 0.5)


def test_compare_models_per_image():
    per_image = compare_models(seeded(), A, B, threshold=0.5).per_image.set_index("image_id")
    assert list(per_image.index) == ["img1", "img2", "img3"]
    expected = {
        "img1": (1, 1, 0, 1.0),
        "img2": (1, 0, 1, 0.6),
        "img3": (0, 2, 0, math.nan),  # only A ran on it: every box is only_a
    }
    for image_id, (both, only_a, only_b, mean_iou) in expected.items():
        row = per_image.loc[image_id]
        assert (row["both"], row["only_a"], row["only_b"]) == (both, only_a, only_b)
        assert row["mean_iou"] == pytest.approx(mean_iou, nan_ok=True)


def test_per_image_columns_and_dtypes():
    per_image = compare_models(seeded(), A, B, threshold=0.5).per_image
    assert list(per_image.columns) == ["image_id", "both", "only_a", "only_b", "mean_iou"]
    assert str(per_image["both"].dtype) == "int64"
    assert per_image["mean_iou"].dtype == np.float64


def test_image_only_b_ran_on_counts_as_only_b():
    dets = detections(det("img", B, "cat", 0.9, (0, 0, 10, 10)), det("img", B, "dog", 0.9, (0, 0, 10, 10)))
    agreement = compare_models(dets, A, B, threshold=0.5)
    assert (agreement.both, agreement.only_a, agreement.only_b) == (0, 0, 2)


def test_image_ids_add_images_without_boxes_and_restrict_others():
    agreement = compare_models(seeded(), A, B, threshold=0.5, image_ids=["img2", "empty"])
    assert list(agreement.per_image["image_id"]) == ["img2", "empty"]
    assert agreement.per_image.set_index("image_id").loc["empty", ["both", "only_a", "only_b"]].tolist() == [0, 0, 0]
    assert (agreement.both, agreement.only_a, agreement.only_b) == (1, 0, 1)


def test_other_models_are_ignored():
    dets = pd.concat([seeded(), detections(det("img1", C, "cat", 0.99, (10, 10, 60, 50)))], ignore_index=True)
    assert compare_models(dets, A, B, threshold=0.5).per_image.equals(
        compare_models(seeded(), A, B, threshold=0.5).per_image
    )


def test_only_the_latest_run_of_an_image_and_model_counts():
    dets = detections(
        det("img", A, "cat", 0.9, (0, 0, 10, 10), run_id="run1"),
        det("img", A, "cat", 0.9, (0, 0, 10, 10), run_id="run2"),
        det("img", B, "cat", 0.9, (0, 0, 10, 10), run_id="run1"),
    )
    agreement = compare_models(dets, A, B, threshold=0.5)
    assert (agreement.both, agreement.only_a, agreement.only_b) == (1, 0, 0)


def test_empty_detections():
    agreement = compare_models(detections(), A, B, threshold=0.5)
    assert agreement.per_image.empty
    assert list(agreement.per_image.columns) == ["image_id", "both", "only_a", "only_b", "mean_iou"]
    assert (agreement.both, agreement.only_a, agreement.only_b) == (0, 0, 0)
    assert math.isnan(agreement.agreement)


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        pytest.param([A, B], {"img1": 1, "img2": 1, "img3": 2}, id="pair"),
        pytest.param([A], {"img1": 0, "img2": 0, "img3": 0}, id="one-model"),
        # A-B as above; B-C: C has nothing, so B's boxes above 0.5 are all only_b (img1: 1, img2: 2).
        pytest.param([A, B, C], {"img1": 2, "img2": 3, "img3": 2}, id="consecutive-pairs-summed"),
    ],
)
def test_disagreement_per_image(models, expected):
    series = disagreement_per_image(seeded(), models, 0.5)
    assert series.to_dict() == expected
    assert series.dtype == np.int64


def test_disagreement_sorts_the_gallery():
    series = disagreement_per_image(seeded(), [A, B], 0.5)
    assert series.sort_values(ascending=False, kind="stable").index[0] == "img3"


def test_disagreement_of_nothing_is_empty():
    assert disagreement_per_image(detections(), [A, B], 0.5).empty


# --- the vectorised whole-run matching gives exactly the image by image result --------------------------------------


def reference_agreement(
    dets: pd.DataFrame, threshold: float, image_ids: list[str], model_a: str = A, model_b: str = B
) -> tuple[pd.DataFrame, float]:
    """The former implementation: `match_boxes` image by image, per-image rows, overall mean of every pair's IoU."""
    dets = dets[dets["score"] >= threshold]
    rows, all_ious = [], []
    for image_id in image_ids:
        a = dets[(dets["image_id"] == image_id) & (dets["model"] == model_a)]
        b = dets[(dets["image_id"] == image_id) & (dets["model"] == model_b)]
        boxes = [part[["x1", "y1", "x2", "y2"]].to_numpy(np.float64) for part in (a, b)]
        pairs = match_boxes(boxes[0], a["label"].to_numpy(object), boxes[1], b["label"].to_numpy(object))
        ious = [p[2] for p in pairs]
        all_ious.extend(ious)
        rows.append({"image_id": image_id, "both": len(pairs), "only_a": len(a) - len(pairs),
                     "only_b": len(b) - len(pairs), "mean_iou": float(np.mean(ious)) if ious else math.nan})  # fmt: skip
    per_image = pd.DataFrame(rows, columns=["image_id", "both", "only_a", "only_b", "mean_iou"]).astype(
        {"image_id": "string", "both": "int64", "only_a": "int64", "only_b": "int64", "mean_iou": "float64"}
    )
    return per_image, float(np.mean(all_ious)) if all_ious else math.nan


def random_detections(seed: int, n_images: int, per_image: int, grid: int, spread: int = 4) -> pd.DataFrame:
    """Boxes snapped to a coarse grid (so equal IoUs and chains of competing overlaps are common), three labels, a
    few images only one model has."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_images):
        for model in (A, B):
            if rng.random() < 0.1:
                continue
            for _ in range(rng.integers(0, per_image + 1)):
                x, y = rng.integers(0, grid, 2) * 4.0
                w, h = (rng.integers(0, spread, 2) * 4.0 + 4.0) * (rng.random() > 0.05)  # a few zero-area boxes
                label = str(rng.choice(["cat", "dog", "cup"]))
                rows.append(det(f"img{k}", model, label, float(rng.random()), (x, y, x + w, y + h)))
    return detections(*rows)


@pytest.mark.parametrize(
    ("seed", "n_images", "per_image", "grid", "spread", "threshold"),
    [
        pytest.param(0, 40, 6, 3, 4, 0.0, id="dense-overlaps"),
        pytest.param(1, 40, 40, 5, 1, 0.0, id="many-matches-per-image"),
        pytest.param(2, 60, 12, 6, 3, 0.3, id="thresholded"),
        pytest.param(3, 30, 40, 2, 2, 0.5, id="crowded-ties"),
        pytest.param(4, 5, 0, 3, 4, 0.0, id="no-boxes"),
    ],
)
def test_compare_models_equals_image_by_image_matching(seed, n_images, per_image, grid, spread, threshold):
    dets = random_detections(seed, n_images, per_image, grid, spread)
    ids = [f"img{k}" for k in range(n_images)]
    expected, mean_iou = reference_agreement(dets, threshold, ids)
    agreement = compare_models(dets, A, B, threshold=threshold, image_ids=ids)
    pd.testing.assert_frame_equal(agreement.per_image, expected, check_exact=True)
    assert agreement.mean_iou == mean_iou or (math.isnan(mean_iou) and math.isnan(agreement.mean_iou))
    assert (agreement.both, agreement.only_a, agreement.only_b) == tuple(
        expected[c].sum() for c in ("both", "only_a", "only_b")
    )


@pytest.mark.parametrize("seed", [10, 11, 12])
def test_match_grouped_gives_the_pairs_of_match_boxes(seed):
    rng = np.random.default_rng(seed)
    n_a, n_b, n_groups = 300, 300, 7
    group_a, group_b = np.sort(rng.integers(0, n_groups, n_a)), np.sort(rng.integers(0, n_groups, n_b))
    label_a, label_b = rng.integers(0, 2, n_a), rng.integers(0, 2, n_b)
    boxes_a, boxes_b = (np.hstack([xy := rng.integers(0, 3, (n, 2)) * 5.0, xy + rng.integers(1, 3, (n, 2)) * 5.0])
                        for n in (n_a, n_b))  # fmt: skip
    got = match_grouped(group_a, label_a, boxes_a, group_b, label_b, boxes_b)
    expected = []
    for g in range(n_groups):
        ia, ib = np.flatnonzero(group_a == g), np.flatnonzero(group_b == g)
        pairs = match_boxes(boxes_a[ia], label_a[ia], boxes_b[ib], label_b[ib])
        expected += [(g, int(ia[i]), int(ib[j]), iou) for i, j, iou in pairs]
    assert len(expected) > 50  # the case has real competition
    assert list(zip(got.group.tolist(), got.a.tolist(), got.b.tolist(), got.iou.tolist(), strict=True)) == expected
