"""The paired bootstrap's speed: `core.evaluate.significance.compare` of two series on N images.

    .venv/bin/python scripts/bench_significance.py [--images 10000] [--resamples 1000] [--sizes] [--seed 0]

A seeded synthetic case, COCO-like: about 7 ground-truth boxes per image over 80 classes (sizes from 4 to 300 px),
series A finds 80 % of them and B 75 % (jittered copies, scores around 0.7), each with 5 background boxes per image
and a latency per image. Prints the wall and CPU seconds of the whole test (COCOeval matching of both series, the
resamples' AP and AP50, median latency, per class; `--sizes`: per COCO size too), the figures and the verdict, with
the machine (cores, load average) it ran on. The target: 10,000 images x 2 series x 1,000 resamples in 30 s or less on
a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from core.evaluate.series import Series, SeriesSet  # noqa: E402
from core.evaluate.significance import compare  # noqa: E402

N_CLASSES = 80


def synthetic(n_images: int, seed: int) -> SeriesSet:
    """Ground truth and two series (a: 80 % found, b: 75 %) on `n_images` 640x480 images."""
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "file_name": f"img{i}.jpg", "width": 640, "height": 480} for i in range(n_images)]
    gi = np.repeat(np.arange(1, n_images + 1), rng.poisson(7, n_images))
    n = len(gi)
    x, y = rng.uniform(0, 500, n), rng.uniform(0, 350, n)
    w = np.minimum(np.exp(rng.uniform(np.log(4), np.log(300), n)), 640 - x)
    h = np.minimum(np.exp(rng.uniform(np.log(4), np.log(300), n)), 480 - y)
    c = rng.integers(1, N_CLASSES + 1, n)
    anns = [{"id": j + 1, "image_id": int(gi[j]), "category_id": int(c[j]), "bbox": [float(x[j]), float(y[j]),
             float(w[j]), float(h[j])], "area": float(w[j] * h[j]), "iscrowd": 0} for j in range(n)]  # fmt: skip
    coco = {"images": images, "annotations": anns,
            "categories": [{"id": k, "name": f"class{k}", "supercategory": ""} for k in range(1, N_CLASSES + 1)]}  # fmt: skip

    def series(name: str, found: float) -> Series:
        keep = rng.random(n) < found
        j = rng.normal(0, 0.08, (n, 4))
        boxes = np.stack([x + j[:, 0] * w, y + j[:, 1] * h, x + w * (1 + j[:, 2]), y + h * (1 + j[:, 3])], 1)[keep]
        n_bg = 5 * n_images
        bg_xy = np.stack([rng.uniform(0, 600, n_bg), rng.uniform(0, 440, n_bg)], 1)
        bg = np.concatenate([bg_xy, bg_xy + rng.uniform(5, 80, (n_bg, 2))], 1)
        return Series(
            name,
            np.r_[gi[keep], rng.integers(1, n_images + 1, n_bg)],
            np.r_[c[keep], rng.integers(1, N_CLASSES + 1, n_bg)],
            np.r_[np.clip(rng.normal(0.7, 0.2, keep.sum()), 0.01, 1), rng.uniform(0.01, 0.6, n_bg)],
            np.r_[boxes, bg],
            np.arange(1, n_images + 1),
            {i: float(v) for i, v in zip(range(1, n_images + 1), rng.gamma(9, 5, n_images), strict=True)},
        )

    return SeriesSet(
        coco, {"a": series("a", 0.8), "b": series("b", 0.75)}, {im["id"]: im["file_name"] for im in images}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", action="store_true", help="per COCO size too (four area ranges)")
    args = parser.parse_args()
    ss = synthetic(args.images, args.seed)
    n_det = sum(len(s.img) for s in ss.series.values())
    load = os.getloadavg()
    wall, cpu = time.perf_counter(), time.process_time()
    c = compare(ss, "a", "b", resamples=args.resamples, seed=args.seed, sizes=args.sizes)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average before {load[0]:.2f} and after {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"{args.images} images x 2 series ({len(ss.coco['annotations'])} boxes, {n_det} detections), "
          f"{args.resamples} resamples{', per size' if args.sizes else ''}: {wall:.1f} s wall, {cpu:.1f} s CPU")  # fmt: skip
    for name, iv in c.metrics.items():
        print(f"  {name:10} A {iv.a:.4f}  B {iv.b:.4f}  B - A {iv.diff:+.4f} [{iv.low:+.4f}, {iv.high:+.4f}]")
    print(f"verdict: {c.verdict}")


if __name__ == "__main__":
    main()
