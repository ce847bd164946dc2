"""The CLI end to end: `python -m core models` and `python -m core detect` on the bundled gallery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import core.cli
from core.cli import main
from core.config import GALLERY_DIR, HEADLINE_MODELS, INFERENCE_COLUMNS, UNTRAINED_MARK
from core.inference.models import model_names
from tests import factories

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
    assert [r["model"] for r in rows] == model_names()
    frcnn = next(r for r in rows if r["model"] == "fasterrcnn_resnet50_fpn")
    assert frcnn["box_map"] == 37.0 and frcnn["classes"] == 91


@pytest.mark.slow
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


@pytest.mark.slow
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
@pytest.mark.slow
def test_usage_errors_exit_non_zero_with_a_message(tmp_path, args, message):
    proc = run_cli("detect", str(GALLERY_DIR / "cat.jpg"), "--out", str(tmp_path / "o"), *args, tmp_path=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr
    assert not (tmp_path / "o" / "inferences.csv").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-GPU error")
@pytest.mark.slow
def test_cuda_without_a_gpu_is_a_usage_error(tmp_path):
    proc = run_cli("detect", "--device", "cuda", "--weights", "untrained", "--out", str(tmp_path), tmp_path=tmp_path)
    assert proc.returncode == 2 and "no CUDA GPU" in proc.stderr


# --- the run store: detect --store, runs, export, import -----------------------------------------------------------


def generated_images(folder: Path, n: int, size: tuple[int, int] = (160, 120)) -> Path:
    """`n` distinct small JPEGs (seeded noise over a gradient)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 200, size[0], dtype=np.float32)[None, :, None]
    for i in range(n):
        noise = np.random.default_rng(i).integers(0, 55, (size[1], size[0], 3))
        Image.fromarray((ramp + noise).astype(np.uint8)).save(folder / f"img{i:02d}.jpg", quality=90)
    return folder


def start_cli(*args: str, tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch-home"), "DETLENS_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "core", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def open_store_when_ready(path: Path, proc: subprocess.Popen):
    """The store once the CLI has created it (None if the process ended first)."""
    import time

    from core.store import Store

    while proc.poll() is None:
        if (path / "detlens.sqlite").is_file():
            return Store(path, create=False)
        time.sleep(0.02)
    return Store(path, create=False) if (path / "detlens.sqlite").is_file() else None


def assert_whole_records(inf: pd.DataFrame, det: pd.DataFrame, threshold: float) -> None:
    """Every stored inference has all its boxes (n_detections = its boxes at the threshold), no box is orphaned."""
    keys = ["image_id", "model"]
    assert not inf.duplicated(keys).any()
    counted = det[det["score"] >= threshold].groupby(keys).size()
    for row in inf.itertuples(index=False):
        assert counted.get((row.image_id, row.model), 0) == row.n_detections, row
    stored = set(inf[keys].itertuples(index=False, name=None))
    assert set(det[keys].itertuples(index=False, name=None)) <= stored


@pytest.mark.slow
def test_detect_with_a_store_matches_the_csv_while_readers_read(tmp_path):
    folder = generated_images(tmp_path / "imgs", 20)
    store_dir, out = tmp_path / "store", tmp_path / "out"
    proc = start_cli("detect", str(folder), "--models", HEADLINE_MODELS[1], "--weights", "untrained",
                     "--threshold", "0.02", "--store", str(store_dir), "--out", str(out), tmp_path=tmp_path)  # fmt: skip
    store = open_store_when_ready(store_dir, proc)
    assert store is not None, proc.communicate()[1]
    reads = 0
    while proc.poll() is None:  # the dashboard's side: list and load while the CLI writes; never an error
        runs = store.list_runs()
        if len(runs):
            inf, det, _ = store.load_run(runs.loc[0, "run_id"])
            assert_whole_records(inf, det, 0.02)
            reads += 1
    stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr
    assert reads > 0
    runs = store.list_runs()
    assert len(runs) == 1 and runs.loc[0, "status"] == "finished"
    assert runs.loc[0, ["n_inferences", "n_errors", "n_images"]].tolist() == [20, 0, 20]
    run_id = runs.loc[0, "run_id"]
    assert f"stored run {run_id}" in stdout
    inf, det, info = store.load_run(run_id)
    csv_inf, csv_det, csv_info = factories.read_written_run(out)
    pd.testing.assert_frame_equal(inf, csv_inf)
    pd.testing.assert_frame_equal(det, csv_det)
    assert info == csv_info and info.environment["torch"]
    kept = store.run_images(run_id)
    assert sorted(v.name for v in kept.values()) == sorted(p.name for p in folder.iterdir())
    assert all(v.read() == (folder / v.name).read_bytes() for v in kept.values())


@pytest.mark.slow
def test_a_killed_detect_keeps_every_finished_record_whole(tmp_path):
    import signal
    import time

    from core.store import Store

    folder = generated_images(tmp_path / "imgs", 30)
    store_dir = tmp_path / "store"
    # SSDLite first (fast), then Faster R-CNN (about a second an image here): the kill lands well before the end.
    models = f"{HEADLINE_MODELS[1]},{HEADLINE_MODELS[0]}"
    proc = start_cli("detect", str(folder), "--models", models, "--weights", "untrained", "--threshold", "0.02",
                     "--store", str(store_dir), "--out", str(tmp_path / "out"), "-q", tmp_path=tmp_path)  # fmt: skip
    store = open_store_when_ready(store_dir, proc)
    assert store is not None, proc.communicate()[1]
    try:
        while proc.poll() is None:
            runs = store.list_runs()
            if len(runs) and runs.loc[0, "n_inferences"] >= 3:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    store.close()
    with Store(store_dir, create=False) as after:  # opens fine after the crash
        conn_ok = sqlite3_integrity(after.db_path)
        assert conn_ok == "ok"
        runs = after.list_runs()
        assert len(runs) == 1 and runs.loc[0, "status"] == "running"  # not marked finished
        inf, det, info = after.load_run(runs.loc[0, "run_id"])
        assert 3 <= len(inf) < 60 and (inf["error"] == "").all()
        assert_whole_records(inf, det, 0.02)
        kept = after.run_images(info.run_id)
        assert set(inf["image_id"]) <= set(kept)  # the image of every stored record is kept too
    assert not (tmp_path / "out" / "inferences.csv").exists()


def sqlite3_integrity(db: Path) -> str:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


@pytest.mark.slow
def test_detect_usage_error_leaves_no_run_in_the_store(tmp_path):
    from core.store import Store

    proc = run_cli("detect", str(GALLERY_DIR / "cat.jpg"), "--weights", "missing.pth", "--store", str(tmp_path / "s"),
                   "--out", str(tmp_path / "o"), tmp_path=tmp_path)  # fmt: skip
    assert proc.returncode == 2 and "weights file not found" in proc.stderr
    assert Store(tmp_path / "s").list_runs().empty


def test_runs_export_and_import_commands(tmp_path, capsys, monkeypatch):
    from core.store import Store
    from tests.test_store import RUN, exported

    source = tmp_path / "source"
    exported(Store(source), tmp_path)
    assert main(["runs", "--store", str(source)]) == 0
    listing = capsys.readouterr().out
    assert RUN in listing and "finished" in listing and "model_a,model_b" in listing and "(untrained)" in listing
    assert main(["runs", "--store", str(source), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["run_id"], r["n_inferences"], r["n_errors"]) for r in rows] == [(RUN, 7, 1)]

    zip_path = tmp_path / "shared" / "run.zip"
    assert main(["export", RUN, str(zip_path), "--store", str(source)]) == 0
    monkeypatch.setenv("DETLENS_STORE", str(tmp_path / "team"))  # import/runs without --store use $DETLENS_STORE
    assert main(["runs"]) == 0 and "no runs" in capsys.readouterr().out
    assert main(["import", str(zip_path)]) == 0 and RUN in capsys.readouterr().out
    assert main(["import", str(zip_path)]) == 2 and "already exists" in capsys.readouterr().err
    assert main(["import", str(zip_path), "--replace"]) == 0
    pd.testing.assert_frame_equal(Store(tmp_path / "team").load_run(RUN)[0], Store(source).load_run(RUN)[0])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export", "no-such-run", "{tmp}/x.zip", "--store", "{tmp}/source"], "unknown run 'no-such-run'"),
        (["export", "no-such-run", "{tmp}/x.zip", "--store", "{tmp}/missing"], "no run store"),
        (["import", "{tmp}/evil.zip", "--store", "{tmp}/target"], "refused entry '../evil'"),
        (["import", "{tmp}/notes.txt", "--store", "{tmp}/target"], "not a DetLens run zip"),
    ],
)
def test_store_commands_exit_2_with_a_message(tmp_path, capsys, argv, message):
    import zipfile

    from core.store import Store

    Store(tmp_path / "source").close()
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
        zf.writestr("../evil", b"x")
    (tmp_path / "notes.txt").write_text("not a zip")
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists() and not (tmp_path.parent / "evil").exists()


def test_the_command_exits_with_mains_status_after_freezing_the_heap(monkeypatch, capsys):
    """`detlens` and `python -m core` end through core.cli.run: main's exit status, the output flushed, and
    gc.freeze() first (the interpreter's last collection over torch's objects cost 0.7 s of every command)."""
    calls = []
    monkeypatch.setattr(core.cli, "main", lambda: print("done") or 3)
    monkeypatch.setattr(core.cli.gc, "freeze", lambda: calls.append(capsys.readouterr().out))
    with pytest.raises(SystemExit) as exit_:
        core.cli.run()
    assert exit_.value.code == 3
    assert calls == ["done\n"]  # frozen once, after main wrote its output


@pytest.mark.slow
def test_the_detlens_command_is_python_m_core():
    """pyproject.toml's console script (installed by `scripts/dev.sh setup`) runs the same CLI as `python -m core`."""
    import importlib
    import shutil
    import subprocess
    import sys
    import tomllib

    root = Path(__file__).resolve().parent.parent
    target = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]["detlens"]
    module, _, name = target.partition(":")
    assert getattr(importlib.import_module(module), name) is core.cli.run
    command = shutil.which("detlens", path=str(Path(sys.executable).parent))
    if command is None:
        pytest.skip("the detlens command is not installed in this environment (run scripts/dev.sh setup)")
    got = subprocess.run([command, "models", "--json"], capture_output=True, text=True, check=True, cwd=root)
    want = subprocess.run([sys.executable, "-m", "core", "models", "--json"], capture_output=True, text=True,
                          check=True, cwd=root)  # fmt: skip
    assert json.loads(got.stdout) == json.loads(want.stdout) != []
