"""Is DetLens's recorded latency what a user's own loop gets? A bare torchvision loop in a clean process against
`python -m core detect` and against a job run by the worker with an idle dashboard server beside it.

    .venv/bin/python scripts/bench_latency.py [--models fasterrcnn_resnet50_fpn,ssdlite320_mobilenet_v3_large]
        [--images 40] [--size 512] [--rounds 2] [--warmup 1]

Every side runs the same seeded untrained model (torchvision's builder, `weights=None, weights_backbone=None`,
`torch.manual_seed(0)`: DetLens's `--weights untrained`) on the same JPEGs, fp32, eager, with the same warm-up calls.

- bare: a child process that imports torch, torchvision and Pillow only (never `core`), sets torch's threads, decodes
  each image, and times `model([x])` alone; the whole process is timed from outside too.
- detect: `python -m core detect DIR --weights untrained -q --out ...` with the same threads (DETLENS_THREADS); its
  recorded `inference_ms` median, and its whole process time.
- bare, quick exit: the bare loop again, ending as `detlens` does (`gc.freeze()` before exit, core.cli.run: the
  interpreter's last full collection over torch's millions of objects is skipped). `detect` against it is DetLens's
  own start-up (its imports: pandas, pyarrow, core) and writing (the CSV tables, run.json) alone.
- worker: a Streamlit server on the store, idle, and the job queue as the dashboard uses it: `submit`, then the worker
  the dashboard would start (`core.execution.jobs.ensure_worker`: physical cores - 1 threads, nice +10), compared with a bare
  loop at the worker's thread count.

Rounds alternate bare, detect and worker; each round's ratio is taken (DetLens over the bare loop just before it)
and the median of those is printed with their range, so that machine drift spreads over both sides. Targets (issue #20): recorded /
bare model call 0.90-1.10 for detect and for the worker; the detect process at most 1.15x the bare process.
Prints the OpenMP wait policy and threads each side ran with (DetLens records them in each run's environment).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_runtimes import make_images  # noqa: E402

from core.config import HEADLINE_MODELS, UNTRAINED_SEED  # noqa: E402

# The bare loop: what a user writes after the tutorial, in a process that never imports DetLens.
BARE = r"""
import json, os, sys, time
from pathlib import Path
import torch, torchvision
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

model_name, folder, threads, warmup, seed = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
torch.manual_seed(seed)
builder = torchvision.models.get_model_builder(model_name)
model = builder(weights=None, weights_backbone=None, num_classes=91).eval()
paths = sorted(folder.glob("*.jpg"))
tensors = lambda p: pil_to_tensor(Image.open(p).convert("RGB")).float() / 255.0
with torch.inference_mode():
    first = tensors(paths[0])
    for _ in range(warmup):
        model([first])
    calls = []
    for p in paths:
        x = tensors(p)
        t0 = time.perf_counter()
        model([x])
        calls.append((time.perf_counter() - t0) * 1e3)
print(json.dumps({"calls": calls, "threads": torch.get_num_threads(),
                  "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}))
if len(sys.argv) > 6:  # exit as `detlens` does (core.cli.run): without the interpreter's last full collection
    import gc
    sys.stdout.flush()
    gc.freeze()
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "DETLENS_THREADS")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def bare(model: str, folder: Path, threads: int, warmup: int, *, quick_exit: bool = False) -> tuple[float, float, dict]:
    """(process seconds, median model-call ms, what it ran with); `quick_exit`: the loop exits as `detlens` does."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", BARE, model, str(folder), str(threads), str(warmup), str(UNTRAINED_SEED)]
        + (["quick-exit"] if quick_exit else []),
        capture_output=True, text=True, check=True, env=_env(), cwd=ROOT,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return seconds, statistics.median(data["calls"]), data


def detect(model: str, folder: Path, out: Path, threads: int, warmup: int) -> tuple[float, float, dict]:
    """(process seconds, median recorded inference_ms, the run's environment)."""
    import pandas as pd

    cmd = [sys.executable, "-m", "core", "detect", str(folder), "--models", model, "--weights", "untrained",
           "--device", "cpu", "--warmup", str(warmup), "--out", str(out), "-q"]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, capture_output=True, text=True, check=True, env=_env(DETLENS_THREADS=str(threads)), cwd=ROOT)
    seconds = time.perf_counter() - t0
    inf = pd.read_csv(out / "inferences.csv")
    run = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {}
    return seconds, float(inf["inference_ms"].median()), run.get("environment", {})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class IdleDashboard:
    """`streamlit run dashboard/app.py` on a store, answering /healthz, doing nothing else."""

    def __init__(self, store: Path) -> None:
        self.port = _free_port()
        env = _env(DETLENS_STORE=str(store), DETLENS_WORKER_AUTOSTART="0")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
             "--server.port", str(self.port), "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the dashboard did not start")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def worker_job(model: str, folder: Path, store: Path, warmup: int) -> tuple[float, int, dict]:
    """Submit a job and let the worker the dashboard would start run it; (median recorded inference_ms, threads,
    the run's environment)."""
    from core.execution.jobs import ensure_worker
    from core.store import Store

    env = _env(DETLENS_STORE=str(store))
    out = subprocess.run(
        [sys.executable, "-m", "core", "submit", str(folder), "--models", model, "--weights", "untrained",
         "--device", "cpu", "--warmup", str(warmup), "--store", str(store)],
        capture_output=True, text=True, check=True, env=env, cwd=ROOT,
    )  # fmt: skip
    run_id = out.stdout.strip().splitlines()[-1]
    os.environ.pop("OMP_WAIT_POLICY", None)
    os.environ["DETLENS_WORKER_IDLE_EXIT_S"] = "0"
    os.environ["DETLENS_WORKER_AUTOSTART"] = "1"
    with Store(store) as s:
        ensure_worker(s)
        deadline = time.monotonic() + 1800
        while s.job(run_id).status in ("queued", "running"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {run_id} did not finish")
            time.sleep(0.5)
        if s.job(run_id).status != "finished":
            raise RuntimeError(f"job {run_id}: {s.job(run_id).status} {s.job(run_id).message}")
        inf, _, info = s.load_run(run_id)
    env_used = dict(info.environment or {})
    return float(inf["inference_ms"].astype(float).median()), int(env_used.get("threads", 0)), env_used


def _ratio(values: list[float]) -> str:
    """The median of the rounds' ratios, with their range."""
    return f"{statistics.median(values):.3f} (rounds {min(values):.3f}-{max(values):.3f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(HEADLINE_MODELS))
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="bare loop and detect (default: physical cores)")
    parser.add_argument("--no-worker", action="store_true", help="skip the job through the worker")
    args = parser.parse_args(argv)

    from core.inference.devices import device_name, physical_cores

    threads = args.threads or physical_cores()
    worker_threads = max(1, physical_cores() - 1)  # what ensure_worker gives the worker the dashboard starts
    print(f"machine: {device_name(__import__('torch').device('cpu'))}, {os.cpu_count()} CPUs, "
          f"OMP_WAIT_POLICY in this shell: {os.environ.get('OMP_WAIT_POLICY', 'unset')}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        folder = tmp_path / "images"
        folder.mkdir()
        make_images(folder, args.images, args.size)
        dashboard = None if args.no_worker else IdleDashboard(tmp_path / "store")
        try:
            for model in [m.strip() for m in args.models.split(",") if m.strip()]:
                rows: dict[str, list[float]] = {k: [] for k in
                                                ("bare_s", "bare_ms", "det_s", "det_ms", "quick_s", "bare1_ms", "job_ms")}  # fmt: skip
                det_env, job_env, bare_info = {}, {}, {}
                for r in range(args.rounds):
                    s, ms, bare_info = bare(model, folder, threads, args.warmup)
                    rows["bare_s"].append(s)
                    rows["bare_ms"].append(ms)
                    s, ms, det_env = detect(model, folder, tmp_path / f"out-{model}-{r}", threads, args.warmup)
                    rows["det_s"].append(s)
                    rows["det_ms"].append(ms)
                    rows["quick_s"].append(bare(model, folder, threads, args.warmup, quick_exit=True)[0])
                    if dashboard is not None:
                        rows["bare1_ms"].append(bare(model, folder, worker_threads, args.warmup)[1])
                        ms, _, job_env = worker_job(model, folder, tmp_path / "store", args.warmup)
                        rows["job_ms"].append(ms)
                med = {k: statistics.median(v) for k, v in rows.items() if v}
                # each round's ratio, bare and DetLens side by side in time: robust to the machine's drift (on a shared
                # VM the steal time moves every figure by tens of percent from minute to minute)
                paired = {
                    "det": [d / b for d, b in zip(rows["det_ms"], rows["bare_ms"], strict=True)],
                    "proc": [d / b for d, b in zip(rows["det_s"], rows["bare_s"], strict=True)],
                    "own": [d / b for d, b in zip(rows["det_s"], rows["quick_s"], strict=True)],
                    "job": [j / b for j, b in zip(rows["job_ms"], rows["bare1_ms"], strict=True)],
                }
                print(f"\n{model}: {args.images} images {args.size}x{args.size}, fp32, untrained (seed "
                      f"{UNTRAINED_SEED}), warm-up {args.warmup}, {args.rounds} rounds (medians)")  # fmt: skip
                print(f"  bare loop, {threads} threads        : model call {med['bare_ms']:8.1f} ms   process "
                      f"{med['bare_s']:6.2f} s   (OMP_WAIT_POLICY {bare_info.get('omp_wait_policy') or 'unset'})")  # fmt: skip
                print(f"  detect, {threads} threads           : recorded   {med['det_ms']:8.1f} ms   process "
                      f"{med['det_s']:6.2f} s   (recorded: threads {det_env.get('threads')}, OMP_WAIT_POLICY "
                      f"{det_env.get('omp_wait_policy') or 'unset'})")  # fmt: skip
                print(f"    recorded / bare model call: {_ratio(paired['det'])} (target 0.90-1.10); "
                      f"detect process / bare process: {_ratio(paired['proc'])} (target <= 1.15)")  # fmt: skip
                print(f"  bare loop, quick exit      : process {med['quick_s']:6.2f} s; detect process / it: "
                      f"{_ratio(paired['own'])} (DetLens's own start-up and writing)")  # fmt: skip
                if "job_ms" in med:
                    print(f"  bare loop, {worker_threads} thread(s)       : model call {med['bare1_ms']:8.1f} ms")
                    print(f"  worker job, dashboard idle : recorded   {med['job_ms']:8.1f} ms   (recorded: threads "
                          f"{job_env.get('threads')}, nice {job_env.get('nice', '?')}, OMP_WAIT_POLICY "
                          f"{job_env.get('omp_wait_policy') or 'unset'})")  # fmt: skip
                    print(f"    recorded / bare model call: {_ratio(paired['job'])} (target 0.90-1.10)")
        finally:
            if dashboard is not None:
                dashboard.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
