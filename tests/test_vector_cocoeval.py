"""core.evalcore.vector: DetLens' COCOeval gives pycocotools' evaluation bit for bit (every precision, recall and score
cell of every area range and maxDets, and the 12 stats), on random cases built to hit its corners: crowd regions,
tied scores, equal IoUs on a grid, GT areas that differ from their boxes, more detections than maxDets, a GT id 0,
images and classes outside the evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from core import evalcore
from core.evalcore.vector import vector_cocoeval
from tests.test_evalcore import coco_case

EVAL_KEYS = ("precision", "recall", "scores")


def corner_case(seed: int, grid: bool) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """A GT of 12 images (one without boxes), 3 classes with boxes and one without; detections near GT boxes (some
    of another class), random ones, tied scores; ids shuffled (0 among them half the time); 90% of images
    evaluated. `grid`: coordinates on a 20 px grid, so equal IoUs and exact threshold hits are common."""
    rng = np.random.default_rng(seed)
    images = [{"id": i * 3, "file_name": f"{i}.jpg", "width": 400, "height": 400} for i in range(12)]
    ids = rng.permutation(400)[:200]

    def box() -> list[float]:
        if grid:
            return [*(rng.integers(0, 6, 2) * 20.0), *(rng.integers(1, 8, 2) * 20.0)]
        return [*rng.uniform(0, 200, 2), *np.exp(rng.uniform(1, 5.3, 2))]

    anns = []
    for i in range(11):
        for _ in range(int(rng.integers(0, 12))):
            bbox = [float(v) for v in box()]
            area = bbox[2] * bbox[3] if rng.random() < 0.8 else float(rng.uniform(0, 20000))  # area as given
            anns.append({"id": int(ids[len(anns)]), "image_id": i * 3, "category_id": int(rng.choice([1, 2, 7])),
                         "bbox": bbox, "area": area, "iscrowd": int(rng.random() < 0.2)})  # fmt: skip
    doc = {"images": images, "annotations": anns, "categories": [{"id": c, "name": str(c)} for c in (1, 2, 7, 9)]}
    img, cat, score, boxes = [], [], [], []

    def add(image: int, category: int, xywh) -> None:
        x, y, w, h = xywh
        img.append(image), cat.append(category), boxes.append([x, y, x + max(w, 1.0), y + max(h, 1.0)])
        score.append(float(rng.choice([0.3, 0.6, 0.9])) if rng.random() < 0.5 else float(rng.random()))

    for a in anns:
        for _ in range(int(rng.integers(0, 5))):
            moved = np.asarray(a["bbox"]) + (rng.integers(-1, 2, 4) * 20 if grid else rng.normal(0, 4, 4))
            add(a["image_id"], a["category_id"] if rng.random() < 0.8 else int(rng.choice([1, 2, 7, 5])), moved)
    for _ in range(150):
        add(int(rng.integers(0, 12)) * 3, int(rng.choice([1, 2, 7])), box())
    img_ids = [im["id"] for im in images if rng.random() < 0.9]
    return doc, np.array(img), np.array(cat), np.array(score), np.array(boxes, dtype=np.float64), img_ids


def pycocotools_eval(doc, img, cat, score, boxes, img_ids, max_dets):
    on = np.isin(img, img_ids)
    results = evalcore.loaded_results(img[on], cat[on], score[on], boxes[on])
    return evalcore.run_cocoeval(doc, results, img_ids, max_dets, evalcore.PYCOCOTOOLS, owned=True)


def assert_same_evaluation(got, want) -> None:
    for key in EVAL_KEYS:
        np.testing.assert_array_equal(got.eval[key], np.asarray(want.eval[key]), err_msg=key)
    np.testing.assert_array_equal(got.stats, np.asarray(want.stats)[:12])
    assert list(got.params.catIds) == list(want.params.catIds)
    assert list(got.params.imgIds) == list(want.params.imgIds)


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("grid", [False, True])
@pytest.mark.parametrize("max_dets", [(1, 10, 100), (1, 3, 6)])
def test_vector_cocoeval_is_pycocotools_bit_for_bit(seed, grid, max_dets):
    case = corner_case(seed, grid)
    got = vector_cocoeval(case[0], case[5], max_dets, *case[1:5])
    want = pycocotools_eval(*case, max_dets)
    assert_same_evaluation(got, want)
    assert got.stats[1] > 0, "a case with something to measure"


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("max_dets", [(1, 10, 100), (1, 5, 20)])
def test_vector_cocoeval_on_the_array_paths_cases(seed, max_dets):
    doc, img, cat, score, boxes, img_ids = coco_case(seed)
    assert_same_evaluation(
        vector_cocoeval(doc, img_ids, max_dets, img, cat, score, boxes),
        pycocotools_eval(doc, img, cat, score, boxes, img_ids, max_dets),
    )


def test_the_corner_cases_reach_the_corners():
    """The random cases hold what they are for: crowd matches, matches of ignored (out-of-range area) GT, equal IoUs
    competing for one detection, a GT id 0, more detections than maxDets on one (image, class)."""
    from pycocotools.cocoeval import COCOeval

    seen = {"crowd": 0, "ignored": 0, "tie": 0, "id0": 0, "cut": 0}
    for seed in range(10):
        doc, img, cat, score, boxes, img_ids = corner_case(seed, grid=True)
        ev = pycocotools_eval(doc, img, cat, score, boxes, img_ids, (1, 3, 6))
        assert isinstance(ev, COCOeval)
        by_id = {a["id"]: a for a in doc["annotations"]}
        seen["id0"] += 0 in by_id
        for e in ev.evalImgs:
            if e is None:
                continue
            matched = e["dtMatches"][e["dtMatches"] > 0].astype(int)
            seen["crowd"] += sum(by_id[g]["iscrowd"] for g in matched.tolist())
            seen["ignored"] += int((e["dtIgnore"] & (e["dtMatches"] > 0)).sum())
            seen["cut"] += len(e["dtIds"]) == 6
        for (_, _), ious in ev.ious.items():
            if len(ious) and ious.shape[1] > 1:
                top = np.sort(ious, axis=1)[:, -2:]
                seen["tie"] += int(((top[:, 0] == top[:, 1]) & (top[:, 1] >= 0.5)).sum())
    assert all(n > 0 for n in seen.values()), seen


def test_a_gt_id_0_counts_as_pycocotools_counts_it():
    """pycocotools marks a match by the GT id, so a detection matched to GT id 0 reads as unmatched (a false
    positive) while the GT box is taken: the same figures here."""
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
        "annotations": [
            {"id": 0, "image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50], "area": 2500.0, "iscrowd": 0},
            {"id": 5, "image_id": 1, "category_id": 1, "bbox": [50, 50, 40, 40], "area": 1600.0, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "a"}],
    }
    case = (doc, np.array([1, 1, 1]), np.array([1, 1, 1]), np.array([0.9, 0.8, 0.7]),
            np.array([[0, 0, 50, 50], [50, 50, 90, 90], [1, 1, 50, 50]], dtype=np.float64), [1])  # fmt: skip
    got = vector_cocoeval(doc, [1], (1, 10, 100), *case[1:5])
    want = pycocotools_eval(*case, (1, 10, 100))
    assert_same_evaluation(got, want)
    assert got.eval["recall"][0, 0, 0, -1] == 0.5, "one of the two GT boxes counts as found"


def test_vector_cocoeval_without_detections_or_ground_truth_boxes():
    doc, *_, img_ids = coco_case(0)
    empty = np.zeros(0, dtype=np.int64)
    no_dets = (empty, empty, empty.astype(float), np.zeros((0, 4)))
    assert_same_evaluation(
        vector_cocoeval(doc, img_ids, (1, 10, 100), *no_dets), pycocotools_eval(doc, *no_dets, img_ids, (1, 10, 100))
    )
    bare = {**doc, "annotations": []}
    _, img, cat, score, boxes, _ = coco_case(0)
    got = vector_cocoeval(bare, img_ids, (1, 10, 100), img, cat, score, boxes)
    assert_same_evaluation(got, pycocotools_eval(bare, img, cat, score, boxes, img_ids, (1, 10, 100)))
    assert (got.stats == -1).all()


@pytest.mark.parametrize("owned", [True, False])
def test_the_dict_path_gives_the_array_paths_figures(owned):
    """`run_cocoeval` with the vector backend (COCO results files, `evaluate_results_file`) reads boxes as given."""
    doc, img, cat, score, boxes, img_ids = corner_case(3, grid=False)
    on = np.isin(img, img_ids)
    results = evalcore.loaded_results(img[on], cat[on], score[on], boxes[on])
    if not owned:
        results = [{k: r[k] for k in ("image_id", "category_id", "bbox", "score")} for r in results]
    got = evalcore.run_cocoeval(doc, results, img_ids, (1, 10, 100), evalcore.VECTOR, owned=owned)
    assert_same_evaluation(got, pycocotools_eval(doc, img, cat, score, boxes, img_ids, (1, 10, 100)))


def test_faster_coco_eval_agrees_to_the_last_bits():
    pytest.importorskip("faster_coco_eval")
    doc, img, cat, score, boxes, img_ids = corner_case(5, grid=True)
    got = evalcore.coco_summary(vector_cocoeval(doc, img_ids, (1, 10, 100), img, cat, score, boxes))
    on = np.isin(img, img_ids)
    results = evalcore.loaded_results(img[on], cat[on], score[on], boxes[on])
    want = evalcore.coco_summary(
        evalcore.run_cocoeval(doc, results, img_ids, (1, 10, 100), evalcore.FASTER, owned=True)
    )
    for name in ("stats", "precision", "scores"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name)[: len(getattr(got, name))], atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 7, 50])
def test_candidate_pairs_made_in_chunks_give_the_same_evaluation(monkeypatch, chunk):
    from core.evalcore import vector

    case = corner_case(2, grid=True)
    whole = vector_cocoeval(case[0], case[5], (1, 10, 100), *case[1:5])
    monkeypatch.setattr(vector, "PAIR_CHUNK", chunk)
    assert_same_evaluation(vector_cocoeval(case[0], case[5], (1, 10, 100), *case[1:5]), whole)
