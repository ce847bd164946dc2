"""Runtimes against eager with ground truth: each non-eager series' COCO AP, its eager reference's on the same images
and their difference, in core.compare.agreement, the Compare page (table and model cards) and `python -m core detect`."""

from __future__ import annotations

import contextlib
import io
import json
import math

import pandas as pd
import pytest
from PIL import Image

from core.cli import main
from core.compare.agreement import ap_against_eager, ap_text, has_ap, runtime_agreement, with_ap
from core.evaluate import load_ground_truth
from core.execution import runner
from core.images import ImageSource
from core.records import RunInfo
from dashboard.tables import NA
from tests.factories import RUN, box, gallery_ref, inference, tables

EAGER = "ssdlite320_mobilenet_v3_large"
ORT = f"{EAGER}@onnxruntime"
SIZE = (120, 90)  # (width, height) of both images
CAT, DOG = 17, 18
GT_BOXES = {  # image name -> [(COCO category id, [x, y, w, h])]
    "a.png": [(CAT, [10, 10, 50, 40]), (DOG, [60, 30, 40, 50])],
    "b.png": [(CAT, [5, 20, 60, 60])],
}
EAGER_BOXES = {  # the ground truth's boxes, found with decisive scores, and a weak false positive
    "a.png": [(CAT, 0.95, (10, 10, 60, 50)), (DOG, 0.9, (60, 30, 100, 80)), (CAT, 0.3, (80, 0, 110, 20))],
    "b.png": [(CAT, 0.92, (5, 20, 65, 80))],
}


def _png(name: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", SIZE, (sum(map(ord, name)) % 256, 90, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _gt_doc() -> dict:
    images = [{"id": i, "file_name": n, "width": SIZE[0], "height": SIZE[1]} for i, n in enumerate(GT_BOXES, 1)]
    boxes = [(i, c, b) for i, n in enumerate(GT_BOXES, 1) for c, b in GT_BOXES[n]]
    ann = [{"id": k, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
           for k, (i, c, b) in enumerate(boxes, 1)]  # fmt: skip
    categories = [{"id": CAT, "name": "cat"}, {"id": DOG, "name": "dog"}]
    return {"images": images, "annotations": ann, "categories": categories}


@pytest.fixture
def gt_file(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(_gt_doc()), encoding="utf-8")
    return path


def _drop_dog(name, boxes):
    return [b for b in boxes if b[0] != DOG]


def _move_cat(name, boxes):
    return [(lab, s, (x1 + 25, y1, x2 + 25, y2)) if lab == CAT and s > 0.5 else (lab, s, (x1, y1, x2, y2))
            for lab, s, (x1, y1, x2, y2) in boxes]  # fmt: skip


def _same(name, boxes):
    return boxes


def _session(change=_same, *, names=tuple(GT_BOXES), size=SIZE, failed=()):
    """Eager and an ONNX Runtime series on `names`; the series' boxes are `change(name, eager boxes)`; images named
    in `failed` are errors of the series."""
    refs = {n: ImageSource.from_bytes(n, _png(n)).hashed() for n in names}
    inf, det = [], []
    for name, ref in refs.items():
        boxes = EAGER_BOXES.get(name, EAGER_BOXES["a.png"])
        for model, runtime, rows in ((EAGER, "eager", boxes), (ORT, "onnxruntime", change(name, boxes))):
            error = "boom" if model == ORT and name in failed else ""
            inf.append(inference(ref, model, n=len(rows), error=error) | {"runtime": runtime, "width": size[0],
                                                                          "height": size[1]})  # fmt: skip
            if not error:
                det += [box(ref, model, {CAT: "cat", DOG: "dog"}[lab], s, xyxy, lab) for lab, s, xyxy in rows]
    inf_df, det_df = tables(inf, det)
    return inf_df, det_df, {r.image_id: r for r in refs.values()}


def _pycocotools_ap(change, names: tuple[str, ...]) -> float:
    """pycocotools' COCOeval AP (stats[0]) of the boxes `change` makes of EAGER_BOXES, on the images `names`, against
    _gt_doc(): the reference, computed from the test's own boxes, not from DetLens's tables or evaluator."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    doc = _gt_doc()
    ids = {image["file_name"]: image["id"] for image in doc["images"]}
    coco_gt = COCO()
    coco_gt.dataset = doc
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        results = [{"image_id": ids[name], "category_id": label, "score": score, "bbox": [x1, y1, x2 - x1, y2 - y1]}
                   for name in names for label, score, (x1, y1, x2, y2) in change(name, EAGER_BOXES[name])]  # fmt: skip
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        evaluator.params.imgIds = sorted(ids[name] for name in names)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[0])


@pytest.mark.parametrize(
    ("change", "failed", "lower"),
    [(_same, (), False), (_drop_dog, (), True), (_move_cat, (), True), (_drop_dog, ("b.png",), True)],
)
def test_ap_difference_is_pycocotools_ap_of_the_two_series(gt_file, change, failed, lower):
    gt = load_ground_truth(gt_file)
    inf, det, _ = _session(change, failed=failed)
    common = tuple(name for name in GT_BOXES if name not in failed)  # the images both series processed
    expected_ap = _pycocotools_ap(change, common)
    expected_eager = _pycocotools_ap(_same, common)
    row = with_ap(runtime_agreement(inf, det), ap_against_eager(gt, inf, det)).set_index("series").loc[ORT]
    assert (row["ap"], row["ap_eager"]) == (expected_ap, expected_eager)
    assert row["ap_diff"] == expected_ap - expected_eager
    assert bool(row["ap_diff"] < 0) is lower  # the dropped or moved boxes cost AP; the same boxes cost nothing
    assert ap_text(row) == f"AP {expected_ap:.3f} (eager {expected_eager:.3f}, ΔAP {expected_ap - expected_eager:+.3f})"


@pytest.mark.parametrize(
    ("names", "size"),
    [(("other.png",), SIZE), (tuple(GT_BOXES), (64, 48))],  # no ground-truth file of that name; another size
)
def test_without_ground_truth_for_the_images_ap_is_missing_not_zero(gt_file, names, size):
    inf, det, _ = _session(_drop_dog, names=names, size=size)
    summary = with_ap(runtime_agreement(inf, det), ap_against_eager(load_ground_truth(gt_file), inf, det))
    assert len(summary) == 1 and summary[["ap", "ap_eager", "ap_diff"]].isna().all(axis=None)
    assert not has_ap(summary)
    assert ap_text(summary.iloc[0]) == "AP: no ground truth"


# --- the CLI ---------------------------------------------------------------------------------------------------------


def _fake_run(session):
    inf, det, _ = session

    def fake(images, settings, **kwargs):
        info = RunInfo(RUN, "2026-01-01", settings={"models": [EAGER], "device": "cpu", "variants": {}})
        return runner.RunOutput(info=info, results=[], inferences=inf, detections=det)

    return fake


@pytest.mark.parametrize("with_gt", [True, False])
def test_detect_prints_each_runtimes_ap_against_eager(tmp_path, gt_file, monkeypatch, capsys, with_gt):
    session = _session(_drop_dog)
    for name in GT_BOXES:
        (tmp_path / name).write_bytes(_png(name))
    monkeypatch.setattr(runner, "run", _fake_run(session))
    gt = str(gt_file) if with_gt else "none"
    assert main(["detect", str(tmp_path / "a.png"), "--out", str(tmp_path / "out"), "--gt", gt, "-q"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.split("agreement with eager")[1].splitlines() if x.strip().startswith(ORT))
    if with_gt:
        ap, eager = _pycocotools_ap(_drop_dog, tuple(GT_BOXES)), _pycocotools_ap(_same, tuple(GT_BOXES))
        assert ap < eager and f"ΔAP {ap - eager:+.3f}" in line and f"eager {eager:.3f}" in line
    else:
        assert line.endswith("AP: no ground truth") and "ΔAP" not in line


# --- Compare ---------------------------------------------------------------------------------------------------------


def _gallery_session(cat_size):
    """cat.jpg (its ground truth is in the bundled annotations: one cat, 0 0 398 300) through eager and an ONNX
    Runtime series that moved the box; `cat_size` the recorded image size (another size: no ground truth)."""
    cat = gallery_ref("cat.jpg")
    inf = [inference(cat, m, n=1) | {"runtime": rt, "width": cat_size[0], "height": cat_size[1]}
           for m, rt in ((EAGER, "eager"), (ORT, "onnxruntime"))]  # fmt: skip
    det = [box(cat, EAGER, "cat", 0.9, (0, 0, 398, 300), CAT), box(cat, ORT, "cat", 0.9, (60, 0, 458, 300), CAT)]
    inf_df, det_df = tables(inf, det)
    return inf_df, det_df, {cat.image_id: cat}


@pytest.mark.slow
@pytest.mark.parametrize("with_gt", [True, False])
def test_compare_shows_ap_against_eager_only_with_ground_truth(with_gt):
    from tests.test_pages import compare_tab, open_page, texts

    session = _gallery_session((451, 300) if with_gt else (100, 80))
    at = compare_tab(open_page("pages/compare.py", session), "Runtimes")
    assert not at.exception
    table = next(d.value for d in at.dataframe if "verdict" in d.value.columns).set_index("series")
    card = next(d.value for d in at.dataframe if "median_total_ms" in d.value.columns).set_index("model")
    if with_gt:
        # worked by hand: the bundled cat box is (0, 0, 398, 300); eager's is that box (IoU 1: AP 1 at every IoU
        # threshold), the series' is moved 60 px (IoU 338/458 = 0.738: a match at 0.50-0.70, 5 of the 10 thresholds)
        # (pycocotools' own mean of those 101-point precisions gives 0.49999999999999994 and 0.9999999999999998)
        ap, eager = pytest.approx(0.5, abs=1e-12), pytest.approx(1.0, abs=1e-12)
        assert table.loc[ORT, ["ap", "ap_eager", "ap_diff"]].tolist() == [ap, eager, pytest.approx(-0.5, abs=1e-12)]
        # the eager row has no ΔAP, so that column is shown as text, formatted, with "–" for the missing value
        assert card.loc[ORT, "ΔAP vs eager"] == "-0.500"
        assert card.loc[EAGER, "AP (ground truth)"] == eager
        assert card.loc[EAGER, "ΔAP vs eager"] == NA
    else:
        assert "ap_diff" not in table.columns and "ΔAP vs eager" not in card.columns
        assert "No ground truth for these images" in texts(at)


def test_model_card_without_ground_truth_is_unchanged():
    from dashboard.runtime_ap import card_with_ap

    card = pd.DataFrame({"model": [EAGER, ORT], "median_total_ms": [1.0, 2.0]})
    summary = pd.DataFrame({"series": [ORT], "reference": [EAGER], "ap": [math.nan], "ap_eager": [math.nan],
                            "ap_diff": [math.nan]})  # fmt: skip
    pd.testing.assert_frame_equal(card_with_ap(card, summary), card)
