"""The job queue's cost and the dashboard's responsiveness while a job runs.

    .venv/bin/python scripts/bench_jobs.py [--images 40] [--rounds 3] [--gallery-repeat 5]

1. Queue cost: `python -m core submit` + `python -m core worker --idle-exit 0` against `python -m core detect` on the
   same N generated images (SSDLite, untrained, CPU, same threads), as whole subprocesses, alternating rounds; the
   median of each and their ratio (target <= 1.05).
2. Responsiveness: the Gallery page's rerun time (AppTest, a synthetic session of 500 images x 2 models) idle, then
   while a worker started as the dashboard starts it (torch threads = physical cores - 1, niceness +10) runs a
   Faster R-CNN job; the ratio (target <= 1.5).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_pages import threshold_reruns  # noqa: E402
from bench_runtimes import make_images  # noqa: E402

SMALL = "ssdlite320_mobilenet_v3_large"
RUN = ("--weights", "untrained", "--device", "cpu", "--warmup", "1")


def unique_images(folder: Path, count: int, size: int) -> list[Path]:
    """`bench_runtimes.make_images`, each made unique by a one-pixel mark (its crops repeat after 30 images, and a run
    holds one record per image content and model)."""
    from PIL import Image

    paths = make_images(folder, count, size)
    for i, path in enumerate(paths):
        with Image.open(path) as im:
            img = im.convert("RGB")
        img.putpixel((0, 0), (i % 256, i // 256, 7))
        img.save(path, quality=95)
    return paths


def _cli(*args: str, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"python -m core {args[0]} failed: {proc.stderr.strip()[-500:]}")
    return time.perf_counter() - t0


def queue_cost(images: list[Path], rounds: int, tmp: Path) -> None:
    """detect (one process) against submit with a worker already waiting (started once, as the dashboard's lives for
    minutes), timed from launching submit until the job is finished; and the cold case, a worker started per job."""
    from core.store import Store

    env = {**os.environ, "DETLENS_OFFLINE": "1"}
    paths = [str(p) for p in images]
    direct, warm, cold = [], [], []
    for r in range(rounds):
        direct.append(_cli("detect", *paths, "--models", SMALL, *RUN, "-q", "--out", str(tmp / f"out{r}"),
                           "--store", str(tmp / f"detect{r}"), env=env))  # fmt: skip
        store_dir = tmp / f"warm{r}"
        store = Store(store_dir)
        worker = subprocess.Popen([sys.executable, "-m", "core", "worker", "--store", str(store_dir)], cwd=ROOT,
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            while not store.live_workers():
                time.sleep(0.1)
            t0 = time.perf_counter()
            _cli("submit", *paths, "--models", SMALL, *RUN, "--store", str(store_dir), env=env)
            (job,) = store.jobs()
            while store.job(job.run_id).status != "finished":
                time.sleep(0.02)
            warm.append(time.perf_counter() - t0)
        finally:
            worker.terminate()
            worker.wait(60)
        cold_store = str(tmp / f"cold{r}")
        cold.append(_cli("submit", *paths, "--models", SMALL, *RUN, "--store", cold_store, env=env)
                    + _cli("worker", "--store", cold_store, "--idle-exit", "0", env=env))  # fmt: skip
        print(f"  round {r + 1}: detect {direct[-1]:.2f} s, submit to a waiting worker {warm[-1]:.2f} s, "
              f"submit + a worker started for it {cold[-1]:.2f} s", flush=True)  # fmt: skip
    d, w, c = statistics.median(direct), statistics.median(warm), statistics.median(cold)
    print(f"queue cost, {len(images)} images (medians of {rounds}): detect {d:.2f} s; submit to a waiting worker "
          f"{w:.2f} s, ratio {w / d:.3f}; submit + worker started for it {c:.2f} s, ratio {c / d:.3f}")  # fmt: skip


def gallery_times(repeat: int) -> list[float]:
    from bench_pages import synthetic_session
    from streamlit.testing.v1 import AppTest

    inf, det, refs = synthetic_session(500, 20_000)
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=600)
    at.session_state["detlens_inferences"] = inf
    at.session_state["detlens_detections"] = det
    at.session_state["detlens_images"] = refs
    at.session_state["detlens_runs"] = []
    at.run()
    at.switch_page("../pages/gallery.py").run()
    return threshold_reruns(at, repeat)


def responsiveness(images: list[Path], repeat: int, tmp: Path) -> None:
    from core.execution.jobs import submit
    from core.execution.runner import RunSettings
    from core.images import ImageSource
    from core.inference.devices import physical_cores
    from core.store import Store

    idle = statistics.median(gallery_times(repeat))
    store = Store(tmp / "busy")
    settings = RunSettings(["fasterrcnn_resnet50_fpn"], "untrained", device="cpu", warmup=1)
    run_id = submit(store, settings, [ImageSource.from_path(p).hashed() for p in images])
    threads = max(1, physical_cores() - 1)
    worker = subprocess.Popen(
        [sys.executable, "-m", "core", "worker", "--store", str(store.path), "--idle-exit", "0",
         "--threads", str(threads), "--nice", "10"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while store.job(run_id).done < 1:  # the model is loaded and images are running
            time.sleep(0.2)
        busy = statistics.median(gallery_times(repeat))
        still_running = store.job(run_id).status == "running"
    finally:
        worker.terminate()
        worker.wait(60)
    print(f"Gallery rerun: idle {idle:.2f} s, while a Faster R-CNN job runs ({threads} torch thread(s), nice +10) "
          f"{busy:.2f} s, ratio {busy / idle:.2f}{'' if still_running else ' (the job ended before the end)'}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gallery-repeat", type=int, default=5)
    parser.add_argument("--skip-queue", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("DETLENS_WORKER_AUTOSTART", "0")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        os.environ["DETLENS_STORE"] = str(tmp / "dashboard-store")
        images = unique_images(tmp, args.images, 512)
        if not args.skip_queue:
            queue_cost(images, args.rounds, tmp)
        responsiveness(images, args.gallery_repeat, tmp)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
