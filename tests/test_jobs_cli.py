"""`python -m core submit | jobs | cancel | resume | worker`: the queue from the command line, and a worker killed
with `kill -9` mid-run whose job is seen interrupted and resumed with every (image, model) pair exactly once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from core.cli import main
from core.config import GALLERY_DIR
from core.store import Store
from core.store.jobs import worker_name

ROOT = Path(__file__).resolve().parent.parent
SMALL = "ssdlite320_mobilenet_v3_large"
UNTRAINED = ("--models", SMALL, "--weights", "untrained", "--device", "cpu", "--warmup", "0")


def cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def jobs_json(capsys, store: Path) -> list[dict]:
    rc, out, _ = cli(capsys, "jobs", "--store", str(store), "--json")
    assert rc == 0
    return json.loads(out)


def test_submit_prints_the_run_id_and_returns_and_jobs_cancel_resume_follow_it(capsys, tmp_path):
    store = tmp_path / "store"
    rc, out, _ = cli(capsys, "submit", str(GALLERY_DIR / "cat.jpg"), str(GALLERY_DIR / "coffee.jpg"), *UNTRAINED,
                     "--store", str(store))  # fmt: skip
    run_id = out.strip()
    assert rc == 0 and len(out.splitlines()) == 1
    (job,) = jobs_json(capsys, store)
    assert (job["run_id"], job["status"], job["done"], job["total"]) == (run_id, "queued", 0, 2)
    assert cli(capsys, "cancel", run_id, "--store", str(store))[0] == 0
    assert jobs_json(capsys, store)[0]["status"] == "cancelled"
    rc, out, _ = cli(capsys, "resume", run_id, "--store", str(store))
    assert rc == 0 and "2 missing" in out and jobs_json(capsys, store)[0]["status"] == "queued"
    assert cli(capsys, "worker", "--store", str(store), "--idle-exit", "0")[0] == 0
    (job,) = jobs_json(capsys, store)
    assert (job["status"], job["done"], job["errors"]) == ("finished", 2, 0)
    rc, _, err = cli(capsys, "cancel", run_id, "--store", str(store))
    assert rc == 2 and "already ended" in err


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (("--models", "no_such_model", "--weights", "untrained"), "no_such_model"),
        (("--models", SMALL, "--weights", "default"), "ssdlite320_mobilenet_v3_large_coco-a79551df.pth"),
        (("--models", SMALL, "--weights", "missing.pth"), "missing.pth"),
        ((*UNTRAINED, "id:" + "0" * 64), "not in the run store"),
    ],
)
def test_submit_refuses_a_job_that_cannot_start_in_one_line_and_stores_nothing(capsys, monkeypatch, tmp_path, args,
                                                                                 phrase):  # fmt: skip
    monkeypatch.setenv("DETLENS_OFFLINE", "1")
    store = tmp_path / "store"
    images = [] if any(a.startswith("id:") for a in args) else [str(GALLERY_DIR / "cat.jpg")]
    rc, out, err = cli(capsys, "submit", *images, *args, "--store", str(store))
    assert rc == 2 and out == "" and phrase in err and len(err.strip().splitlines()) == 1
    assert not (store / "detlens.sqlite").exists() or Store(store).list_runs().empty


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "DETLENS_OFFLINE": "1", "DETLENS_JOB_STALE_S": "2", "DETLENS_THREADS": "1"}


def _interrupted_then_resumed_every_pair_once(capsys, tmp_path: Path, store_dir: Path, run_id: str, total: int,
                                              done: int) -> None:  # fmt: skip
    """`jobs` (a new process) reads the job interrupted with its `done` pairs; `resume` and a worker run the missing
    ones: every (image, model) pair exactly once, the job finished."""
    listed = subprocess.run([sys.executable, "-m", "core", "jobs", "--store", str(store_dir), "--json"], cwd=ROOT,
                            env=_env(tmp_path), capture_output=True, text=True, timeout=300)  # fmt: skip
    (job,) = json.loads(listed.stdout)
    assert job["status"] == "interrupted" and job["done"] == done
    rc, out, _ = cli(capsys, "resume", run_id, "--store", str(store_dir))
    assert rc == 0 and f"{total - done} missing" in out
    assert cli(capsys, "worker", "--store", str(store_dir), "--idle-exit", "0")[0] == 0
    store = Store(store_dir)
    inf = store.load_run(run_id)[0]
    pairs = list(zip(inf["image_id"], inf["model"], strict=True))
    assert len(pairs) == len(set(pairs)) == total and store.job(run_id).status == "finished"


@pytest.mark.slow
def test_a_worker_killed_mid_run_leaves_an_interrupted_job_that_resumes_every_pair_exactly_once(capsys, tmp_path):
    store_dir = tmp_path / "store"
    models = f"{SMALL},fasterrcnn_mobilenet_v3_large_320_fpn"
    rc, out, _ = cli(capsys, "submit", str(GALLERY_DIR), "--models", models, "--weights", "untrained",
                     "--device", "cpu", "--warmup", "0", "--store", str(store_dir))  # fmt: skip
    run_id = out.strip()
    store = Store(store_dir)
    total = store.job(run_id).total
    worker = subprocess.Popen([sys.executable, "-m", "core", "worker", "--store", str(store_dir)], cwd=ROOT,
                              env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while store.job(run_id).done < 2 and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(30)
    finally:
        if worker.poll() is None:
            worker.kill()
    done = store.job(run_id).done
    assert 2 <= done < total and store.job(run_id).status == "running"  # nobody said otherwise yet
    time.sleep(2.5)
    _interrupted_then_resumed_every_pair_once(capsys, tmp_path, store_dir, run_id, total, done)


# --- detect --store: its run is a job its own process holds ---------------------------------------------------------


def test_a_detect_with_a_store_is_a_finished_job_with_the_records_of_its_files_and_the_spec_submit_stores(
    capsys, tmp_path
):
    from tests import factories

    images = [str(GALLERY_DIR / "cat.jpg"), str(GALLERY_DIR / "coffee.jpg")]
    store_dir, out = tmp_path / "store", tmp_path / "out"
    rc, stdout, _ = cli(capsys, "detect", *images, *UNTRAINED, "--store", str(store_dir), "--out", str(out), "-q")
    assert rc == 0
    (job,) = jobs_json(capsys, store_dir)
    assert (job["status"], job["done"], job["total"], job["errors"]) == ("finished", 2, 2, 0)
    assert job["worker"] == worker_name() and f"stored run {job['run_id']} in" in stdout
    inf, det, info = Store(store_dir).load_run(job["run_id"])
    csv_inf, csv_det, csv_info = factories.read_written_run(out)
    pd.testing.assert_frame_equal(inf, csv_inf)
    pd.testing.assert_frame_equal(det, csv_det)
    assert info == csv_info
    submitted = cli(capsys, "submit", *images, *UNTRAINED, "--store", str(store_dir))[1].strip()
    assert Store(store_dir).job(submitted).spec == Store(store_dir).job(job["run_id"]).spec


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "wait_stale"), [(signal.SIGKILL, True), (signal.SIGTERM, False)])
def test_a_detect_killed_mid_run_leaves_an_interrupted_job_that_resumes_every_pair_exactly_once(
    capsys, tmp_path, sig, wait_stale
):
    store_dir = tmp_path / "store"
    models = f"{SMALL},fasterrcnn_mobilenet_v3_large_320_fpn"
    detect = subprocess.Popen([sys.executable, "-m", "core", "detect", str(GALLERY_DIR), "--models", models,
                               "--weights", "untrained", "--device", "cpu", "--warmup", "0", "-q",
                               "--store", str(store_dir), "--out", str(tmp_path / "out")], cwd=ROOT,
                              env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while detect.poll() is None and time.monotonic() < deadline:
            if (store_dir / "detlens.sqlite").is_file() and (jobs := Store(store_dir).jobs()) and jobs[0].done >= 2:
                break
            time.sleep(0.05)
        (job,) = Store(store_dir).jobs()
        assert (job.status, job.worker) == ("running", f"{socket.gethostname()}:{detect.pid}")  # this process holds it
        os.kill(detect.pid, sig)
        detect.wait(60)
    finally:
        if detect.poll() is None:
            detect.kill()
    store = Store(store_dir)
    run_id, total, done = job.run_id, job.total, store.job(job.run_id).done
    assert 2 <= done < total
    if wait_stale:
        assert store.job(run_id).status == "running"  # nobody said otherwise yet
        time.sleep(2.5)
    _interrupted_then_resumed_every_pair_once(capsys, tmp_path, store_dir, run_id, total, done)
