"""Another detector's COCO results imported as a run: the round trip to AP 1.0, latency, every refusal, the page."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.config import GALLERY_ANNOTATIONS
from core.evaluate import evaluate, image_names_from, image_sizes_from, load_ground_truth, with_images
from core.evaluate.external import EXTERNAL, ExternalResultsError, import_coco_results
from core.store import Store

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
GT = json.loads(GALLERY_ANNOTATIONS.read_text())
NAME = "yolo-test v8n"


# --- factories -------------------------------------------------------------------------------------------------------


def results_from_gt(doc: dict = GT, score: float = 0.9) -> list[dict]:
    """The ground truth's own boxes as a COCO results list (what a perfect detector would write)."""
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": score}
        for a in doc["annotations"]
    ]


def gt_of(doc: dict):
    return load_ground_truth(json.dumps(doc).encode())


def encoded(results: object) -> bytes:
    return json.dumps(results).encode()


def ap_of(store: Store, run_id: str, gt) -> float:
    inf, det, _ = store.load_run(run_id)
    matched = with_images(gt, image_names_from(inf), image_sizes=image_sizes_from(inf))
    return evaluate(matched, det, model=NAME).AP


# --- round trip ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("latency", [None, 25.0])
def test_ground_truth_as_results_round_trips_to_ap_one(tmp_path, latency):
    store = Store(tmp_path / "store")
    gt = gt_of(GT)
    run_id = import_coco_results(store, encoded(results_from_gt()), model_name=NAME, gt=gt, latency_ms=latency)
    inf, det, info = store.load_run(run_id)
    assert len(inf) == len(GT["images"]) and len(det) == len(GT["annotations"])
    assert set(inf["model"]) == {NAME} and {*inf["weights"], *inf["device"], *inf["precision"]} == {EXTERNAL}
    assert (inf["error"] == "").all() and store.list_runs()["status"].iloc[0] == "finished"
    if latency is None:
        assert inf["total_ms"].isna().all()
    else:
        assert (inf["total_ms"] == latency).all() and (inf["inference_ms"] == latency).all()
    assert set(store.run_images(run_id)) == set(inf["image_id"]), "the images are kept with the run"
    assert info.settings["models"] == [NAME]
    assert ap_of(store, run_id, gt) == pytest.approx(1.0)
    cat = det[inf.set_index("image_id").loc[det["image_id"], "image_name"].to_numpy() == "cat.jpg"]
    assert cat[["label", "label_id", "x1", "y1", "x2", "y2"]].values.tolist() == [["cat", 17, 0.0, 0.0, 398.0, 300.0]]


def test_images_without_results_count_as_seen_with_nothing_found(tmp_path):
    store = Store(tmp_path / "store")
    only_cat = [r for r in results_from_gt() if r["image_id"] == 3]
    run_id = import_coco_results(store, encoded(only_cat), model_name=NAME, gt=gt_of(GT))
    inf, det, _ = store.load_run(run_id)
    assert len(inf) == 6 and len(det) == 1
    assert ap_of(store, run_id, gt_of(GT)) < 0.5


def test_image_names_instead_of_ground_truth_and_latency_per_file(tmp_path):
    store = Store(tmp_path / "store")
    results = [{"image_id": 7, "category_id": 17, "bbox": [0, 0, 398, 300], "score": 0.8}]
    run_id = import_coco_results(
        store, encoded(results), model_name=NAME, image_names={7: "cat.jpg"}, latency_ms={"cat.jpg": 12.5}
    )
    inf, det, _ = store.load_run(run_id)
    assert inf["image_name"].tolist() == ["cat.jpg"] and (inf["width"].iloc[0], inf["height"].iloc[0]) == (451, 300)
    assert inf["total_ms"].tolist() == [12.5] and det["label"].tolist() == ["cat"]


def test_ground_truth_category_ids_map_by_name(tmp_path):
    doc = copy.deepcopy(GT)
    doc["categories"] = [{"id": 1, "name": "cat"}]
    doc["annotations"] = [{**a, "category_id": 1} for a in GT["annotations"] if a["category_id"] == 17]
    store = Store(tmp_path / "store")
    gt = gt_of(doc)
    run_id = import_coco_results(store, encoded(results_from_gt(doc)), model_name=NAME, gt=gt, label_ids="gt")
    _, det, _ = store.load_run(run_id)
    assert det[["label_id", "label"]].values.tolist() == [[17, "cat"]]
    assert ap_of(store, run_id, gt) == pytest.approx(1.0)


def test_boxes_reaching_past_the_border_are_clipped(tmp_path):
    store = Store(tmp_path / "store")
    results = [{"image_id": 3, "category_id": 17, "bbox": [-5, -5, 500, 400], "score": 0.7}]
    run_id = import_coco_results(store, encoded(results), model_name=NAME, gt=gt_of(GT))
    _, det, _ = store.load_run(run_id)
    assert det[["x1", "y1", "x2", "y2"]].values.tolist() == [[0.0, 0.0, 451.0, 300.0]]


# --- refusals --------------------------------------------------------------------------------------------------------


def _one(**changes) -> list[dict]:
    return [{"image_id": 3, "category_id": 17, "bbox": [0, 0, 398, 300], "score": 0.9, **changes}]


SIZE_DOC = {**GT, "images": [{**im, "width": 100} if im["id"] == 3 else im for im in GT["images"]]}
SIZE_DOC["annotations"] = [a for a in GT["annotations"] if a["image_id"] != 3]
MISSING_DOC = {**GT, "images": [*GT["images"], {"id": 99, "file_name": "not-here.jpg", "width": 10, "height": 10}]}


@pytest.mark.parametrize(
    ("results", "kwargs", "message"),
    [
        (_one(image_id=999), {}, "image ids not in the ground truth: 999"),
        (_one(category_id=12), {}, "unknown category ids 12"),  # "N/A" in torchvision's list
        (_one(category_id=91), {}, "unknown category ids 91"),
        (_one(category_id=0), {}, "unknown category ids 0"),
        (_one(bbox=[0, 0, 0, 10]), {}, "no area"),
        (_one(bbox=[0, 0, 10]), {}, "a bbox of 4 finite numbers"),
        (_one(bbox=[600, 400, 10, 10]), {}, "outside their image"),
        (_one(score="high"), {}, "finite score"),
        ({"image_id": 3}, {}, "not a COCO results list"),
        (b"[{", {}, "not valid JSON"),
        (_one(), {"model_name": "<img src=x>"}, "detector name"),
        (_one(), {"model_name": ""}, "give the detector a name"),
        (_one(), {"model_name": "fasterrcnn_resnet50_fpn"}, "one of DetLens's own models"),
        (_one(), {"latency_ms": -3.0}, "latency"),
        (_one(), {"gt": None}, "give the ground truth"),
        (_one(), {"gt": None, "image_names": {3: "cat.jpg"}, "label_ids": "gt"}, "need the ground truth"),
        (_one(image_id=99), {"gt": gt_of(MISSING_DOC)}, "DetLens does not have: not-here.jpg"),
        (_one(image_id=4), {"gt": gt_of(SIZE_DOC)}, "differ in size"),
    ],
)
def test_refusals_are_one_line_and_leave_the_store_as_it_was(tmp_path, results, kwargs, message):
    store = Store(tmp_path / "store")
    args = {"model_name": NAME, "gt": gt_of(GT)} | kwargs
    data = results if isinstance(results, bytes) else encoded(results)
    with pytest.raises(ExternalResultsError) as info:
        import_coco_results(store, data, **args)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert store.list_runs().empty


# --- the page --------------------------------------------------------------------------------------------------------


def test_the_evaluate_page_imports_results_into_the_store_and_the_session(private_run_store):
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("../pages/evaluate.py").run()
    at.text_input(key="eval_ext_name").set_value(NAME)
    at.number_input(key="eval_ext_latency").set_value(40.0)
    uploader = next(u for u in at.get("file_uploader") if u.key == "eval_ext_file")
    uploader.set_value(("yolo.json", encoded(results_from_gt()), "application/json")).run()
    at.button(key="eval_ext_go").click().run()
    assert not at.exception
    (run_id,) = Store(private_run_store).list_runs()["run_id"]
    assert any(run_id in s.value.replace("\\", "") for s in at.success)
    inf = at.session_state["detlens_inferences"]
    assert set(inf["model"]) == {NAME} and (inf["total_ms"] == 40.0).all()
    table = next(d.value for d in at.dataframe if "AP50" in d.value.columns).set_index("model")
    assert table.loc[NAME, "AP"] == pytest.approx(1.0)
    frontier = next(c for c in at.get("plotly_chart") if c.key == "eval_frontier")
    assert NAME in frontier.proto.spec


def test_the_evaluate_page_shows_an_import_error_on_one_line():
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("../pages/evaluate.py").run()
    at.text_input(key="eval_ext_name").set_value(NAME)
    uploader = next(u for u in at.get("file_uploader") if u.key == "eval_ext_file")
    uploader.set_value(("yolo.json", encoded(_one(image_id=999)), "application/json")).run()
    at.button(key="eval_ext_go").click().run()
    assert not at.exception
    (error,) = [e.value for e in at.error]
    assert "999" in error and "\n" not in error
    assert at.session_state["detlens_inferences"].empty
