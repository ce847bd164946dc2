"""Evaluation speed and agreement: COCOeval backends, and `match_outcomes` at a threshold change.

    .venv/bin/python scripts/bench_eval.py [--images 1000] [--seed 0] [--repeat 3]

A seeded synthetic case: N images with 0-8 ground-truth boxes of 10 COCO classes (some crowd), detections that are
jittered copies (sometimes of another class), duplicates and pure false positives. Prints the time of each COCOeval
backend (pycocotools, faster-coco-eval, DetLens' vectorised one) and whether every summary figure, every per-class AP
and the precision and score arrays equal pycocotools' (the vectorised one: bit for bit; faster-coco-eval: to 1e-12);
then the time of `match_outcomes` for two models at one threshold.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core.config import DETECTION_COLUMNS  # noqa: E402
from core.evaluate import coco, load_ground_truth, match_outcomes  # noqa: E402
from core.records import coerce_detections  # noqa: E402

CATS = (1, 2, 3, 17, 18, 44, 47, 62, 64, 72)
TOLERANCE = 1e-12  # pycocotools divides by tp + fp + eps; faster-coco-eval's C++ may differ in the last bit


def synthetic(n_images: int, seed: int, models: tuple[str, ...] = ("a",)) -> tuple[dict, pd.DataFrame]:
    """(COCO instances dict, detections in the records schema; image_id = f'{index:016x}', file img{index}.jpg)."""
    rng = np.random.default_rng(seed)
    from core.evaluate import default_categories

    names = default_categories()
    images, anns, rows = [], [], []
    for i in range(n_images):
        w, h = int(rng.integers(200, 800)), int(rng.integers(200, 800))
        images.append({"id": i + 1, "file_name": f"img{i}.jpg", "width": w, "height": h})
        gts = []
        for _ in range(int(rng.integers(0, 9))):
            bw, bh = rng.uniform(4, w / 2), rng.uniform(4, h / 2)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            cat = int(rng.choice(CATS))
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat, "bbox": [x, y, bw, bh],
                         "area": bw * bh, "iscrowd": int(rng.random() < 0.05)})  # fmt: skip
            gts.append((cat, x, y, bw, bh))
        for model in models:
            boxes = []
            for cat, x, y, bw, bh in gts:
                for _ in range(int(rng.integers(0, 4))):
                    jx, jy, jw, jh = rng.normal(0, 0.12, 4) * [bw, bh, bw, bh]
                    c = cat if rng.random() < 0.85 else int(rng.choice(CATS))
                    boxes.append((c, x + jx, y + jy, max(bw + jw, 1.0), max(bh + jh, 1.0)))
            for _ in range(int(rng.integers(0, 6))):
                bw, bh = rng.uniform(4, w / 3), rng.uniform(4, h / 3)
                boxes.append((int(rng.choice(CATS)), rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh))
            for c, x, y, bw, bh in boxes:
                score = float(np.round(rng.random(), 2))  # ties on purpose
                rows.append({"run_id": "r", "image_id": f"{i:016x}", "model": model, "label_id": c, "label": names[c],
                             "score": score, "x1": x, "y1": y, "x2": x + bw, "y2": y + bh})  # fmt: skip
    doc = {"images": images, "annotations": anns,
           "categories": [{"id": c, "name": names[c], "supercategory": ""} for c in CATS]}  # fmt: skip
    return doc, coerce_detections(pd.DataFrame(rows, columns=list(DETECTION_COLUMNS)))


def differences(a: coco.Metrics, b: coco.Metrics) -> dict[str, float]:
    """Figure -> largest absolute difference, for the figures that are not exactly equal (NaN equals NaN)."""
    pairs = {k: (getattr(a, k), getattr(b, k)) for k in (*coco.METRIC_KEYS, "precision", "scores")}
    pairs |= {f"AP[{c}]": (a.per_class[c], b.per_class.get(c, np.inf)) for c in a.per_class}
    out = {}
    for name, (x, y) in pairs.items():
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.shape != y.shape or not np.array_equal(np.isnan(x), np.isnan(y)):
            out[name] = np.inf
        elif not np.array_equal(x, y, equal_nan=True):
            out[name] = float(np.nanmax(np.abs(x - y)))
    if a.class_ids != b.class_ids:
        out["classes"] = np.inf
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    doc, det = synthetic(args.images, args.seed, ("a", "b"))
    gt = load_ground_truth(
        json.dumps(doc).encode(), image_names={f"{i:016x}": f"img{i}.jpg" for i in range(args.images)}
    )
    one = det[det["model"] == "a"]
    print(f"{args.images} images, {len(doc['annotations'])} GT boxes, {len(one)} detections of model a")
    results = coco.detections_to_results(one, gt.image_id_map)
    img_ids = sorted(gt.image_id_map.values())
    metrics = {}
    for backend in (coco.PYCOCOTOOLS, coco.FASTER, coco.VECTOR):
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            ev = coco._run_cocoeval(gt.coco, results, img_ids, (1, 10, 100), backend)
            times.append(time.perf_counter() - t)
        metrics[backend] = coco.metrics_from(ev, gt.coco, (1, 10, 100), 0.0, len(results), backend)
        print(
            f"{coco.evaluator_version(backend):28} best {min(times):.3f} s of {args.repeat}  AP {metrics[backend].AP:.6f}"
        )
    worst = 0.0
    for backend, allowed in ((coco.FASTER, TOLERANCE), (coco.VECTOR, 0.0)):
        diff = differences(metrics[coco.PYCOCOTOOLS], metrics[backend])
        print(
            f"{backend}: "
            + ("every figure identical to pycocotools'" if not diff
               else "not bit-identical: " + ", ".join(f"{k} {v:.1e}" for k, v in diff.items()))
        )  # fmt: skip
        worst = max(worst, max(diff.values(), default=0.0) - allowed)
    for threshold in (0.3, 0.5):
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            for model in ("a", "b"):
                match_outcomes(gt, det, threshold, model=model)
            times.append(time.perf_counter() - t)
        print(f"match_outcomes, 2 models, threshold {threshold}: best {min(times):.3f} s of {args.repeat}")
    return 0 if worst <= 0 else 1


if __name__ == "__main__":
    sys.exit(main())
