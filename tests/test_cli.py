"""The CLI end to end: `python -m core models` and `python -m core detect` on the bundled gallery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core.cli import main
from core.config import GALLERY_DIR, HEADLINE_MODELS, INFERENCE_COLUMNS, UNTRAINED_MARK
from core.models import model_names

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch-home"), "DETLENS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "core", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_models_lists_every_detector(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in model_names())


def test_models_json_carries_the_metadata(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == model_names()
    frcnn = next(r for r in rows if r["name"] == "fasterrcnn_resnet50_fpn")
    assert frcnn["box_map"] == 37.0 and frcnn["classes"] == 91


def test_detect_on_the_bundled_gallery_with_the_headline_pair(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("detect", "--models", ",".join(HEADLINE_MODELS), "--weights", "untrained", "--warmup", "1",
                   "--out", str(out), "--parquet", tmp_path=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    inf = pd.read_csv(out / "inferences.csv", keep_default_na=False)
    det = pd.read_csv(out / "detections.csv")
    n_images = len([p for p in GALLERY_DIR.iterdir() if p.suffix == ".jpg"])
    assert tuple(inf.columns) == INFERENCE_COLUMNS
    assert len(inf) == n_images * 2 and set(inf["model"]) == set(HEADLINE_MODELS)
    assert (inf["weights"] == "untrained").all() and (inf["error"] == "").all()
    assert (inf["total_ms"] > 0).all() and (inf["device"] == "cpu").all()
    assert set(det["model"]) <= set(HEADLINE_MODELS) and (det["score"] >= 0.01).all()
    assert (out / "inferences.parquet").is_file() and (out / "run.json").is_file()
    run = json.loads((out / "run.json").read_text())
    assert run["environment"]["threads"] >= 1 and run["environment"]["torch"]
    assert UNTRAINED_MARK in proc.stdout


def test_detect_goes_on_past_a_broken_image(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes((GALLERY_DIR / "cat.jpg").read_bytes())
    (folder / "broken.jpg").write_bytes((GALLERY_DIR / "cat.jpg").read_bytes()[:2000])
    (folder / "notes.png").write_text("just text")
    proc = run_cli("detect", str(folder), "--models", HEADLINE_MODELS[1], "--weights", "untrained",
                   "--out", str(tmp_path / "out"), tmp_path=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    inf = pd.read_csv(tmp_path / "out" / "inferences.csv", keep_default_na=False).set_index("image_name")
    assert inf.loc["cat.jpg", "error"] == ""
    assert inf.loc["broken.jpg", "error"] and inf.loc["notes.png", "error"]
    assert "failed: broken.jpg" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", "yolov8"], "unknown model"),
        (["--weights", "missing.pth"], "weights file not found"),
        (["--weights", "default"], "default weights could not be downloaded"),
        (["--threshold", "3"], "--threshold must be between 0 and 1"),
    ],
)
def test_usage_errors_exit_non_zero_with_a_message(tmp_path, args, message):
    proc = run_cli("detect", str(GALLERY_DIR / "cat.jpg"), "--out", str(tmp_path / "o"), *args, tmp_path=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr
    assert not (tmp_path / "o" / "inferences.csv").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_a_gpu_is_a_usage_error(tmp_path):
    proc = run_cli("detect", "--device", "cuda", "--weights", "untrained", "--out", str(tmp_path), tmp_path=tmp_path)
    assert proc.returncode == 2 and "no CUDA GPU" in proc.stderr
