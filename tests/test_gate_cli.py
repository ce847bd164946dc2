"""`python -m core gate`: exit 0 (not significantly worse by more than --max-drop), 1 (worse), 2 (bad input, one line)."""

from __future__ import annotations

import json

import pytest

from core.cli import main
from tests.detection_fixtures import coco_fixture, degraded, store_run, write_json


@pytest.fixture
def files(tmp_path):
    gt, dets = coco_fixture(11, n_images=60)
    write_json(tmp_path / "gt.json", gt)
    write_json(tmp_path / "nobox.json", dict(gt, annotations=[]))
    write_json(tmp_path / "runs" / "base.json", dets)
    write_json(tmp_path / "rerun.json", dets)  # the same model run twice: the same boxes
    write_json(tmp_path / "worse.json", degraded(dets, 0.35))
    return tmp_path, gt, dets


def gate(tmp, *args: str) -> int:
    return main(["gate", "--gt", str(tmp / "gt.json"), "--resamples", "200", *[a.format(tmp=tmp) for a in args]])


def test_the_same_series_run_twice_passes(files, capsys):
    tmp, _, _ = files
    assert gate(tmp, "--results", "{tmp}/runs/base.json", "--results", "{tmp}/rerun.json",
                "--baseline", "base", "--candidate", "rerun") == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "PASS" in out and "diff +0.0000 [+0.0000, +0.0000]" in out


def test_a_clearly_worse_candidate_fails_and_prints_the_figures(files, capsys):
    tmp, _, _ = files
    assert gate(tmp, "--results", "{tmp}/runs/base.json", "--results", "{tmp}/worse.json",
                "--baseline", "base", "--candidate", "worse") == 1  # fmt: skip
    out = capsys.readouterr().out
    assert "FAIL" in out and "AP50" in out and "significantly worse" in out


def test_a_large_allowed_drop_lets_it_pass_and_json_says_so(files, capsys):
    tmp, _, _ = files
    assert gate(tmp, "--results", "{tmp}/runs/base.json", "--results", "{tmp}/worse.json", "--baseline", "base",
                "--candidate", "worse", "--max-drop", "0.9", "--json") == 0  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    assert doc["pass"] is True and doc["exit"] == 0 and doc["baseline"] == "base" and doc["candidate"] == "worse"
    assert doc["metrics"]["AP"]["high"] < 0 < 0.9 + doc["metrics"]["AP"]["high"]
    assert doc["verdict"] == "A better" and doc["resamples"] == 200


def test_a_stored_run_gates_its_models_with_latency(files, capsys):
    tmp, gt, dets = files
    store_run(tmp / "store", gt, {"model_a": dets, "model_b": degraded(dets, 0.35)})
    assert main(["gate", "--run", "20260101-000000-eeeeee", "--store", str(tmp / "store"), "--gt",
                 str(tmp / "gt.json"), "--baseline", "model_a", "--candidate", "model_b", "--resamples", "100",
                 "--json"]) == 1  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    assert doc["metrics"]["latency_ms"]["diff"] == 0.0 and doc["n_images"] == 60


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--results", "{tmp}/runs/base.json", "--baseline", "base", "--candidate", "nope"], "no series 'nope'"),
        (
            [
                "--results",
                "{tmp}/runs/base.json",
                "--results",
                "{tmp}/worse.json",
                "--baseline",
                "base",
                "--candidate",
                "worse",
                "--max-drop",
                "-1",
            ],
            "--max-drop must be >= 0",
        ),  # fmt: skip
        (["--baseline", "base", "--candidate", "worse"], "give exactly one of --run"),
        (
            ["--run", "20260101-000000-ffffff", "--store", "{tmp}/store", "--baseline", "a", "--candidate", "b"],
            "run 20260101-000000-ffffff",
        ),  # fmt: skip
    ],
)
def test_bad_input_exits_2_with_one_line(files, capsys, argv, message):
    tmp, gt, dets = files
    store_run(tmp / "store", gt, {"model_a": dets})
    assert gate(tmp, *argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("error: ")


def test_no_ground_truth_for_any_image_exits_2(files, capsys):
    tmp, gt, dets = files
    assert main(["gate", "--gt", str(tmp / "nobox.json"), "--results", str(tmp / "runs" / "base.json"),
                 "--baseline", "base", "--candidate", "base"]) == 2  # fmt: skip
    assert "no box on any image" in capsys.readouterr().err
    other = dict(gt, images=[dict(im, file_name=f"other{im['id']}.png") for im in gt["images"]])
    write_json(tmp / "other.json", other)
    store_run(tmp / "store", gt, {"model_a": dets})
    assert main(["gate", "--gt", str(tmp / "other.json"), "--run", "20260101-000000-eeeeee", "--store",
                 str(tmp / "store"), "--baseline", "model_a", "--candidate", "model_a"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "no ground truth for any image" in err and err.count("\n") == 1


def test_a_series_not_in_the_run_and_series_on_different_images_exit_2(files, capsys):
    tmp, gt, dets = files
    ids = [im["id"] for im in gt["images"]]
    store_run(tmp / "store", gt, {"model_a": dets, "model_b": dets}, images={"model_a": ids, "model_b": ids[:40]})
    base = ["gate", "--gt", str(tmp / "gt.json"), "--run", "20260101-000000-eeeeee", "--store", str(tmp / "store")]
    assert main([*base, "--baseline", "model_a", "--candidate", "model_c"]) == 2
    err = capsys.readouterr().err
    assert "no series 'model_c'" in err and "model_a, model_b" in err and err.count("\n") == 1
    assert main([*base, "--baseline", "model_a", "--candidate", "model_b"]) == 2
    err = capsys.readouterr().err
    assert "on different images (20 only in 'model_a', 0 only in 'model_b')" in err and err.count("\n") == 1


def test_per_size_and_tag_intervals_are_printed_and_in_json(files, capsys):
    tmp, _, _ = files
    (tmp / "tags.csv").write_text("image,tags\n" + "\n".join(f"img{i}.png,first" for i in range(1, 31)) + "\n")
    argv = ["--results", "{tmp}/runs/base.json", "--results", "{tmp}/worse.json", "--baseline", "base",
            "--candidate", "worse", "--per-size", "--tags", "{tmp}/tags.csv"]  # fmt: skip
    assert gate(tmp, *argv) == 1
    out = capsys.readouterr().out
    assert "AP size: small" in out and "AP tag: first" in out
    assert gate(tmp, *argv, "--json") == 1
    doc = json.loads(capsys.readouterr().out)
    assert {"size: small", "size: medium", "size: large", "tag: first"} <= set(doc["per_slice"])
    assert doc["per_class"] and all("AP" in v and "AP50" in v for v in doc["per_class"].values())
