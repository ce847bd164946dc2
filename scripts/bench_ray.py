"""Benchmark: the local engine against the Ray path on the same images, model and machine, and a projection to 1M.

    python scripts/bench_ray.py [--model ssdlite320_mobilenet_v3_large] [--images 200] [--size 512] [--workers 1]

Both paths run the same model and weights (untrained by default: nothing to download) from image files on disk into
a throwaway run store: the local engine as `detect --store` does (core.execution.runner.run with the store), the Ray path as
`detect --engine ray` does (core.execution.distributed.run_ray), Ray started beforehand (start-up is reported apart). The
projection for 1M images uses the measured per-image costs: one worker's throughput times N workers, plus the fixed
start-up, assuming the images are spread evenly, storage and the driver's ingest keep up, and no node is shared.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the repository's packages
sys.path.insert(0, str(ROOT / "scripts"))
from bench_runtimes import make_images  # noqa: E402

from core.execution.cluster import RayOptions, cluster_environment, connect  # noqa: E402
from core.execution.distributed import run_ray  # noqa: E402
from core.execution.runner import RunSettings, run  # noqa: E402
from core.images import sources_from_paths  # noqa: E402
from core.inference.devices import device_name, physical_cores  # noqa: E402
from core.store import Store  # noqa: E402

PROJECTED_IMAGES = 1_000_000
PROJECTED_WORKERS = (1, 8, 32, 128)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/bench_ray.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ssdlite320_mobilenet_v3_large")
    parser.add_argument("--weights", default="untrained")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)

    settings = RunSettings(models=[args.model], default_weights=args.weights, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = make_images(folder, args.images, args.size)
        store = Store(folder / "store")

        t0 = time.perf_counter()
        connect(None)
        start_s = time.perf_counter() - t0
        cluster = cluster_environment()

        t0 = time.perf_counter()
        local = run(sources_from_paths(paths), settings, store=store)
        local_s = time.perf_counter() - t0

        out = run_ray(paths, settings, RayOptions(workers=args.workers), store=store)
        ray_s = out.wall_s

    n = len(paths)
    local_ips, ray_ips = n / local_s, n / ray_s
    ok = local.inferences[local.inferences["error"] == ""]
    ray_ok = out.inferences[out.inferences["error"] == ""]
    print(f"{args.model} ({args.weights}), {n} images of {args.size}x{args.size}, CPU: {device_name_cpu()}")
    print(f"Ray {cluster['version']}: {cluster['nodes']} node, {cluster['cpus']:g} CPUs; start-up {start_s:.1f} s")
    print(f"{'path':28} {'wall s':>8} {'images/s':>9} {'median total_ms':>16}")
    print(f"{'local engine (+ store)':28} {local_s:8.2f} {local_ips:9.2f} {ok['total_ms'].median():16.1f}")
    print(
        f"{f'Ray, {args.workers} worker(s) (+ store)':28} {ray_s:8.2f} {ray_ips:9.2f} {ray_ok['total_ms'].median():16.1f}"
    )
    ratio = ray_s / local_s
    print(f"Ray wall time / local wall time: {ratio:.2f}x (target <= 1.2x: {'met' if ratio <= 1.2 else 'NOT met'})")

    worker_ips = ray_ips / args.workers
    print(f"\nProjection for {PROJECTED_IMAGES:,} images (measured {worker_ips:.2f} images/s per worker here):")
    print(f"{'workers':>8} {'hours':>8}")
    for workers in PROJECTED_WORKERS:
        hours = (PROJECTED_IMAGES / (worker_ips * workers) + start_s) / 3600
        print(f"{workers:>8} {hours:8.2f}")
    return 0


def device_name_cpu() -> str:
    import torch

    return f"{device_name(torch.device('cpu'))}, {physical_cores()} cores"


if __name__ == "__main__":
    raise SystemExit(main())
