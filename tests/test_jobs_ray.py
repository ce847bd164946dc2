"""`submit --engine ray` without starting Ray: what is refused at submit time (one line, nothing stored), what the job's
spec keeps (engine, Ray options, the images' paths), how `jobs` shows it, and the `--workers` guard of a local Ray.
Running such a job on Ray is in tests/test_distributed.py (slow)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.cli import EXIT_USAGE, main
from core.config import GALLERY_DIR, STORE_DB_NAME
from core.execution.cluster import ClusterError, RayOptions, check_options
from core.store import Store
from tests.factories import load_script

SMALL = "ssdlite320_mobilenet_v3_large"
UNTRAINED = ("--models", SMALL, "--weights", "untrained", "--device", "cpu", "--warmup", "0")
CPUS = os.cpu_count() or 1
ROOT = Path(__file__).resolve().parent.parent


def cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize(
    ("opts", "cpus", "phrase"),
    [
        (RayOptions(workers=1), 2.0, None),
        (RayOptions(workers=3), 4.0, None),
        (RayOptions(workers=2), 2.0, "use --workers 1 or less here"),
        (RayOptions(workers=8), 2.0, "would hold all 2 CPUs"),
        (RayOptions(workers=1), 1.0, "single-CPU machine"),
        (RayOptions(workers=1, cpus_per_worker=2.0), 2.0, "would hold all 2 CPUs"),
        (RayOptions(address="10.0.0.5:6379", workers=64), 2.0, None),  # a cluster's CPUs are its own business
        (RayOptions(address="local", workers=2), 2.0, "would hold all 2 CPUs"),
        (RayOptions(workers=0), 8.0, "--workers must be >= 1"),
        (RayOptions(gpus_per_worker=-1.0), 8.0, "--gpus-per-worker >= 0"),
        (RayOptions(address="10.0.0.5"), 8.0, "expected HOST:PORT"),
    ],
)
def test_check_options_refuses_what_cannot_work_and_actors_that_starve_the_decode_tasks(opts, cpus, phrase) -> None:
    if phrase is None:
        check_options(opts, cpus=cpus)
        return
    with pytest.raises(ClusterError, match=phrase) as info:
        check_options(opts, cpus=cpus)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (("--runtime", "onnxruntime"), "the Ray path runs the eager runtime only"),
        (("--workers", str(CPUS)), f"--workers {CPUS} would hold all {CPUS} CPUs"),
        (("--workers", "0"), "--workers must be >= 1"),
        (("--gpus-per-worker", "-0.5"), "--gpus-per-worker >= 0"),
        (("--ray-address", "headnode"), "expected HOST:PORT"),
        (("--models", "no_such_model"), "no_such_model"),
        (("--weights", "missing.pth"), "weights file not found: missing.pth"),
    ],
)
@pytest.mark.parametrize("command", ["submit", "detect"])
def test_engine_ray_refuses_in_one_line_and_stores_nothing(capsys, tmp_path: Path, command, args, phrase) -> None:
    """`submit --engine ray` and `detect --engine ray` refuse the same things before any cluster work."""
    store = tmp_path / "store"
    rc, out, err = cli(capsys, command, str(GALLERY_DIR / "cat.jpg"), *UNTRAINED, *args, "--engine", "ray",
                       "--store", str(store))  # fmt: skip
    assert (rc, out) == (EXIT_USAGE, "")
    assert phrase in err and len(err.strip().splitlines()) == 1
    assert not (store / STORE_DB_NAME).exists() or Store(store).list_runs().empty


def test_submit_engine_ray_queues_a_job_with_its_engine_options_and_image_paths(capsys, tmp_path: Path) -> None:
    """A text file of paths (as `detect --engine ray` reads it) is queued with absolute paths for the nodes; the
    job's run says engine ray before any worker has it; `jobs` shows where it runs."""
    listing = tmp_path / "images.txt"
    listing.write_text(f"# shared storage\n{GALLERY_DIR / 'cat.jpg'}\n{GALLERY_DIR / 'coffee.jpg'}\n", encoding="utf-8")
    store_dir = tmp_path / "store"
    rc, out, _ = cli(capsys, "submit", str(listing), *UNTRAINED, "--engine", "ray", "--ray-address", "127.0.0.1:6379",
                     "--workers", "3", "--gpus-per-worker", "0.5", "--store", str(store_dir))  # fmt: skip
    assert rc == 0
    run_id = out.strip()
    store = Store(store_dir)
    job = store.job(run_id)
    assert job.spec["engine"] == "ray" and job.engine == "ray@127.0.0.1:6379"
    assert (job.spec["ray"]["address"], job.spec["ray"]["workers"], job.spec["ray"]["gpus_per_worker"]) == (
        "127.0.0.1:6379", 3, 0.5
    )  # fmt: skip
    assert [e["path"] for e in job.spec["images"]] == [str(GALLERY_DIR / "cat.jpg"), str(GALLERY_DIR / "coffee.jpg")]
    assert (job.status, job.total) == ("queued", 2)
    assert store.load_run(run_id)[2].settings["engine"] == "ray"

    rc, out, _ = cli(capsys, "jobs", "--store", str(store_dir), "--json")
    (listed,) = json.loads(out)
    assert (listed["engine"], listed["ray"]["workers"]) == ("ray@127.0.0.1:6379", 3)
    rc, out, _ = cli(capsys, "jobs", "--store", str(store_dir))
    assert "engine" in out.splitlines()[1] and "ray@127.0.0.1:6379" in out


def test_a_local_job_says_local(capsys, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    rc, out, _ = cli(capsys, "submit", str(GALLERY_DIR / "cat.jpg"), *UNTRAINED, "--store", str(store_dir))
    job = Store(store_dir).job(out.strip())
    assert rc == 0 and job.engine == "local" and job.spec["engine"] == "local" and "ray" not in job.spec


@pytest.mark.slow
def test_sigterm_to_a_worker_on_a_ray_job_leaves_it_interrupted_after_the_batch_in_flight(capsys, tmp_path: Path):
    """`ray.init` replaces the process's SIGTERM handler with one that exits: the worker keeps its own, so the job
    ends `interrupted` (resumable), the worker exits 0 and shuts its Ray down, rather than the job ending `failed`.
    (Stopping after the batch in flight, deterministically: tests/test_distributed.py.)"""
    pytest.importorskip("ray")
    make_images = load_script("bench_runtimes").make_images

    folder = tmp_path / "images"
    folder.mkdir()
    make_images(folder, 40, 320)  # 3 batches: the stop comes between them
    store_dir = tmp_path / "store"
    rc, out, _ = cli(capsys, "submit", str(folder), *UNTRAINED, "--engine", "ray", "--store", str(store_dir))
    run_id = out.strip()
    store = Store(store_dir)
    env = {**os.environ, "DETLENS_OFFLINE": "1", "DETLENS_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    worker = subprocess.Popen([sys.executable, "-m", "core", "worker", "--store", str(store_dir), "--idle-exit", "0"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while store.job(run_id).done == 0 and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(120)
    finally:
        if worker.poll() is None:
            worker.kill()
    job = store.job(run_id)
    assert (rc, code) == (0, 0)  # Ray's handler would have exited with 15, or aborted the worker (-6)
    # `finished` when the last batches were stored before the stop was seen (a busy machine); never `failed`
    assert job.status in ("interrupted", "finished")
    if job.status == "interrupted":
        assert 0 < job.done < job.total and job.message == "the worker was stopped: resume it"
