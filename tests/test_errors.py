"""TIDE error decomposition (core.evaluate.errors, report) against tidecv 1.0.1 itself, and `python -m core errors`."""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest

from core.cli import main
from core.evaluate.errors import MAIN_ERRORS, TideInput, tide
from core.evaluate.report import SIZE_BOUNDS, error_report
from core.evaluate.series import from_results
from tests.detection_fixtures import coco_fixture, degraded, write_json

tidecv = pytest.importorskip("tidecv")
from tidecv.errors.main_errors import (  # noqa: E402 (after the skip when tidecv is missing)
    BackgroundError,
    BoxError,
    ClassError,
    DuplicateError,
    MissedError,
    OtherError,
)

TIDE_NAMES = {"cls": "Cls", "loc": "Loc", "both": "Both", "dupe": "Dupe", "bkg": "Bkg", "miss": "Miss"}
TOL = 1e-9


def tidecv_run(tmp_path, gt: dict, dets: list[dict], name: str = "res"):
    """tidecv's own evaluation of the pair: (run, main errors, special errors)."""
    from tidecv import TIDE, datasets

    gt_path, res_path = write_json(tmp_path / f"{name}_gt.json", gt), write_json(tmp_path / f"{name}.json", dets)
    t = TIDE()
    with contextlib.redirect_stdout(io.StringIO()):
        t.evaluate(datasets.COCO(str(gt_path)), datasets.COCOResult(str(res_path)), mode=TIDE.BOX)
        errors = t.get_all_errors()
    return t.runs[name], errors["main"][name], errors["special"][name]


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 5, 8])
def test_ap50_daps_and_counts_equal_tidecvs(tmp_path, seed):
    gt, dets = coco_fixture(seed)
    run, main_err, special = tidecv_run(tmp_path, gt, dets)
    report = error_report(
        from_results(write_json(tmp_path / "gt.json", gt), [write_json(tmp_path / "s.json", dets)]), "s"
    )
    r = report.result
    assert r.ap50 == pytest.approx(run.ap, abs=TOL)
    for key, short in TIDE_NAMES.items():
        assert r.dap[key] == pytest.approx(main_err[short], abs=TOL), key
    assert r.dap["fp"] == pytest.approx(special["FalsePos"], abs=TOL)
    assert r.dap["fn"] == pytest.approx(special["FalseNeg"], abs=TOL)
    assert r.counts == {k: n for k, n in ((e.short_name.lower(), n) for e, n in run.count_errors().items())}


def test_the_fixtures_hold_every_error_type():
    gt, dets = coco_fixture(3)
    report = error_report(_set(gt, dets), "s")
    assert all(report.result.counts[k] > 0 for k in MAIN_ERRORS), report.result.counts
    assert any(a["iscrowd"] for a in gt["annotations"])


def _set(gt, dets, tmp=None):
    import tempfile
    from pathlib import Path

    folder = Path(tmp or tempfile.mkdtemp())
    return from_results(write_json(folder / "gt.json", gt), [write_json(folder / "s.json", dets)])


@pytest.mark.parametrize("seed", [0, 3])
def test_per_class_figures_equal_tidecvs_per_class_ap(tmp_path, seed):

    gt, dets = coco_fixture(seed)
    run, _, _ = tidecv_run(tmp_path, gt, dets)
    report = error_report(_set(gt, dets, tmp_path / "ours"), "s")
    names = {c["id"]: c["name"] for c in gt["categories"]}
    base = {k: obj.get_ap() for k, obj in run.ap_data.objs.items() if not obj.is_empty()}
    for k, ap in base.items():
        assert report.per_class[names[k]]["ap50"] == pytest.approx(ap, abs=TOL)
    kinds = (("cls", ClassError), ("loc", BoxError), ("both", OtherError), ("dupe", DuplicateError),
             ("bkg", BackgroundError), ("miss", MissedError))  # fmt: skip
    for key, kind in kinds:
        fixed = run.fix_errors(lambda e, kind=kind: isinstance(e, kind))
        for k, ap in base.items():
            obj = fixed.objs[k]
            want = max(obj.get_ap() - ap, 0.0) if not obj.is_empty() else math.nan
            got = report.per_class[names[k]][key]
            assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, abs=TOL), (key, k)


def test_per_size_is_tidecv_on_that_sizes_boxes(tmp_path):
    gt, dets = coco_fixture(4, n_images=40)
    report = error_report(_set(gt, dets, tmp_path / "ours"), "s")
    assert set(report.per_size) == set(SIZE_BOUNDS)
    for size, (lo, hi) in SIZE_BOUNDS.items():
        sub_gt = dict(gt, annotations=[a for a in gt["annotations"]
                                       if a["iscrowd"] or lo <= a["bbox"][2] * a["bbox"][3] < hi])  # fmt: skip
        sub = [d for d in dets if lo <= d["bbox"][2] * d["bbox"][3] < hi]
        run, main_err, special = tidecv_run(tmp_path, sub_gt, sub, name=size)
        got = report.per_size[size]
        assert got.ap50 == pytest.approx(run.ap, abs=TOL)
        for key, short in TIDE_NAMES.items():
            assert got.dap[key] == pytest.approx(main_err[short], abs=TOL), (size, key)


def test_a_perfect_series_has_no_error_and_full_ap():
    gt, _ = coco_fixture(2)
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
               for a in gt["annotations"] if not a["iscrowd"]]  # fmt: skip
    r = error_report(_set(gt, perfect), "s").result
    assert r.ap50 == pytest.approx(100.0)
    assert all(v == 0 for v in r.counts.values())
    assert all(r.dap[k] == pytest.approx(0.0) for k in r.dap)


def test_an_empty_series_is_all_missed():
    import numpy as np

    inp = TideInput(2, np.array([0, 1]), np.array([1, 3]), np.array([[0, 0, 10, 10], [5, 5, 20, 20]], float),
                    np.zeros(2, bool), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty((0, 4)))  # fmt: skip
    r = tide(inp)
    assert r.ap50 == 0.0 and r.counts["miss"] == 2
    assert math.isnan(r.dap["miss"])  # every class empties: tidecv divides by zero there, DetLens says NaN (null)


def test_errors_command_json_has_the_issue_keys(tmp_path, capsys):
    gt, dets = coco_fixture(1)
    g = write_json(tmp_path / "gt.json", gt)
    base, cand = (
        write_json(tmp_path / "runs" / "base.json", dets),
        write_json(tmp_path / "cand.json", degraded(dets, 0.5)),
    )
    assert main(["errors", "--results", str(base), "--results", str(cand), "--gt", str(g), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc) == ["base", "cand"]
    for series in doc.values():
        assert set(series["dAP"]) == {"cls", "loc", "both", "dupe", "bkg", "miss", "fp", "fn"}
        assert set(series["counts"]) == {"cls", "loc", "both", "dupe", "bkg", "miss"}
        assert 0 <= series["ap50"] <= 100
    run, main_err, _ = tidecv_run(tmp_path, gt, dets, name="ref")
    assert doc["base"]["ap50"] == pytest.approx(run.ap, abs=1e-6)
    assert doc["base"]["dAP"]["loc"] == pytest.approx(main_err["Loc"], abs=1e-6)


def test_errors_command_prints_a_table(tmp_path, capsys):
    gt, dets = coco_fixture(1)
    assert main(["errors", "--results", str(write_json(tmp_path / "a.json", dets)),
                 "--gt", str(write_json(tmp_path / "gt.json", gt))]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "FalsePos" in out and out.splitlines()[2].startswith("a ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--results", "{tmp}/a.json", "--gt", "{tmp}/nobox.json"], "has no box on any image"),
        (["--results", "{tmp}/missing.json", "--gt", "{tmp}/gt.json"], "missing.json"),
        (["--gt", "{tmp}/gt.json"], "give exactly one of --run"),
        (["--results", "{tmp}/a.json", "--gt", "{tmp}/gt.json", "--series", "zzz"], "no series 'zzz'"),
    ],
)
def test_errors_command_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, message):
    gt, dets = coco_fixture(1)
    write_json(tmp_path / "gt.json", gt)
    write_json(tmp_path / "nobox.json", dict(gt, annotations=[]))
    write_json(tmp_path / "a.json", dets)
    assert main(["errors", *[a.format(tmp=tmp_path) for a in argv]]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_errors_command_analyses_add_the_other_figures(tmp_path, capsys):
    gt, dets = coco_fixture(1)
    g, a = write_json(tmp_path / "gt.json", gt), write_json(tmp_path / "a.json", dets)
    tags = tmp_path / "tags.csv"
    tags.write_text("image,tags\nimg1.png,night\nimg2.png,night;rain\n")
    assert main(["errors", "--results", str(a), "--gt", str(g), "--analyses", "--tags", str(tags),
                 "--threshold", "0.3", "--json"]) == 0  # fmt: skip
    doc = json.loads(capsys.readouterr().out)["a"]
    assert doc["threshold"] == 0.3 and doc["confusion"]["labels"][-1] == "background"
    assert {r["slice"] for r in doc["slices"]} >= {"all", "size: small", "tag: night", "tag: rain"}
    assert 0 <= doc["calibration"]["ece"] <= 1 and len(doc["calibration"]["bins"]) == 10
    assert {p["label"] for p in doc["operating_points"]["points"]} <= {"person", "car", "cat", "dog"}
    assert doc["worst_images"][0]["f1"] <= doc["worst_images"][-1]["f1"]
    assert main(["errors", "--results", str(a), "--gt", str(g), "--analyses"]) == 0
    assert "ECE" in capsys.readouterr().out


@pytest.mark.parametrize("seed", [0, 3, 5])
def test_each_error_names_the_boxes_tidecvs_error_objects_hold(tmp_path, seed):
    """Per box (#23): which detection (results-file position) and which ground-truth box (annotation position) each
    error is, against the prediction and ground-truth dicts of tidecv's own error objects."""

    kinds = {ClassError: "cls", BoxError: "loc", OtherError: "both", DuplicateError: "dupe", BackgroundError: "bkg",
             MissedError: "miss"}  # fmt: skip
    gt, dets = coco_fixture(seed)
    run, _, _ = tidecv_run(tmp_path, gt, dets)
    want = []
    for e in run.errors:
        pred = getattr(e, "pred", None)
        box = e.gt if isinstance(e, ClassError | BoxError | MissedError) else None
        image = (pred or box)["image"]
        want.append((kinds[type(e)], image, pred["_id"] if pred else -1, box["_id"] if box else -1))
    got = error_report(_set(gt, dets, tmp_path / "ours"), "s").error_boxes()
    assert sorted(got.itertuples(index=False, name=None)) == sorted(want)
    assert {k for k, *_ in want} == set(MAIN_ERRORS) or seed != 3, "seed 3 holds every error type"
    for _error, image, row, box in want:  # the positions name the same boxes in the files
        if row >= 0:
            assert dets[row]["image_id"] == image
        if box >= 0:
            assert gt["annotations"][box]["image_id"] == image
