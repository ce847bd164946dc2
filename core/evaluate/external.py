"""Another detector's COCO results JSON (a YOLO, a detector served elsewhere) as a DetLens run in the run store.

`import_coco_results` reads a COCO results list (`image_id` ints, `category_id` COCO ids, `bbox` [x, y, w, h] in
pixels, `score`), maps its image ids to our images (through the ground truth's file names, or a given id -> file name
map, then to the gallery's and a run's images by name), its category ids to label names (torchvision's COCO category
list: label id = COCO category id), and writes one `DetectionResult` per image into the store as a new run whose model
is the given name (weights, device and precision "external"; latency as given, else NaN). After that the run is like
any other: the dashboard's pages, `python -m core evaluate --run`, the Data page's exports.

The images that count as seen by the detector follow pycocotools' convention for a results file: every image of the
ground truth (or of `image_names`) that DetLens has, boxes or not; an image without boxes is one where the detector
found nothing. Everything is checked before the run is created (one-line `ExternalResultsError`s naming the offending
ids): unknown image ids, unknown categories, boxes without area or outside their image, images DetLens does not
have, image sizes other than the ground truth's. A failure leaves the store as it was.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from core.categories import is_class_name
from core.config import DEFAULT_THRESHOLD
from core.evaluate import GroundTruth, ResultsError, default_categories, load_results
from core.images import ImageSource, gallery_paths
from core.records import DetectionResult, RunInfo, new_run_id, now_iso
from core.store import Store
from core.text import basename, fmt_ids

EXTERNAL = "external"  # weights, device and precision of an imported run
MODEL_NAME_MAX = 60
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._+()-]*")
_ORIENTATION_TAG = 0x0112


class ExternalResultsError(ValueError):
    """A results file (or its settings) that cannot be imported; the message is one line."""


def check_model_name(name: object) -> str:
    """A name for the imported detector: letters, digits, space and `._+()-`, at most 60 characters, not one of the
    registry's models (its figures would be confused with torchvision's)."""
    from core.inference.models import list_models

    text = " ".join(str(name or "").split())
    if not text:
        raise ExternalResultsError("give the detector a name (e.g. yolov8n)")
    if len(text) > MODEL_NAME_MAX or not _MODEL_NAME.fullmatch(text):
        raise ExternalResultsError(
            f"detector name {text[:MODEL_NAME_MAX]!r}: use letters, digits, spaces and . _ + ( ) -, at most "
            f"{MODEL_NAME_MAX} characters, starting with a letter or digit"
        )
    if text in {s.name for s in list_models()}:
        raise ExternalResultsError(f"{text!r} is one of DetLens's own models: give the imported detector another name")
    return text


def _displayed_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) after EXIF orientation, from the header only; None when Pillow cannot read the bytes."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            orientation = im.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:
        return None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _pool(images: Mapping[str, ImageSource] | Iterable[ImageSource] | None) -> tuple[dict, dict]:
    """Our images by exact name and by last path part (names given first win; then the bundled gallery)."""
    given = list(images.values()) if isinstance(images, Mapping) else list(images or [])
    exact: dict[str, ImageSource] = {}
    by_base: dict[str, list[ImageSource]] = {}
    for source in [*given, *(ImageSource.from_path(p) for p in gallery_paths())]:
        if source.name not in exact:
            exact[source.name] = source
            by_base.setdefault(basename(source.name), []).append(source)
    return exact, by_base


def _find(name: str, exact: dict, by_base: dict) -> ImageSource | None:
    if name in exact:
        return exact[name]
    candidates = {s.image_id or str(s.path) or s.name: s for s in by_base.get(basename(name), [])}
    return next(iter(candidates.values())) if len(candidates) == 1 else None


def _check_latency(latency_ms: float | Mapping[str, float] | None) -> float | dict[str, float] | None:
    def ok(v: object) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0

    if latency_ms is None:
        return None
    if isinstance(latency_ms, Mapping):
        bad = [k for k, v in latency_ms.items() if not ok(v)]
        if bad:
            raise ExternalResultsError(f"latency for {fmt_ids(bad)}: give a finite number of ms >= 0")
        return {str(k): float(v) for k, v in latency_ms.items()}
    if not ok(latency_ms):
        raise ExternalResultsError(f"latency {latency_ms!r}: give a finite number of ms >= 0 (or none)")
    return float(latency_ms)


def _label_names(
    results: list[dict], label_ids: str, gt: GroundTruth | None, categories: Sequence[str]
) -> dict[int, tuple[int, str]]:
    """category_id of the results -> (our label id, label name); ExternalResultsError for unknown ids."""
    used = sorted({r["category_id"] for r in results})
    out: dict[int, tuple[int, str]] = {}
    unknown = []
    for cid in used:
        label = cid
        if label_ids == "gt":
            if gt is None or cid not in gt.category_map:
                unknown.append(cid)
                continue
            label = gt.category_map[cid]
        name = categories[label] if 0 <= label < len(categories) else ""
        if not is_class_name(name):
            unknown.append(cid)
        else:
            out[cid] = (label, name)
    if unknown:
        where = "the ground truth's categories" if label_ids == "gt" else "torchvision's COCO category ids (1-90)"
        raise ExternalResultsError(f"results use unknown category ids {fmt_ids(unknown)}: not in {where}")
    return out


def import_coco_results(
    store: Store,
    results_json: object,
    *,
    model_name: str,
    gt: GroundTruth | None = None,
    image_names: Mapping[int, str] | None = None,
    images: Mapping[str, ImageSource] | Iterable[ImageSource] | None = None,
    latency_ms: float | Mapping[str, float] | None = None,
    run_id: str | None = None,
    label_ids: Literal["coco", "gt"] = "coco",
    threshold: float = DEFAULT_THRESHOLD,
    categories: Sequence[str] | None = None,
) -> str:
    """Write another detector's COCO results into `store` as a new run; returns its run id.

    `results_json`: bytes, a path or a file object. Image ids are the ground truth's (`gt`, its file names) or those
    of `image_names` (COCO image id -> file name); our images are found by name among `images` (e.g. a run's, id ->
    source) and the bundled gallery. Category ids are COCO's (torchvision label ids, `label_ids="coco"`) or the
    ground truth's own (`"gt"`, mapped by name as `core.evaluate` does). `latency_ms`: one median for every image, or
    file name -> ms; it is recorded as `inference_ms` and `total_ms` (pre/postprocess 0), NaN when not given.
    `threshold` only sets the records' `n_detections`; every box is kept. Raises ExternalResultsError (one line).
    """
    name = check_model_name(model_name)
    latency = _check_latency(latency_ms)
    if label_ids not in ("coco", "gt"):
        raise ExternalResultsError(f"label_ids must be 'coco' or 'gt', not {label_ids!r}")
    if label_ids == "gt" and gt is None:
        raise ExternalResultsError("category ids of the ground truth need the ground truth")
    if gt is not None:
        files = {im["id"]: im["file_name"] for im in gt.raw["images"]}
        expected = {im["id"]: (im["width"], im["height"]) for im in gt.raw["images"]}
    elif image_names:
        bad = [k for k, v in image_names.items() if not (isinstance(k, int) and isinstance(v, str) and v.strip())]
        if bad:
            raise ExternalResultsError(f"image_names {fmt_ids(bad)}: map integer image ids to file names")
        files, expected = dict(image_names), {}
    else:
        raise ExternalResultsError("give the ground truth (its file names) or image_names to find the results' images")
    try:
        results = load_results(results_json, files)
    except ResultsError as exc:
        raise ExternalResultsError(str(exc)) from None
    labels = _label_names(results, label_ids, gt, tuple(categories) if categories is not None else default_categories())

    flat = [i for i, r in enumerate(results) if r["bbox"][2] <= 0 or r["bbox"][3] <= 0 or r["score"] < 0]
    if flat:
        raise ExternalResultsError(
            f"results {fmt_ids(f'#{i}' for i in flat)} have boxes with no area (w or h <= 0) or a negative score"
        )

    exact, by_base = _pool(images)
    found: dict[int, ImageSource] = {}
    for image_id, fname in files.items():
        source = _find(fname, exact, by_base)
        if source is not None:
            found[image_id] = source
    missing = sorted({files[r["image_id"]] for r in results if r["image_id"] not in found})
    if missing:
        raise ExternalResultsError(
            f"results refer to images DetLens does not have: {fmt_ids(missing)} (run them or add them to the gallery)"
        )
    if not found:
        raise ExternalResultsError("none of the results' images is among the gallery's or the run's images")

    seen: dict[int, tuple[ImageSource, int, int]] = {}
    unreadable, mismatched = [], []
    for image_id, source in found.items():
        data = source.read()
        size = _displayed_size(data) if data else None
        if size is None:
            unreadable.append(files[image_id])
            continue
        if image_id in expected and size != expected[image_id]:
            mismatched.append(
                f"{files[image_id]} ({size[0]}x{size[1]}, ground truth {'x'.join(map(str, expected[image_id]))})"
            )
            continue
        seen[image_id] = (source.hashed(), *size)
    if mismatched:
        raise ExternalResultsError(f"images differ in size from the ground truth: {fmt_ids(mismatched)}")
    if unreadable:
        raise ExternalResultsError(f"images cannot be read: {fmt_ids(unreadable)}")

    by_image: dict[int, list[dict]] = {i: [] for i in seen}
    outside = []
    for i, r in enumerate(results):
        _, w, h = seen[r["image_id"]]
        x, y, bw, bh = r["bbox"]
        x1, y1, x2, y2 = max(0.0, x), max(0.0, y), min(float(w), x + bw), min(float(h), y + bh)
        if x2 <= x1 or y2 <= y1:
            outside.append(f"#{i}")
            continue
        by_image[r["image_id"]].append({"box": (x1, y1, x2, y2), "score": r["score"], "cid": r["category_id"]})
    if outside:
        raise ExternalResultsError(f"results {fmt_ids(outside)} have boxes outside their image")

    run_id = run_id or new_run_id()
    created = now_iso()
    source_name = Path(
        str(results_json if isinstance(results_json, str | Path) else getattr(results_json, "name", ""))
    ).name
    settings = {
        "models": [name],
        "weights": EXTERNAL,
        "device": EXTERNAL,
        "precision": EXTERNAL,
        "threshold": float(threshold),
        "source": "external COCO results",
        "results_file": source_name,
        "ground_truth": gt.source if gt is not None else "",
        "latency_ms": latency if latency is not None else "not given",
    }
    store.start_run(RunInfo(run_id, created, settings))
    try:
        for image_id, (source, w, h) in seen.items():
            ms = _ms(latency, source.name, files[image_id])
            _write(store, run_id, name, source, (w, h), by_image[image_id], labels, ms, threshold, created)
    except BaseException:
        store.delete_run(run_id)  # all or nothing: no half-imported run is left behind
        raise
    store.finish_run(run_id)
    return run_id


def _ms(latency: float | dict[str, float] | None, *names: str) -> float:
    if isinstance(latency, dict):
        return next((latency[n] for n in names if n in latency), math.nan)
    return math.nan if latency is None else float(latency)


def _write(
    store: Store,
    run_id: str,
    name: str,
    source: ImageSource,
    size: tuple[int, int],
    boxes: list[dict],
    labels: dict[int, tuple[int, str]],
    ms: float,
    threshold: float,
    created: str,
) -> None:
    """One image's boxes as a DetectionResult into the run (and the image's bytes, listed in the run)."""
    boxes = sorted(boxes, key=lambda b: -b["score"])
    result = DetectionResult(
        image_id=source.image_id,
        image_name=source.name,
        width=size[0],
        height=size[1],
        model=name,
        weights=EXTERNAL,
        device=EXTERNAL,
        precision=EXTERNAL,
        batch_size=1,
        boxes=np.array([b["box"] for b in boxes], dtype=np.float64).reshape(-1, 4),
        scores=np.array([b["score"] for b in boxes], dtype=np.float64),
        labels=np.array([labels[b["cid"]][0] for b in boxes], dtype=np.int64),
        label_names=tuple(labels[b["cid"]][1] for b in boxes),
        preprocess_ms=0.0 if not math.isnan(ms) else math.nan,
        inference_ms=ms,
        postprocess_ms=0.0 if not math.isnan(ms) else math.nan,
    )
    store.put_image(source, run_id=run_id)
    store.add_result(run_id, result, threshold=threshold, created_at=created)
