"""Calibration (ECE), operating points, the confusion matrix, worst images and slices, against hand-worked cases,
a brute-force scan and pycocotools."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.config import MAX_F1, TARGET_PRECISION
from core.evaluate.boxlevel import BACKGROUND, confusion, match_series, worst_images
from core.evaluate.calibration import calibration
from core.evaluate.operating import operating_points, thresholds_json
from core.evaluate.series import SeriesError, from_results
from core.evaluate.slices import folder_tags, read_tags, size_slices, tag_slices
from tests.detection_fixtures import coco_fixture, write_json
from tests.test_significance import pycocotools_eval


def test_ece_of_a_hand_worked_case():
    score = np.array([0.05, 0.15, 0.15, 0.95, 0.95, 0.95, 0.95, 1.0])
    correct = np.array([0, 1, 0, 1, 1, 1, 0, 1], dtype=bool)
    c = calibration(score, correct)
    # bins 0: 1 box, conf .05, acc 0; 1: 2 boxes, conf .15, acc .5; 9: 5 boxes, conf .96, acc .8
    assert c.ece == pytest.approx((1 * 0.05 + 2 * 0.35 + 5 * 0.16) / 8)
    row = c.bins.iloc[9]
    assert (row["count"], row["confidence"], row["accuracy"]) == (5, pytest.approx(0.96), pytest.approx(0.8))
    assert c.bins["count"].sum() == 8 and math.isnan(c.bins.iloc[5]["accuracy"])


def test_a_perfectly_calibrated_set_has_zero_ece():
    score = np.repeat([0.25, 0.75], 4)
    correct = np.array([1, 0, 0, 0, 1, 1, 1, 0], dtype=bool)
    assert calibration(score, correct).ece == pytest.approx(0.0)
    assert math.isnan(calibration(np.empty(0), np.empty(0, bool)).ece)


# --- a small scene, worked by hand ----------------------------------------------------------------------------------


def scene(tmp_path):
    gt = {
        "images": [{"id": 1, "file_name": "a/img1.png", "width": 100, "height": 100},
                   {"id": 2, "file_name": "b/img2.png", "width": 100, "height": 100}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [20, 20, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 18, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 17, "name": "cat"},
                       {"id": 18, "name": "dog"}],
    }  # fmt: skip
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},  # person: true positive
        {"image_id": 1, "category_id": 18, "bbox": [21, 21, 10, 10], "score": 0.8},  # the car taken for a dog
        {"image_id": 1, "category_id": 1, "bbox": [50, 50, 5, 5], "score": 0.7},  # a person on nothing
        {"image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "score": 0.3},  # below the threshold
    ]
    return from_results(write_json(tmp_path / "gt.json", gt), [write_json(tmp_path / "s.json", dets)])


def test_confusion_matrix_of_a_hand_worked_scene(tmp_path):
    ss = scene(tmp_path)
    c = confusion(ss, match_series(ss, ss.get("s")), threshold=0.5)
    assert c.labels == ["person", "car", "dog", BACKGROUND], "no cat box and no cat detection: no cat row"
    want = np.zeros((4, 4), dtype=np.int64)
    want[0, 0] = 1  # person seen as person
    want[1, 2] = 1  # car seen as dog
    want[3, 0] = 1  # background seen as person
    want[2, 3] = 1  # the dog missed
    np.testing.assert_array_equal(c.counts, want)
    assert c.images[(1, 2)] == [1] and c.images[(2, 3)] == [2]
    low = confusion(ss, match_series(ss, ss.get("s")), threshold=0.2)
    assert low.counts[3, 1] == 1  # the 0.3 car on the person (already taken) is a false positive car


def test_worst_images_by_f1_and_by_errors(tmp_path):
    ss = scene(tmp_path)
    m = match_series(ss, ss.get("s"))
    by_f1 = worst_images(ss, m, 0.5)
    assert by_f1["name"].tolist() == ["b/img2.png", "a/img1.png"]
    assert by_f1.iloc[0][["tp", "fp", "fn", "f1"]].tolist() == [0, 0, 1, 0.0]
    assert by_f1.iloc[1][["tp", "fp", "fn"]].tolist() == [1, 2, 1] and by_f1.iloc[1]["f1"] == pytest.approx(0.4)
    assert worst_images(ss, m, 0.5, by="errors")["name"].tolist() == ["a/img1.png", "b/img2.png"]


# --- operating points against a brute-force scan ---------------------------------------------------------------------


def _iou(d, g, crowd=False):
    w = min(d[0] + d[2], g[0] + g[2]) - max(d[0], g[0])
    h = min(d[1] + d[3], g[1] + g[3]) - max(d[1], g[1])
    if w <= 0 or h <= 0:
        return 0.0
    union = d[2] * d[3] if crowd else d[2] * d[3] + g[2] * g[3] - w * h
    return w * h / union


def brute_counts(gt: dict, dets: list[dict], cls: int, threshold: float) -> tuple[int, int, int]:
    """(tp, fp, n_gt) of class `cls` matching only the detections >= threshold, image by image, from scratch."""
    tp = fp = 0
    for im in gt["images"]:
        boxes = [a for a in gt["annotations"] if a["image_id"] == im["id"] and a["category_id"] == cls]
        mine = sorted((d for d in dets if d["image_id"] == im["id"] and d["category_id"] == cls
                       and d["score"] >= threshold), key=lambda d: -d["score"])  # fmt: skip
        taken = set()
        for d in mine:
            best, pick = 0.5, None
            for j, a in enumerate(boxes):
                if a["iscrowd"] or j in taken:
                    continue
                iou = _iou(d["bbox"], a["bbox"])
                if iou >= best and (pick is None or iou > best):
                    best, pick = iou, j
            if pick is not None:
                taken.add(pick)
                tp += 1
            elif not any(a["iscrowd"] and _iou(d["bbox"], a["bbox"], True) >= 0.5 for a in boxes):
                fp += 1
    n_gt = sum(1 for a in gt["annotations"] if a["category_id"] == cls and not a["iscrowd"])
    return tp, fp, n_gt


@pytest.mark.parametrize(("objective", "target"), [(MAX_F1, None), (TARGET_PRECISION, 0.6)])
def test_operating_points_equal_a_brute_force_scan(tmp_path, objective, target):
    gt, dets = coco_fixture(6, n_images=25)
    ss = from_results(write_json(tmp_path / "gt.json", gt), [write_json(tmp_path / "s.json", dets)])
    m = match_series(ss, ss.get("s"))
    keep = ~m.ignored
    points = operating_points(m.d_score[keep], m.d_cls[keep], m.tp[keep], m.g_cls[~m.g_crowd], ss.class_names,
                              objective=objective, target=target or 0.9, global_threshold=0.5)  # fmt: skip
    for p in points:
        cls = next(k for k, n in ss.class_names.items() if n == p.label)
        scan = []
        for t in sorted({d["score"] for d in dets if d["category_id"] == cls}, reverse=True):
            tp, fp, n_gt = brute_counts(gt, dets, cls, t)
            scan.append((t, tp / (tp + fp) if tp + fp else math.nan, tp / n_gt, 2 * tp / (tp + fp + n_gt)))
        best = max(f for *_, f in scan)
        want = next(row for row in scan if row[3] == best)  # ties: the highest threshold
        reaching = [row for row in scan if objective == TARGET_PRECISION and row[1] >= target]
        if reaching:
            want = reaching[-1]  # the lowest threshold at the target precision: the most recall
        assert p.reached == (objective == MAX_F1 or bool(reaching))
        assert (p.threshold, p.precision, p.recall, p.f1) == pytest.approx(want)
        tp, fp, n_gt = brute_counts(gt, dets, cls, 0.5)
        assert p.global_recall == pytest.approx(tp / n_gt)
    doc = thresholds_json(points, series="s", objective=objective, target=target)
    assert '"thresholds"' in doc and '"series": "s"' in doc


# --- slices ----------------------------------------------------------------------------------------------------------


def test_size_and_tag_slices_equal_pycocotools(tmp_path):
    gt, dets = coco_fixture(9, n_images=40)
    for im in gt["images"]:
        im["file_name"] = f"{'indoor' if im['id'] % 2 else 'outdoor'}/{im['file_name']}"
    ss = from_results(write_json(tmp_path / "gt.json", gt), [write_json(tmp_path / "s.json", dets)])
    ev = pycocotools_eval({k: v for k, v in gt.items()}, dets)
    sizes = size_slices(ss, ss.get("s")).set_index("slice")
    assert sizes.loc["all", "AP"] == pytest.approx(ev.stats[0], abs=1e-12)
    for k, name in enumerate(("small", "medium", "large"), start=1):
        assert sizes.loc[f"size: {name}", "AP"] == pytest.approx(ev.stats[2 + k], abs=1e-12)
        r = ev.eval["recall"][0, :, k, -1]
        assert sizes.loc[f"size: {name}", "recall50"] == pytest.approx(r[r > -1].mean(), abs=1e-12)
    tags = folder_tags(ss)
    assert list(tags) == ["folder: indoor", "folder: outdoor"]
    rows = tag_slices(ss, ss.get("s"), tags).set_index("slice")
    odd = dict(gt, images=[im for im in gt["images"] if im["id"] % 2])
    ev_odd = pycocotools_eval(odd, [d for d in dets if d["image_id"] % 2])
    assert rows.loc["folder: indoor", "AP"] == pytest.approx(ev_odd.stats[0], abs=1e-12)
    assert rows.loc["folder: indoor", "images"] == 20


def test_tags_csv_by_name_or_basename(tmp_path):
    ss = scene(tmp_path)
    tags = read_tags("image,tags\na/img1.png,night;rain\nimg2.png,night\nnot-there.png,x\n", ss)
    assert {k: v.tolist() for k, v in tags.items()} == {"tag: night": [1, 2], "tag: rain": [1]}
    with pytest.raises(SeriesError, match="tags no image"):
        read_tags(b"zzz.png,a\n", ss)
