"""Ground-truth evaluation: loading and validation, pycocotools metrics, per-box outcomes, the CLI, the gallery's GT."""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from core import evaluate as ev
from core.cli.evaluate import add_cli
from core.config import DETECTION_COLUMNS, GALLERY_ANNOTATIONS, GALLERY_DIR
from core.images import ImageSource, load_image
from core.inference.models import get_model
from core.records import coerce_detections
from tests.factories import ground_truth_run, load_script

COCO_NAMES = get_model("fasterrcnn_resnet50_fpn").categories  # label id = index = COCO category id

# --- factories ------------------------------------------------------------------------------------------------------


def gt_doc(boxes=(), *, images=(("a.jpg", 200, 200),), categories=(1, 17, 18, 47)) -> dict:
    """A COCO instances dict: `boxes` are (image index, category id, [x, y, w, h]) or with a 4th iscrowd item."""
    return {
        "images": [{"id": i + 1, "file_name": n, "width": w, "height": h} for i, (n, w, h) in enumerate(images)],
        "annotations": [
            {
                "id": k + 1,
                "image_id": b[0] + 1,
                "category_id": b[1],
                "bbox": list(b[2]),
                "area": b[2][2] * b[2][3],
                "iscrowd": b[3] if len(b) > 3 else 0,
            }
            for k, b in enumerate(boxes)
        ],  # fmt: skip
        "categories": [{"id": c, "name": COCO_NAMES[c], "supercategory": ""} for c in categories],
    }


def our_id(i: int) -> str:
    return f"{i:016x}"


def load(doc: dict, **kwargs) -> ev.GroundTruth:
    """Our images are named as the GT's file names, image_id = our_id(index)."""
    names = {our_id(i): im["file_name"] for i, im in enumerate(doc["images"])}
    return ev.load_ground_truth(json.dumps(doc).encode(), image_names=names, **kwargs)


def dets(*rows, model: str = "m") -> pd.DataFrame:
    """Detections in the records schema from (image index, label id, score, [x, y, w, h])."""
    out = [
        {"run_id": "r", "image_id": our_id(i), "model": model, "label_id": c, "label": COCO_NAMES[c], "score": s,
         "x1": b[0], "y1": b[1], "x2": b[0] + b[2], "y2": b[1] + b[3]}
        for i, c, s, b in rows
    ]  # fmt: skip
    return coerce_detections(pd.DataFrame(out, columns=list(DETECTION_COLUMNS)))


def pycocotools_stats(doc: dict, results: list[dict]) -> np.ndarray:
    """pycocotools called the plain way: COCO + loadRes + COCOeval."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(doc)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        e = COCOeval(coco_gt, coco_dt, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e.stats


def gallery_names() -> dict[str, str]:
    sources = [ImageSource.from_path(p).hashed() for p in sorted(GALLERY_DIR.glob("*.jpg"))]
    return {s.image_id: s.name for s in sources}


# --- metrics --------------------------------------------------------------------------------------------------------


def test_ground_truth_as_results_scores_one():
    doc = gt_doc([(0, 17, [10, 10, 50, 40]), (0, 1, [100, 20, 60, 150]), (1, 47, [5, 5, 20, 20])],
                 images=(("a.jpg", 200, 200), ("b.jpg", 100, 100)))  # fmt: skip
    gt = load(doc)
    boxes = ev.gt_boxes(gt).assign(score=1.0, model="m", run_id="r")
    m = ev.evaluate(gt, boxes)
    for key in ("AP", "AP50", "AP75", "AR1", "AR100"):
        assert getattr(m, key) == pytest.approx(1.0, abs=1e-9), key
    assert m.per_class["cat"] == pytest.approx(1.0, abs=1e-9) and math.isnan(m.per_class["dog"])
    assert m.n_gt == 3 and m.n_detections == 3 and m.n_images == 2


def test_gallery_ground_truth_as_results_scores_one():
    gt = ev.load_ground_truth(GALLERY_ANNOTATIONS, image_names=gallery_names())
    m = ev.evaluate(gt, ev.gt_boxes(gt).assign(score=1.0, model="m"))
    assert pytest.approx((1.0, 1.0, 1.0), abs=1e-9) == (m.AP, m.AP50, m.AP75)


ONE_GT = [(0, 17, [0, 0, 100, 100])]


@pytest.mark.parametrize(
    ("boxes", "detections", "expected"),
    [
        # One GT, one detection at IoU 0.62 (62x100 inside 100x100): matches at IoU .50, .55, .60 of the ten thresholds.
        (ONE_GT, [(0, 17, 0.9, [0, 0, 62, 100])], {"AP50": 1.0, "AP75": 0.0, "AP": 0.3}),
        # A false positive (no overlap) ranked above the true positive: precision 0 then 1/2 at recall 1. The
        # interpolated precision (max precision at recall >= r) is 1/2 at each of the 101 recall points: AP50 = 0.5.
        (ONE_GT, [(0, 17, 0.9, [150, 150, 40, 40]), (0, 17, 0.8, [0, 0, 100, 100])], {"AP50": 0.5, "AP": 0.5}),
        # Two GT; TP 0.9, FP 0.8, TP 0.7: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1. Interpolated: 1 for r <= 0.50
        # (51 points: 0.00..0.50), 2/3 for r in 0.51..1.00 (50 points): AP50 = (51 + 50 * 2/3) / 101 = 0.834983...
        (
            [(0, 17, [0, 0, 100, 100]), (0, 17, [100, 100, 100, 100])],
            [(0, 17, 0.9, [0, 0, 100, 100]), (0, 17, 0.8, [0, 120, 50, 50]), (0, 17, 0.7, [100, 100, 100, 100])],
            {"AP50": (51 + 50 * 2 / 3) / 101},
        ),
        # The same box twice: the second is a duplicate (FP) but comes after recall 1: AP50 stays 1.
        (ONE_GT, [(0, 17, 0.9, [0, 0, 100, 100]), (0, 17, 0.8, [0, 0, 100, 100])], {"AP50": 1.0, "AR100": 1.0}),
        # Right box, wrong class: cat AP 0 (its GT is missed); the dog box counts nowhere (no dog GT).
        (ONE_GT, [(0, 18, 0.9, [0, 0, 100, 100])], {"AP50": 0.0, "AR100": 0.0}),
        # Nothing detected: AP 0, AR 0.
        (ONE_GT, [], {"AP": 0.0, "AP50": 0.0, "AR1": 0.0}),
        # Only a 10x10 GT (small, area < 32^2): APs measured, APm/APl have nothing to measure (NaN).
        ([(0, 17, [0, 0, 10, 10])], [(0, 17, 0.9, [0, 0, 10, 10])], {"APs": 1.0, "APm": math.nan, "APl": math.nan}),
    ],
    ids=["iou-0.62", "fp-above-tp", "tp-fp-tp", "duplicate", "wrong-class", "no-detections", "small-only"],
)
def test_known_average_precision(boxes, detections, expected):
    m = ev.evaluate(load(gt_doc(boxes)), dets(*detections))
    for key, value in expected.items():
        got = getattr(m, key)
        assert math.isnan(got) if math.isnan(value) else got == pytest.approx(value, abs=1e-6), (key, got)


def _random_case(seed: int, n_images: int = 4) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(seed)
    images = [(f"img{i}.jpg", int(rng.integers(80, 400)), int(rng.integers(80, 400))) for i in range(n_images)]
    cats = (1, 3, 17, 47)
    boxes, results = [], []
    for i, (_, w, h) in enumerate(images):
        for _ in range(int(rng.integers(0, 6))):
            bw, bh = rng.uniform(4, w / 2), rng.uniform(4, h / 2)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            cat = int(rng.choice(cats))
            boxes.append((i, cat, [x, y, bw, bh], int(rng.random() < 0.1)))
            for _ in range(int(rng.integers(0, 3))):  # noisy copies, sometimes of another class
                jitter = rng.normal(0, 0.15, 4) * [bw, bh, bw, bh]
                c = cat if rng.random() < 0.8 else int(rng.choice(cats))
                results.append({"image_id": i + 1, "category_id": c, "bbox": list(np.array([x, y, bw, bh]) + jitter),
                                "score": float(rng.random())})  # fmt: skip
        for _ in range(int(rng.integers(0, 4))):  # pure false positives
            bw, bh = rng.uniform(4, w / 3), rng.uniform(4, h / 3)
            results.append({"image_id": i + 1, "category_id": int(rng.choice(cats)),
                            "bbox": [rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh],
                            "score": float(rng.random())})  # fmt: skip
    for r in results:  # keep w, h > 0 after jitter
        r["bbox"] = [float(r["bbox"][0]), float(r["bbox"][1]), float(max(r["bbox"][2], 1)), float(max(r["bbox"][3], 1))]
    return gt_doc(boxes, images=images, categories=cats), results


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_pycocotools_called_directly(seed):
    doc, results = _random_case(seed)
    assert results and doc["annotations"]  # the seeds give real cases
    expected = pycocotools_stats(doc, results)
    frame = dets(*[(r["image_id"] - 1, r["category_id"], r["score"], r["bbox"]) for r in results])
    got = ev.evaluate(load(doc), frame)
    for k, key in enumerate(ev.METRIC_KEYS):
        want = math.nan if expected[k] < 0 else expected[k]
        value = getattr(got, key)
        assert (math.isnan(value) and math.isnan(want)) or value == pytest.approx(want, abs=1e-6), key
    # The results-file path gives the same figures.
    gt_bytes, res_bytes = json.dumps(doc).encode(), json.dumps(results).encode()
    again = ev.evaluate_results_file(gt_bytes, res_bytes)
    assert again.to_json() == got.to_json()


def _gallery_case(seed: int) -> tuple[dict, list[dict]]:
    """The bundled ground truth and jittered copies of its boxes (some of another class), plus false positives."""
    rng = np.random.default_rng(seed)
    doc = json.loads(GALLERY_ANNOTATIONS.read_text())
    cats = [c["id"] for c in doc["categories"]]
    sizes = {im["id"]: (im["width"], im["height"]) for im in doc["images"]}
    results = []
    for a in doc["annotations"]:
        x, y, w, h = a["bbox"]
        for _ in range(int(rng.integers(0, 4))):
            jitter = rng.normal(0, 0.1, 4) * [w, h, w, h]
            c = a["category_id"] if rng.random() < 0.8 else int(rng.choice(cats))
            box = [x + jitter[0], y + jitter[1], max(w + jitter[2], 1), max(h + jitter[3], 1)]
            results.append({"image_id": a["image_id"], "category_id": c, "bbox": [float(v) for v in box],
                            "score": float(np.round(rng.random(), 2))})  # fmt: skip
    for image_id, (w, h) in sizes.items():
        for _ in range(3):
            results.append({"image_id": image_id, "category_id": int(rng.choice(cats)),
                            "bbox": [float(rng.uniform(0, w / 2)), float(rng.uniform(0, h / 2)), w / 4, h / 4],
                            "score": float(rng.random())})  # fmt: skip
    return doc, results


def _figures(m: ev.Metrics) -> dict[str, np.ndarray]:
    out = {k: np.asarray(getattr(m, k), np.float64) for k in (*ev.METRIC_KEYS, "precision", "scores")}
    return out | {f"AP[{c}]": np.asarray(v, np.float64) for c, v in m.per_class.items()}


def _figures_of(case: tuple[dict, list[dict]], backends: tuple[str, ...]) -> list[dict[str, np.ndarray]]:
    """`_figures` of a (ground truth, results) case evaluated by each COCOeval backend."""
    from core.evaluate import coco

    doc, results = case
    gt = ev.load_ground_truth(json.dumps(doc).encode())
    ids = [im["id"] for im in gt.raw["images"]]
    out = []
    for backend in backends:
        e = coco._run_cocoeval(gt.coco, results, ids, (1, 10, 100), backend)
        out.append(_figures(coco.metrics_from(e, gt.coco, (1, 10, 100), 0.0, len(results), backend)))
    return out


@pytest.mark.parametrize(
    "case",
    [lambda: _gallery_case(0), lambda: _gallery_case(1), lambda: _random_case(0, 150), lambda: _random_case(7, 150)],
    ids=["gallery-0", "gallery-1", "random-150-0", "random-150-7"],
)
def test_faster_coco_eval_gives_pycocotools_figures(case):
    """Every summary figure, every per-class AP and the precision/score arrays agree to 1e-12 (pycocotools divides
    by tp + fp + eps, faster-coco-eval's C++ in another order: the last bit of a precision may differ)."""
    pytest.importorskip("faster_coco_eval")
    from core.evaluate import coco

    reference, faster = _figures_of(case(), (coco.PYCOCOTOOLS, coco.FASTER))
    assert reference.keys() == faster.keys()
    assert np.isfinite(reference["AP"]) and reference["AP"] > 0.05, "a case with something to measure"
    for key, want in reference.items():
        np.testing.assert_allclose(faster[key], want, rtol=0, atol=1e-12, err_msg=key)


def _synthetic_1000() -> tuple[dict, list[dict]]:
    """scripts/bench_eval.py's seeded 1,000-image case (crowds, jittered copies of another class, duplicates, false
    positives) as a COCO ground truth and results."""
    doc, det = load_script("bench_eval").synthetic(1000, 0)
    gt = ev.load_ground_truth(json.dumps(doc).encode(), image_names={f"{i:016x}": f"img{i}.jpg" for i in range(1000)})
    from core.evaluate import coco

    return gt.raw, coco.detections_to_results(det, gt.image_id_map)


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(lambda: _gallery_case(0), id="gallery-0"),
        pytest.param(lambda: _gallery_case(1), id="gallery-1"),
        pytest.param(_synthetic_1000, id="synthetic-1000", marks=pytest.mark.slow),  # 1.4-1.7 s: the full suite's
    ],
)
def test_the_default_evaluator_gives_pycocotools_figures_exactly(case):
    """DetLens' vectorised COCOeval (the default) against pycocotools on the bundled gallery and on a synthetic
    1,000-image case: every summary figure, per-class AP, precision and score array identical."""
    from core.evaluate import coco

    reference, vector = _figures_of(case(), (coco.PYCOCOTOOLS, coco.VECTOR))
    assert coco.evaluator_backend() == coco.VECTOR
    assert np.isfinite(reference["AP"]) and reference["AP"] > 0.05, "something to measure"
    assert vector.keys() == reference.keys()
    for key, want in reference.items():
        np.testing.assert_array_equal(vector[key], want, err_msg=key)


@pytest.mark.parametrize(
    ("installed", "env", "expected"),
    [
        (True, "", "detlens-vector"),
        (True, "faster-coco-eval", "faster-coco-eval"),
        (False, "faster-coco-eval", "detlens-vector"),
        (True, "pycocotools", "pycocotools"),
    ],
)
def test_evaluator_is_picked_by_the_environment_and_named(monkeypatch, installed, env, expected):
    from core.evaluate import coco

    if installed:
        pytest.importorskip("faster_coco_eval")
    else:
        real = coco.importlib.util.find_spec
        monkeypatch.setattr(
            coco.importlib.util, "find_spec", lambda n, *a: None if n == "faster_coco_eval" else real(n, *a)
        )
    monkeypatch.setenv(coco.COCOEVAL_ENV, env)
    m = ev.evaluate(load(gt_doc(ONE_GT)), dets((0, 17, 0.9, [0, 0, 100, 100]), (0, 17, 0.5, [50, 50, 100, 100])))
    assert m.evaluator.startswith(expected + " ") and m.evaluator == ev.evaluator_version()
    assert pytest.approx((1.0, 1.0)) == (m.AP, m.AP50)


def test_ap_is_the_mean_of_the_per_class_ap():
    doc, results = _random_case(3)
    got = ev.evaluate(load(doc), dets(*[(r["image_id"] - 1, r["category_id"], r["score"], r["bbox"]) for r in results]))
    assert set(got.per_class) == {COCO_NAMES[c] for c in (1, 3, 17, 47)}
    assert got.precision.shape == (10, 101, 4)
    # AP is the mean of the per-class APs over the classes with GT.
    measured = [v for v in got.per_class.values() if not math.isnan(v)]
    assert pytest.approx(float(np.mean(measured)), abs=1e-9) == got.AP


def test_score_floor_and_max_dets():
    detections = dets((0, 17, 0.3, [0, 0, 100, 100]))
    gt = load(gt_doc(ONE_GT))
    assert ev.evaluate(gt, detections, score_floor=0.5).AP50 == 0.0
    assert pytest.approx(1.0) == ev.evaluate(gt, detections, score_floor=0.2).AP50
    # summarize() reads AP at maxDets=100 whatever the settings: AP is taken at the last max_dets instead.
    m = ev.evaluate(gt, detections, max_dets=(1, 5, 10))
    assert pytest.approx(1.0) == m.AP and m.to_json()["maxDets"] == [1, 5, 10]
    with pytest.raises(ValueError, match="max_dets"):
        ev.evaluate(gt, detections, max_dets=(10, 1, 100))


def test_evaluate_needs_one_model_and_a_matched_image():
    gt = load(gt_doc(ONE_GT))
    two = pd.concat([dets((0, 17, 0.9, [0, 0, 100, 100]), model="a"), dets((0, 17, 0.9, [0, 0, 9, 9]), model="b")])
    with pytest.raises(ValueError, match="2 models"):
        ev.evaluate(gt, two)
    assert pytest.approx(1.0) == ev.evaluate(gt, two, model="a").AP50
    assert ev.evaluate(gt, two, model="b").AP50 == 0.0
    unmatched = ev.load_ground_truth(json.dumps(gt_doc(ONE_GT)).encode(), image_names={"x": "other.jpg"})
    with pytest.raises(ev.GroundTruthError, match="none of the images"):
        ev.evaluate(unmatched, two, model="a")


def test_pycocotools_prints_nothing(capsys):
    ev.evaluate(load(gt_doc(ONE_GT)), dets((0, 17, 0.9, [0, 0, 100, 100])))
    assert capsys.readouterr().out == ""


def test_pr_curve():
    m = ev.evaluate(load(gt_doc(ONE_GT)), dets((0, 17, 0.9, [150, 150, 40, 40]), (0, 17, 0.8, [0, 0, 100, 100])))
    curve = ev.pr_curve(m)
    assert list(curve.columns) == ["recall", "precision"] and len(curve) == 101
    assert curve["precision"].to_numpy() == pytest.approx(np.full(101, 0.5))
    assert ev.pr_curve(m, "cat", iou=0.75)["precision"].to_numpy() == pytest.approx(np.full(101, 0.5))
    assert ev.pr_curve(m, "dog")["precision"].isna().all()  # no dog GT
    with pytest.raises(ValueError, match="IoU"):
        ev.pr_curve(m, iou=0.52)
    with pytest.raises(ValueError, match="unknown class"):
        ev.pr_curve(m, "unicorn")


def test_to_json_has_exactly_the_keys_and_is_strict_json():
    m = ev.evaluate(load(gt_doc(ONE_GT)), dets((0, 17, 0.9, [0, 0, 100, 100])))
    out = m.to_json()
    assert tuple(out) == ev.JSON_KEYS
    assert out["evaluator"] == ev.evaluator_version()
    assert out["APm"] is None and out["per_class"]["dog"] is None  # NaN -> null
    json.dumps(out, allow_nan=False)


# --- loading and validation -----------------------------------------------------------------------------------------


def _mutate(fn):
    doc = gt_doc([(0, 17, [10, 10, 50, 50]), (0, 1, [0, 0, 200, 200])])
    fn(doc)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[" * 100_000, "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[1, 2]", "not a COCO instances object"),
        (json.dumps({"images": []}).encode(), "missing keys (or they are not lists): annotations, categories"),
        (_mutate(lambda d: d["annotations"][1].update(image_id=9)), "annotations 2 refer to unknown image ids 9"),
        (_mutate(lambda d: d["annotations"][0].update(category_id=99)), "annotations 1 refer to unknown category ids 99"),
        (_mutate(lambda d: d["annotations"][0].update(bbox=[10, 10, 0, 5])), "annotations 1 have boxes with no area"),
        (_mutate(lambda d: d["annotations"][1].update(bbox=[10, 10, 5, -5])), "annotations 2 have boxes with no area"),
        (_mutate(lambda d: d["annotations"][0].update(bbox=[160, 10, 42, 10])), "annotations 1 have boxes outside"),
        (_mutate(lambda d: d["annotations"][0].update(bbox=[-2, 10, 20, 10])), "annotations 1 have boxes outside"),
        (_mutate(lambda d: d["annotations"][0].update(bbox=[1, 2, 3])), "annotations 1: each needs"),
        (_mutate(lambda d: d["annotations"][0].update(bbox=[1, 2, 3, float("nan")])), "annotations 1: each needs"),
        (_mutate(lambda d: d["annotations"][1].update(id=1)), "duplicate annotation ids: 1"),
        (_mutate(lambda d: d["images"].append(dict(d["images"][0]))), "duplicate image ids: 1"),
        (_mutate(lambda d: d["categories"].append({"id": 17, "name": "kitty"})), "duplicate category ids: 17"),
        (_mutate(lambda d: d["categories"].append({"id": 5, "name": "Cat"})), "duplicate category names: 'cat'"),
        (_mutate(lambda d: d["images"][0].pop("width")), "images 1: each needs"),
        (_mutate(lambda d: d["annotations"][0].update(image_id=-1)), "annotations 1 refer to unknown image ids -1"),
        (_mutate(lambda d: (d["images"].clear(), d["annotations"].clear())), "has no images"),
        (_mutate(lambda d: d["categories"].append({"id": 5, "name": "motorbike"}) or d["categories"].append(
            {"id": 4, "name": "motorcycle"})), "all map to model label 4"),  # fmt: skip
    ],
    ids=["not-json", "deep-nesting", "not-utf", "not-object", "missing-keys", "unknown-image", "unknown-category", "zero-width",
         "negative-height", "outside-right", "outside-left", "short-bbox", "nan-bbox", "dup-annotation", "dup-image",
         "dup-category", "dup-category-name", "image-no-width", "negative-image-id", "no-images", "name-clash"],
)  # fmt: skip
def test_validation_errors(data, message):
    with pytest.raises(ev.GroundTruthError) as info:
        ev.load_ground_truth(data)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_size_cap_and_missing_file(tmp_path):
    data = json.dumps(gt_doc(ONE_GT)).encode()
    with pytest.raises(ev.GroundTruthError, match="too large"):
        ev.load_ground_truth(data, max_bytes=len(data) - 1)
    path = tmp_path / "gt.json"
    path.write_bytes(data)
    with pytest.raises(ev.GroundTruthError, match="gt.json is too large"):
        ev.load_ground_truth(path, max_bytes=10)
    with pytest.raises(ev.GroundTruthError, match="not found"):
        ev.load_ground_truth(tmp_path / "missing.json")
    assert ev.load_ground_truth(path).n_boxes == 1
    assert ev.load_ground_truth(io.BytesIO(data)).n_boxes == 1  # a file object, such as a Streamlit upload


def test_a_box_within_the_tolerance_passes_and_missing_area_and_iscrowd_are_filled():
    doc = gt_doc([(0, 17, [-0.5, 10, 201, 20])])
    del doc["annotations"][0]["area"], doc["annotations"][0]["iscrowd"]
    gt = ev.load_ground_truth(json.dumps(doc).encode())
    assert gt.coco["annotations"][0]["area"] == pytest.approx(201 * 20) and gt.coco["annotations"][0]["iscrowd"] == 0


def test_category_names_map_to_model_label_ids():
    doc = gt_doc([(0, 3, [0, 0, 10, 10]), (0, 4, [20, 20, 10, 10]), (0, 9, [50, 50, 10, 10])])
    doc["categories"] = [{"id": 3, "name": "cup"}, {"id": 4, "name": "Motorbike"}, {"id": 9, "name": "widget"}]
    gt = load(doc)
    assert gt.category_map == {3: 47, 4: 4}
    assert gt.unmapped_categories == ["widget"] and gt.dropped_annotations == 1
    assert gt.class_names == {4: "motorcycle", 47: "cup"}
    assert {a["category_id"] for a in gt.coco["annotations"]} == {4, 47}
    assert {a["category_id"] for a in gt.raw["annotations"]} == {3, 4, 9}
    # torchvision's label 47 scores against GT "cup" (id 3 in the file).
    assert ev.evaluate(gt, dets((0, 47, 0.9, [0, 0, 10, 10]))).per_class["cup"] == pytest.approx(1.0)


def test_results_file_category_ids_gt_or_model():
    doc = gt_doc([(0, 3, [0, 0, 10, 10])])
    doc["categories"] = [{"id": 3, "name": "cup"}]
    gt_bytes = json.dumps(doc).encode()
    as_gt = json.dumps([{"image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "score": 0.9}]).encode()
    as_model = json.dumps([{"image_id": 1, "category_id": 47, "bbox": [0, 0, 10, 10], "score": 0.9}]).encode()
    assert pytest.approx(1.0) == ev.evaluate_results_file(gt_bytes, as_gt).AP50
    assert ev.evaluate_results_file(gt_bytes, as_model).AP50 == 0.0
    assert pytest.approx(1.0) == ev.evaluate_results_file(gt_bytes, as_model, label_ids="model").AP50
    bad = json.dumps([{"image_id": 7, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.5}]).encode()
    with pytest.raises(ev.ResultsError, match="not in the ground truth: 7"):
        ev.evaluate_results_file(gt_bytes, bad)
    assert ev.evaluate_results_file(gt_bytes, b"[]").AP50 == 0.0


def test_images_match_by_file_name():
    doc = gt_doc(ONE_GT, images=(("val/a.jpg", 200, 200), ("b.jpg", 100, 100), ("c.jpg", 100, 100)))
    names = {"h1": "a.jpg", "h2": "b.jpg", "h3": "b.jpg", "h4": "zzz.jpg", "h5": "c.jpg"}
    gt = ev.load_ground_truth(json.dumps(doc).encode(), image_names=names, image_sizes={"h5": (50, 50)})
    assert gt.image_id_map == {"h1": 1, "h2": 2}
    assert gt.unmatched_images == ["h3", "h4"] and gt.size_mismatches == ["h5"]
    assert gt.unmatched_gt_images == ["c.jpg"]
    plain = ev.load_ground_truth(json.dumps(doc).encode())
    assert plain.image_id_map == {} and ev.with_images(plain, {"x": "c.jpg"}).image_id_map == {"x": 3}


# --- per-box outcomes -----------------------------------------------------------------------------------------------

OUTCOME_GT = [
    (0, 17, [0, 0, 100, 100]),  # 1: cat, found
    (0, 18, [200, 0, 100, 100]),  # 2: dog, only a low-IoU dog box near it: missed
    (0, 1, [0, 200, 100, 100]),  # 3: person, only a below-threshold box: missed
    (0, 1, [200, 200, 200, 200], 1),  # 4: crowd of people
]
OUTCOME_DETS = [
    (0, 17, 0.9, [0, 0, 100, 100]),  # tp on 1
    (0, 17, 0.8, [5, 0, 100, 100]),  # same cat again: duplicate
    (0, 17, 0.7, [200, 0, 100, 100]),  # a cat on the dog: wrong class
    (0, 18, 0.6, [250, 0, 100, 100]),  # dog at IoU 1/3 with the dog: low IoU
    (0, 47, 0.55, [120, 300, 20, 20]),  # a cup where there is nothing: low IoU
    (0, 1, 0.52, [250, 250, 50, 50]),  # a person inside the crowd region: ignored
    (0, 1, 0.4, [0, 200, 100, 100]),  # below the 0.5 threshold: not shown
]


def test_match_outcomes_reasons():
    gt = ev.load_ground_truth(json.dumps(gt_doc(OUTCOME_GT, images=(("a.jpg", 400, 400),))).encode(),
                              image_names={our_id(0): "a.jpg"})  # fmt: skip
    out = ev.match_outcomes(gt, dets(*OUTCOME_DETS), threshold=0.5)
    assert tuple(out.columns) == ev.OUTCOME_COLUMNS
    got = list(zip(out["outcome"], out["reason"], out["label"], out["gt_id"].astype("object")))
    assert got == [
        ("tp", "", "cat", 1),
        ("fp", "duplicate", "cat", pd.NA),
        ("fp", "wrong class", "cat", pd.NA),
        ("fp", "low IoU", "dog", pd.NA),
        ("fp", "low IoU", "cup", pd.NA),
        ("ignored", "crowd", "person", 4),
        ("fn", "missed", "dog", 2),
        ("fn", "missed", "person", 3),
    ]
    assert out["iou"].iloc[0] == pytest.approx(1.0) and out["iou"].iloc[3] == pytest.approx(50 * 100 / 15000)
    assert math.isnan(out["iou"].iloc[4])  # no cup GT at all
    prf = ev.prf_at(out)
    # tp 1, fp 4, fn 2: precision 1/5, recall 1/3, F1 = 2pr / (p + r) = (2/15) / (8/15) = 1/4
    assert (prf.tp, prf.fp, prf.fn) == (1, 4, 2)
    assert (prf.precision, prf.recall, prf.f1) == pytest.approx((0.2, 1 / 3, 0.25))
    # At 0.3 the person box is shown too and finds its GT.
    low = ev.prf_at(ev.match_outcomes(gt, dets(*OUTCOME_DETS), threshold=0.3))
    assert (low.tp, low.fp, low.fn) == (2, 4, 1)


@pytest.mark.parametrize("seed", range(6))
def test_match_outcomes_agree_with_cocoeval_matching(seed):
    """At threshold 0 and IoU 0.5, tp/fp/ignored/fn counts equal COCOeval's own matches (area "all", maxDets 100)."""
    doc, results = _random_case(seed)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(doc)
        coco_gt.createIndex()
        e = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), "bbox")
        e.evaluate()
    counts = Counter()
    for img in e.evalImgs:
        if img is None or img["aRng"] != [0, 1e10] or img["maxDet"] != 100:
            continue
        matched, ignored = np.asarray(img["dtMatches"][0]) > 0, np.asarray(img["dtIgnore"][0], bool)
        counts["tp"] += int((matched & ~ignored).sum())
        counts["fp"] += int((~matched & ~ignored).sum())
        counts["ignored"] += int(ignored.sum())
        counts["fn"] += int(((np.asarray(img["gtMatches"][0]) == 0) & ~np.asarray(img["gtIgnore"], bool)).sum())
    frame = dets(*[(r["image_id"] - 1, r["category_id"], r["score"], r["bbox"]) for r in results])
    out = ev.match_outcomes(load(doc), frame, threshold=0.0)
    assert Counter(out["outcome"]) == +counts


def test_match_outcomes_without_detections_or_gt():
    gt = load(gt_doc(ONE_GT))
    out = ev.match_outcomes(gt, dets(), threshold=0.5, model="m")
    assert list(out["outcome"]) == ["fn"] and out["model"].iloc[0] == "m"
    prf = ev.prf_at(out)
    assert prf.recall == 0.0 and math.isnan(prf.precision) and math.isnan(prf.f1)
    empty = load(gt_doc([]))
    out = ev.match_outcomes(empty, dets((0, 17, 0.9, [0, 0, 10, 10])), threshold=0.5)
    assert list(out["reason"]) == ["low IoU"] and math.isnan(ev.prf_at(out).recall)


# --- the bundled ground truth ---------------------------------------------------------------------------------------


def test_gallery_annotations_validate_against_the_gallery():
    gt = ev.load_ground_truth(GALLERY_ANNOTATIONS, image_names=gallery_names())
    files = {p.name for p in GALLERY_DIR.glob("*.jpg")}
    assert {im["file_name"] for im in gt.raw["images"]} == files
    for im in gt.raw["images"]:
        loaded = load_image(GALLERY_DIR / im["file_name"])
        assert (im["width"], im["height"]) == (loaded.width, loaded.height), im["file_name"]
    assert not gt.unmatched_images and not gt.unmatched_gt_images and not gt.unmapped_categories
    # Standard COCO ids and names: the file's ids are torchvision's label ids.
    assert all(COCO_NAMES[c["id"]] == c["name"] for c in gt.raw["categories"]) and len(gt.raw["categories"]) == 80
    assert gt.category_map == {c["id"]: c["id"] for c in gt.raw["categories"]}
    per_image = {name: sorted(gt.class_names[a["category_id"]] for a in gt.coco["annotations"]
                              if a["image_id"] == gt.image_id_map[h]) for h, name in gallery_names().items()}  # fmt: skip
    assert per_image["cat.jpg"] == ["cat"] and per_image["astronaut.jpg"] == ["person"]
    assert {"cup", "spoon"} <= set(per_image["coffee.jpg"]) and "motorcycle" in per_image["motorcycle.jpg"]
    assert per_image["camera.jpg"] == ["person"] and per_image["rocket.jpg"] == []


# --- command line ---------------------------------------------------------------------------------------------------


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m core")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def gallery_results(tmp_path):
    gt = ev.load_ground_truth(GALLERY_ANNOTATIONS, image_names=gallery_names())
    results = ev.detections_to_results(ev.gt_boxes(gt).assign(score=1.0), gt.image_id_map)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    return path


def test_cli_json_has_exactly_the_required_keys(gallery_results, capsys):
    assert run_cli(["evaluate", "--gt", str(GALLERY_ANNOTATIONS), "--results", str(gallery_results), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert tuple(out) == ev.JSON_KEYS
    assert set(out) - {"evaluator", "maxDets", "score_floor"} == {*ev.METRIC_KEYS, "per_class"}
    assert out["AP"] == pytest.approx(1.0) and out["maxDets"] == [1, 10, 100]


def test_cli_table(gallery_results, capsys):
    assert run_cli(["evaluate", "--results", str(gallery_results)]) == 0  # --gt defaults to the gallery's
    out = capsys.readouterr().out
    assert "AP50" in out and "results.json" in out and ev.evaluator_version() in out and "cat 1.000" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "exactly one of --results"),
        (["--results", "missing.json"], "results file not found"),
        (["--gt", "missing.json", "--results", "x.json"], "ground truth file not found"),
    ],
)
def test_cli_usage_errors_exit_2(extra, message, capsys):
    assert run_cli(["evaluate", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_invalid_ground_truth_exits_2(tmp_path, gallery_results, capsys):
    bad = tmp_path / "gt.json"
    bad.write_bytes(_mutate(lambda d: d["annotations"][0].update(image_id=42)))
    assert run_cli(["evaluate", "--gt", str(bad), "--results", str(gallery_results)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: annotations 1 refer to unknown image ids 42") and err.count("\n") == 1


def test_cli_run_from_a_store(tmp_path, capsys):
    """Ground truth stored as a run's detections (score 1) evaluates to AP 1 through `evaluate --run`."""
    path = str(ground_truth_run(tmp_path / "runs", "r1"))
    assert run_cli(["evaluate", "--run", "r1", "--store", path, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["m"] and out["m"]["AP"] == pytest.approx(1.0)
    assert run_cli(["evaluate", "--run", "nope", "--store", path]) == 2
    assert "nope" in capsys.readouterr().err
    assert run_cli(["evaluate", "--run", "r1", "--store", path, "--model", "other"]) == 2
    assert "has no model 'other'" in capsys.readouterr().err
    assert run_cli(["evaluate", "--run", "r1", "--store", str(tmp_path / "none")]) == 2
    assert "no run store" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("gt_names", "ours", "want"),
    [
        (["a.jpg", "b.jpg"], {"i1": "a.jpg", "i2": "b.jpg"}, {"i1": 1, "i2": 2}),  # exact names
        (["val/a.jpg", "val/b.jpg"], {"i1": "a.jpg", "i2": "c.jpg"}, {"i1": 1}),  # by base name
        (["x/a.jpg", "y/a.jpg"], {"i1": "a.jpg"}, {}),  # two GT images of that base name: none
        (["a.jpg", "x/a.jpg"], {"i1": "x/a.jpg", "i2": "a.jpg"}, {"i1": 2, "i2": 1}),  # exact before base name
        (["val/a.jpg"], {"i1": "a.jpg", "i2": "sub/a.jpg"}, {"i1": 1}),  # one GT image, matched once
    ],
)
def test_images_match_by_exact_then_base_file_name(gt_names, ours, want):
    images = [{"id": k + 1, "file_name": n, "width": 10, "height": 10} for k, n in enumerate(gt_names)]
    doc = {"images": images, "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    gt = ev.with_images(ev.load_ground_truth(json.dumps(doc).encode()), ours)
    assert gt.image_id_map == want
    assert sorted(gt.unmatched_images) == sorted(set(ours) - set(want))


def test_cli_run_gives_pycocotools_figures_for_every_model_and_score_floor(tmp_path, capsys):
    """`evaluate --run` reads the run's columnar segment: its figures are pycocotools' on the same boxes, per model,
    with the score floor applied first."""
    import json as _json

    from core.records import DetectionResult, RunInfo
    from core.store import Store

    names = gallery_names()
    gt = ev.load_ground_truth(GALLERY_ANNOTATIONS, image_names=names)
    truth = ev.gt_boxes(gt)
    rng = np.random.default_rng(7)
    store = Store(tmp_path / "runs")
    store.start_run(RunInfo("r1", "2026-01-01T00:00:00+00:00", {"models": ["a", "b"]}))
    results: dict[str, list[dict]] = {"a": [], "b": []}
    for model, jitter in (("a", 2.0), ("b", 12.0)):
        for image_id, name in names.items():
            mine = truth[truth["image_id"] == image_id]
            size = ImageSource.from_path(GALLERY_DIR / name).load()
            xyxy = mine[["x1", "y1", "x2", "y2"]].to_numpy(np.float64) + rng.normal(0, jitter, (len(mine), 4))
            fp = rng.uniform(0, 200, (3, 2))
            xyxy = np.vstack([xyxy, np.hstack([fp, fp + 40])]).astype(np.float32)
            labels = np.concatenate([mine["label_id"].to_numpy(np.int64), rng.choice([1, 3, 18], 3)])
            scores = rng.uniform(0.05, 1.0, len(labels)).astype(np.float32)
            result = DetectionResult(
                image_id=image_id, image_name=name, width=size.width, height=size.height, model=model,
                weights="default", device="cpu", precision="fp32", batch_size=1, boxes=xyxy, scores=scores,
                labels=labels, label_names=tuple(COCO_NAMES[int(c)] for c in labels), preprocess_ms=1.0,
                inference_ms=1.0, postprocess_ms=1.0,
            )  # fmt: skip
            store.add_result("r1", result, threshold=0.5, created_at="2026-01-01T00:00:00+00:00")
            for box, label, score in zip(xyxy.astype(np.float64), labels, scores.astype(np.float64), strict=True):
                if score >= 0.3:  # the score floor below, applied by hand
                    x1, y1, x2, y2 = (float(v) for v in box)
                    results[model].append({"image_id": gt.image_id_map[image_id], "category_id": int(label),
                                           "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})  # fmt: skip
    store.finish_run("r1")
    assert (
        run_cli(["evaluate", "--run", "r1", "--store", str(tmp_path / "runs"), "--score-floor", "0.3", "--json"]) == 0
    )
    out = _json.loads(capsys.readouterr().out)
    assert list(out) == ["a", "b"]
    for model in ("a", "b"):
        want = pycocotools_stats(gt.coco, results[model])
        got = [out[model][k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")]
        got = [-1.0 if v is None else v for v in got]
        assert got == pytest.approx(list(want[:9]), abs=1e-12)  # AP..AR100 (stats 9-11: AR by size)
        assert out[model]["score_floor"] == 0.3
    assert out["a"]["AP"] != out["b"]["AP"]  # each model evaluated on its own boxes
