"""Series to analyse against one ground truth: COCO results files (named by their file stem) or a stored run's
models, as arrays on the ground truth's image ids, for the error analysis, the paired test and the gate.

A series is evaluated on the images it was run on that have ground truth: a results file on every ground-truth image,
a run's model on its processed images that match a ground-truth file name (`core.evaluate.groundtruth.with_images`).
Bad input raises `SeriesError` with one line: no ground truth for any image, an unknown series, a file that is not
a results list.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import WEIGHTS_UNTRAINED
from core.evaluate.groundtruth import GroundTruth, image_names_from, image_sizes_from, load_ground_truth, with_images
from core.evaluate.validate import GroundTruthError, ResultsError, load_results
from core.records import models_in


class SeriesError(ValueError):
    """Input the analysis cannot use (one line)."""


@dataclass
class Series:
    """One series' detections on ground-truth image ids: x1, y1, x2, y2 boxes, category ids of `SeriesSet.coco`."""

    name: str
    img: np.ndarray
    cls: np.ndarray
    score: np.ndarray
    boxes: np.ndarray  # (N, 4) x1, y1, x2, y2
    images: np.ndarray  # the ground-truth image ids it is evaluated on, ascending
    latency_ms: dict[int, float] = field(default_factory=dict)  # per image id (runs only)
    untrained: bool = False

    @property
    def xywh(self) -> np.ndarray:
        b = self.boxes
        return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)

    def on(self, image_ids: np.ndarray) -> Series:
        """The same series restricted to `image_ids`."""
        keep = np.isin(self.img, image_ids)
        return Series(self.name, self.img[keep], self.cls[keep], self.score[keep], self.boxes[keep],
                      np.intersect1d(self.images, image_ids), self.latency_ms, self.untrained)  # fmt: skip


@dataclass
class SeriesSet:
    """The ground truth (a COCO dict whose category ids the series use) and the series, in the order given."""

    coco: dict[str, Any]
    series: dict[str, Series]
    image_names: dict[int, str]  # ground-truth image id -> file name
    image_keys: dict[int, str] = field(default_factory=dict)  # ground-truth image id -> our image id (runs)
    source: str = ""

    @property
    def class_names(self) -> dict[int, str]:
        return {c["id"]: c["name"] for c in self.coco["categories"]}

    def get(self, name: str) -> Series:
        """The series `name`, or a SeriesError naming the ones there are."""
        if name not in self.series:
            raise SeriesError(f"no series {name!r} (there are: {', '.join(self.series) or 'none'})")
        return self.series[name]

    def gt_arrays(self, image_ids: np.ndarray) -> dict[str, np.ndarray]:
        """The ground-truth boxes on `image_ids`: img, cls, xywh, crowd, area, index (each box's position in
        `coco["annotations"]`), in annotation order."""
        on = set(np.asarray(image_ids).tolist())
        index = [k for k, a in enumerate(self.coco["annotations"]) if a["image_id"] in on]
        anns = [self.coco["annotations"][k] for k in index]
        return {
            "index": np.array(index, dtype=np.int64),
            "img": np.array([a["image_id"] for a in anns], dtype=np.int64),
            "cls": np.array([a["category_id"] for a in anns], dtype=np.int64),
            "xywh": np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4),
            "crowd": np.array([bool(a["iscrowd"]) for a in anns], dtype=bool),
            "area": np.array([a["area"] for a in anns], dtype=np.float64),
        }

    def image_order(self, image_ids: np.ndarray) -> np.ndarray:
        """`image_ids` in the ground truth's image order (tidecv walks images so)."""
        on = set(np.asarray(image_ids).tolist())
        return np.array([im["id"] for im in self.coco["images"] if im["id"] in on], dtype=np.int64)


def results_series_name(path: object) -> str:
    """A results file's series: its file stem (`runs/base.json` -> `base`)."""
    return Path(str(path)).stem


def from_results(gt_path: object, results: Sequence[object]) -> SeriesSet:
    """COCO results files (the ground truth's image and category ids) against a COCO instances file."""
    try:
        gt = load_ground_truth(gt_path)
    except GroundTruthError as exc:
        raise SeriesError(str(exc).splitlines()[0]) from None
    raw = gt.raw
    if not raw["annotations"]:
        raise SeriesError(f"{gt.source or 'the ground truth'} has no box on any image")
    all_ids = np.unique(np.array([im["id"] for im in raw["images"]], dtype=np.int64))
    out: dict[str, Series] = {}
    for path in dict.fromkeys(str(r) for r in results):  # the same file twice is one series
        name = results_series_name(path)
        if name in out:
            raise SeriesError(f"two results files are named {name!r}: rename one")
        try:
            rows = load_results(path, all_ids.tolist())
        except ResultsError as exc:
            raise SeriesError(str(exc).splitlines()[0]) from None
        xywh = np.array([r["bbox"] for r in rows], dtype=np.float64).reshape(-1, 4)
        out[name] = Series(
            name,
            np.array([r["image_id"] for r in rows], dtype=np.int64),
            np.array([r["category_id"] for r in rows], dtype=np.int64),
            np.array([r["score"] for r in rows], dtype=np.float64),
            np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1),
            all_ids,
        )
    return SeriesSet(raw, out, {im["id"]: im["file_name"] for im in raw["images"]}, source=str(gt.source))


def from_frames(gt: GroundTruth, inferences: pd.DataFrame, detections: pd.DataFrame) -> SeriesSet:
    """A run's models (the records schema) against a loaded ground truth; a model none of whose images has ground
    truth is left out, and none left is a SeriesError."""
    out: dict[str, Series] = {}
    keys: dict[int, str] = {}
    for model in models_in(inferences):
        rows = inferences[inferences["model"].astype(str) == model]
        matched = with_images(gt, image_names_from(rows), image_sizes=image_sizes_from(rows))
        if not matched.image_id_map:
            continue
        keys.update({v: k for k, v in matched.image_id_map.items()})
        dets = detections[detections["model"].astype(str) == model]
        ids = dets["image_id"].astype(str)
        dets = dets[ids.isin(list(matched.image_id_map)).to_numpy() & dets["score"].notna().to_numpy()]
        ok = rows[rows["error"].fillna("") == ""]
        latency = {
            matched.image_id_map[str(i)]: float(t)
            for i, t in zip(ok["image_id"].astype(str), ok["total_ms"], strict=True)
            if str(i) in matched.image_id_map and t is not None and not pd.isna(t) and math.isfinite(float(t))
        }
        out[model] = Series(
            model,
            dets["image_id"].astype(str).map(matched.image_id_map).to_numpy(np.int64),
            dets["label_id"].to_numpy(np.int64),
            dets["score"].to_numpy(np.float64),
            dets[["x1", "y1", "x2", "y2"]].to_numpy(np.float64).reshape(-1, 4),
            np.unique(np.fromiter(matched.image_id_map.values(), dtype=np.int64)),
            latency,
            untrained=bool((rows["weights"].astype(str) == WEIGHTS_UNTRAINED).any()),
        )
    if not out:
        raise SeriesError("no ground truth for any image: none of the run's image names is in the ground truth")
    if not any(a["image_id"] in keys for a in gt.coco["annotations"]):
        raise SeriesError("no ground truth for any image: the matched images have no box of a known class")
    names = {im["id"]: im["file_name"] for im in gt.coco["images"]}
    return SeriesSet(gt.coco, out, names, keys, source=str(gt.source))


def from_run(run_id: str, gt_path: object, store_dir: object = None) -> SeriesSet:
    """A stored run's models against a COCO instances file."""
    from core.store import Store, StoreError, default_store_dir

    try:
        inferences, detections, _ = Store(store_dir or default_store_dir(), create=False).load_run(run_id)
        gt = load_ground_truth(gt_path)
    except (StoreError, GroundTruthError) as exc:
        raise SeriesError(f"run {run_id}: {str(exc).splitlines()[0]}") from None
    if inferences.empty:
        raise SeriesError(f"run {run_id} has no records")
    return from_frames(gt, inferences, detections)


def paired(ss: SeriesSet, a: str, b: str) -> tuple[Series, Series]:
    """The two series of a paired test, which must be on the same images."""
    sa, sb = ss.get(a), ss.get(b)
    if not np.array_equal(sa.images, sb.images):
        only_a = len(np.setdiff1d(sa.images, sb.images))
        only_b = len(np.setdiff1d(sb.images, sa.images))
        raise SeriesError(
            f"series {a!r} and {b!r} are on different images ({only_a} only in {a!r}, {only_b} only in {b!r}): "
            "a paired test needs the same images"
        )
    return sa, sb
