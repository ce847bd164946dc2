"""Seeded COCO fixtures for the error analysis, the paired test and the gate: ground truth with every TIDE error type
(boxes of four COCO classes, crowd regions, images without boxes or predictions, tied scores) and results lists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# Four COCO classes with torchvision's label ids (= COCO category ids), so a run's label ids are the GT's.
CLASSES: dict[int, str] = {1: "person", 3: "car", 17: "cat", 18: "dog"}
WIDTH, HEIGHT = 640, 480


def coco_fixture(seed: int, n_images: int = 30) -> tuple[dict, list[dict]]:
    """(COCO instances dict, COCO results list). Each box gets 0-3 predictions: near-perfect, loose (Loc), far (Bkg
    or Both), sometimes of another class (Cls) or twice (Dupe); each image a few background predictions; scores
    rounded to 0.01 so that some tie. Every annotation carries a polygon of its box (tidecv reads `segmentation`)."""
    rng = np.random.default_rng(seed)
    ids = list(CLASSES)
    images, anns, dets = [], [], []
    for i in range(1, n_images + 1):
        images.append({"id": i, "file_name": f"img{i}.png", "width": WIDTH, "height": HEIGHT})
        for _ in range(int(rng.integers(0, 6))):
            x, y = rng.uniform(0, 500), rng.uniform(0, 350)
            w, h = rng.uniform(5, 140), rng.uniform(5, 130)
            c = ids[int(rng.integers(0, 4))]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": c, "bbox": [x, y, w, h], "area": w * h,
                         "iscrowd": int(rng.random() < 0.05),
                         "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})  # fmt: skip
            for _ in range(int(rng.integers(0, 4))):
                jitter = (0.02, 0.3, 0.6, 0.05, 0.9)[int(rng.integers(0, 5))]
                cc = c if rng.random() < 0.8 else ids[int(rng.integers(0, 4))]
                dets.append({"image_id": i, "category_id": cc, "score": float(np.round(rng.random(), 2)),
                             "bbox": [x + rng.normal(0, jitter) * w, y + rng.normal(0, jitter) * h,
                                      w * abs(1 + rng.normal(0, jitter / 2)) + 1,
                                      h * abs(1 + rng.normal(0, jitter / 2)) + 1]})  # fmt: skip
        for _ in range(int(rng.integers(0, 3))):
            dets.append({"image_id": i, "category_id": ids[int(rng.integers(0, 4))], "score": float(rng.random()),
                         "bbox": [rng.uniform(0, 600), rng.uniform(0, 440), rng.uniform(2, 40), rng.uniform(2, 40)]})  # fmt: skip
    categories = [{"id": c, "name": n, "supercategory": "thing"} for c, n in CLASSES.items()]
    return {"images": images, "annotations": anns, "categories": categories}, dets


def write_json(path: Path, doc: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def degraded(dets: list[dict], keep: float, seed: int = 1) -> list[dict]:
    """A clearly worse series: a share `keep` of the predictions, the rest dropped."""
    rng = np.random.default_rng(seed)
    return [d for d in dets if rng.random() < keep]


def store_run(store_dir: Path, gt: dict, series: dict[str, list[dict]], images: dict[str, list[int]] | None = None,
              run_id: str = "20260101-000000-eeeeee", total_ms: float = 10.0) -> str:  # fmt: skip
    """A finished stored run: each model's results (GT image and category ids) as its records, on the images given
    (default: all), named as the ground truth's file names."""
    from core.inference.engine import DetectionResult
    from core.records import RunInfo
    from core.store import Store

    with Store(store_dir) as store:
        store.start_run(RunInfo(run_id, "2026-01-01T00:00:00+00:00", settings={"models": list(series)}, environment={}))
        for model, dets in series.items():
            for im in gt["images"]:
                if images is not None and im["id"] not in images[model]:
                    continue
                mine = [d for d in dets if d["image_id"] == im["id"]]
                xywh = np.array([d["bbox"] for d in mine], dtype=np.float64).reshape(-1, 4)
                labels = np.array([d["category_id"] for d in mine], dtype=np.int64)
                store.add_result(run_id, DetectionResult(
                    image_id=f"{im['id']:016x}", image_name=im["file_name"], width=im["width"],
                    height=im["height"], model=model, weights="default", device="cpu", precision="fp32",
                    batch_size=1, boxes=np.hstack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]]).astype(np.float32),
                    scores=np.array([d["score"] for d in mine], dtype=np.float32), labels=labels,
                    label_names=tuple(CLASSES[int(c)] for c in labels), preprocess_ms=0.1 * total_ms,
                    inference_ms=0.8 * total_ms, postprocess_ms=0.1 * total_ms, error="",
                ), threshold=0.01, created_at="2026-01-01T00:00:00+00:00")  # fmt: skip
        store.finish_run(run_id)
    return run_id
