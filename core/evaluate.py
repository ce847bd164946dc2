"""Ground-truth evaluation: COCO instances JSON in, pycocotools' COCO metrics, PR curves and per-box outcomes out.

- `load_ground_truth` reads and validates a COCO instances file (one-line `GroundTruthError`s naming the offending
  ids), matches its images to ours by file name and maps its category names to a model's label ids (torchvision's
  label ids are the COCO category ids, so a standard COCO file maps id for id; a file of its own numbering, "cup" = 3,
  is mapped by name to label 47). Categories no model class carries are reported and their boxes left out.
- `evaluate` scores one model's detections (the records schema: pixels, label ids, our content-hash image ids) with
  pycocotools' own COCOeval: AP, AP50, AP75, APs/m/l, AR1/10/100, AP per class and the 101-point precision curves.
  `evaluate_results_file` does the same for any COCO results JSON (image and category ids of the ground truth).
- `match_outcomes` labels each box above a threshold as a true positive, a false positive (with its reason) or a
  missed ground-truth box, COCO-style (greedy by score, one match per ground-truth box, crowd regions ignored), for
  overlays; `prf_at` turns those outcomes into precision, recall and F1.
- `add_cli` registers `python -m core evaluate`.

Only images that have both ground truth and a processed image of ours are evaluated; an image that a model saw and
found nothing on counts (its ground-truth boxes are misses), an image it never saw does not.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import json
import math
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
import pandas as pd

from core.config import (
    EVAL_IOU,
    EVAL_MAX_DETS,
    GALLERY_ANNOTATIONS,
    GT_BOX_TOLERANCE_PX,
    GT_MAX_BYTES,
    HEADLINE_MODELS,
    RESULTS_MAX_BYTES,
)

EXIT_OK = 0
EXIT_USAGE = 2

METRIC_KEYS: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")
JSON_KEYS: tuple[str, ...] = (*METRIC_KEYS, "per_class", "evaluator", "maxDets", "score_floor")
OUTCOME_COLUMNS: tuple[str, ...] = (
    "image_id", "model", "outcome", "reason", "label_id", "label", "score", "iou", "x1", "y1", "x2", "y2", "gt_id",
)  # fmt: skip
OUTCOME_DTYPES: dict[str, str] = {
    "image_id": "string", "model": "string", "outcome": "string", "reason": "string", "label_id": "int64",
    "label": "string", "score": "float64", "iou": "float64", "x1": "float64", "y1": "float64", "x2": "float64",
    "y2": "float64", "gt_id": "Int64",
}  # fmt: skip
GT_BOX_COLUMNS: tuple[str, ...] = ("image_id", "gt_id", "label_id", "label", "iscrowd", "x1", "y1", "x2", "y2")

# Outcomes and false-positive reasons (match_outcomes).
TP, FP, FN, IGNORED = "tp", "fp", "fn", "ignored"
WRONG_CLASS, DUPLICATE, LOW_IOU, MISSED, CROWD = "wrong class", "duplicate", "low IoU", "missed", "crowd"

# Names other datasets use for COCO classes (Pascal VOC mostly), matched after lower-casing and `_`/`-` -> space.
NAME_ALIASES: dict[str, str] = {
    "aeroplane": "airplane",
    "motorbike": "motorcycle",
    "bike": "bicycle",
    "sofa": "couch",
    "tvmonitor": "tv",
    "tv monitor": "tv",
    "diningtable": "dining table",
    "pottedplant": "potted plant",
    "cellphone": "cell phone",
    "mobile phone": "cell phone",
    "hair dryer": "hair drier",
    "people": "person",
    "pedestrian": "person",
}
_NOT_CLASSES = frozenset({"n/a", "__background__", "background"})
_MAX_IDS_SHOWN = 5

# pycocotools prints as it goes; its output is swallowed by swapping sys.stdout, which is process-wide: one evaluation
# at a time, so that two threads (two dashboard sessions) never restore each other's stdout.
_COCO_LOCK = threading.Lock()


class GroundTruthError(ValueError):
    """A ground-truth file that cannot be used; the message is one line and names the offending ids."""


class ResultsError(ValueError):
    """A COCO results file that cannot be used; the message is one line."""


@dataclass
class GroundTruth:
    """A validated COCO instances file, ready for pycocotools and for our records.

    `coco` is the pycocotools-ready dict with category ids rewritten to the model's label ids (results carrying
    torchvision label ids evaluate against it directly); annotations of unmapped categories are left out of it.
    `raw` is the same validated content with the file's own ids (for results files that use them).
    """

    coco: dict[str, Any]
    raw: dict[str, Any]
    image_id_map: dict[str, int] = field(default_factory=dict)  # our image_id (content hash) -> GT image id
    category_map: dict[int, int] = field(default_factory=dict)  # GT category id -> model label id
    unmatched_images: list[str] = field(default_factory=list)  # our image_ids with no GT image of their file name
    unmatched_gt_images: list[str] = field(default_factory=list)  # GT file names none of our images matched
    size_mismatches: list[str] = field(default_factory=list)  # our image_ids whose size differs from the GT's
    unmapped_categories: list[str] = field(default_factory=list)  # GT category names no model label carries
    dropped_annotations: int = 0  # boxes of unmapped categories
    source: str = ""

    @property
    def class_names(self) -> dict[int, str]:
        """Model label id -> class name of every evaluated category."""
        return {c["id"]: c["name"] for c in self.coco["categories"]}

    @property
    def n_images(self) -> int:
        return len(self.raw["images"])

    @property
    def n_boxes(self) -> int:
        return len(self.coco["annotations"])


@dataclass
class Metrics:
    """pycocotools' COCO box metrics for one model (NaN where there is nothing to measure, e.g. APs without small GT)."""

    AP: float
    AP50: float
    AP75: float
    APs: float
    APm: float
    APl: float
    AR1: float
    AR10: float
    AR100: float
    per_class: dict[str, float]  # class name -> AP@[.5:.95] (NaN for classes without GT)
    evaluator: str
    max_dets: tuple[int, int, int]
    score_floor: float
    iou_thresholds: np.ndarray  # (T,) 0.50, 0.55, ... 0.95
    recall_thresholds: np.ndarray  # (R,) 0.00, 0.01, ... 1.00
    precision: np.ndarray  # (T, R, K) interpolated precision, area "all", the last max_dets; -1 for classes without GT
    scores: np.ndarray  # (T, R, K) score at which each precision point is reached (0 where never)
    class_ids: tuple[int, ...]  # (K,) category ids in the order of the last axis
    class_names: tuple[str, ...]
    n_images: int = 0
    n_gt: int = 0
    n_detections: int = 0

    def to_json(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict (NaN -> None), keys JSON_KEYS exactly."""
        out: dict[str, Any] = {k: _json_float(getattr(self, k)) for k in METRIC_KEYS}
        out["per_class"] = {name: _json_float(ap) for name, ap in self.per_class.items()}
        out["evaluator"] = self.evaluator
        out["maxDets"] = list(self.max_dets)
        out["score_floor"] = self.score_floor
        return out


@dataclass(frozen=True)
class PRF:
    """Counts and rates at one score threshold (NaN where undefined: no detections, no GT)."""

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float


# --- reading and validating -----------------------------------------------------------------------------------------


def _fmt_ids(ids: Iterable[object]) -> str:
    ids = list(dict.fromkeys(ids))
    shown = ", ".join(str(i) for i in ids[:_MAX_IDS_SHOWN])
    more = len(ids) - _MAX_IDS_SHOWN
    return f"{shown} (+{more} more)" if more > 0 else shown


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def _read_json(source: object, max_bytes: int, what: str, error: type[ValueError]) -> tuple[Any, str]:
    """Bytes, a path or a file-like object -> (parsed JSON, display name); size checked before parsing."""
    name = ""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    elif isinstance(source, str | Path):
        path = Path(source)
        name = path.name
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise error(f"{what} file not found or unreadable: {path} ({exc.strerror or exc})") from None
        if size > max_bytes:
            raise error(f"{what} file {path.name} is too large: {_mb(size)} (limit {_mb(max_bytes)})")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise error(f"{what} file unreadable: {path} ({exc.strerror or exc})") from None
    elif hasattr(source, "read"):
        name = Path(str(getattr(source, "name", "") or "")).name
        data = source.read(max_bytes + 1)
        if isinstance(data, str):
            data = data.encode("utf-8")
    else:
        raise TypeError(f"expected bytes, a path or a file object, not {type(source).__name__}")
    if len(data) > max_bytes:
        raise error(f"{_called(what, name)} is too large: more than {_mb(max_bytes)} (limit)")
    try:
        return json.loads(data), name
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError; RecursionError: deep nesting
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise error(f"{_called(what, name)} is not valid JSON: {first}") from None


def _called(what: str, name: str) -> str:
    """'ground truth gt.json', or just 'ground truth' for bytes without a name."""
    return f"{what} {name}" if name else what


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _valid_box(b: object) -> bool:
    return isinstance(b, list | tuple) and len(b) == 4 and all(_is_num(v) for v in b)


def _label(item: object, i: int) -> object:
    """An item's id for messages, or '#index' when it has none."""
    return item.get("id") if isinstance(item, dict) and _is_int(item.get("id")) else f"#{i}"


def _dups(ids: Iterable[object]) -> list[object]:
    return [i for i, n in Counter(ids).items() if n > 1]


def _validate(doc: object, name: str, tol: float) -> dict[str, Any]:
    """Check a COCO instances document; return a normalised copy (area and iscrowd filled in)."""
    if not isinstance(doc, dict):
        raise GroundTruthError(
            f"{_called('ground truth', name)} is not a COCO instances object (expected {{'images': ...}})"
        )
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(doc.get(k), list)]
    if missing:
        raise GroundTruthError(
            f"{_called('ground truth', name)} is missing keys (or they are not lists): {', '.join(missing)}; "
            "a COCO instances file has images, annotations and categories"
        )
    images, anns, cats = doc["images"], doc["annotations"], doc["categories"]

    bad = [
        _label(im, i)
        for i, im in enumerate(images)
        if not (
            isinstance(im, dict)
            and _is_int(im.get("id"))
            and isinstance(im.get("file_name"), str)
            and im["file_name"].strip()
            and _is_int(im.get("width"))
            and _is_int(im.get("height"))
            and im["width"] > 0
            and im["height"] > 0
        )
    ]
    if bad:
        raise GroundTruthError(
            f"images {_fmt_ids(bad)}: each needs an integer id, a file_name and positive width/height"
        )
    if dup := _dups(im["id"] for im in images):
        raise GroundTruthError(f"duplicate image ids: {_fmt_ids(dup)}")
    if not images:
        raise GroundTruthError(f"{_called('ground truth', name)} has no images")

    bad = [
        _label(c, i)
        for i, c in enumerate(cats)
        if not (isinstance(c, dict) and _is_int(c.get("id")) and isinstance(c.get("name"), str) and c["name"].strip())
    ]
    if bad:
        raise GroundTruthError(f"categories {_fmt_ids(bad)}: each needs an integer id and a name")
    if dup := _dups(c["id"] for c in cats):
        raise GroundTruthError(f"duplicate category ids: {_fmt_ids(dup)}")
    if dup := _dups(_norm(c["name"]) for c in cats):
        raise GroundTruthError(f"duplicate category names: {_fmt_ids(repr(n) for n in dup)}")

    bad = [
        _label(a, i)
        for i, a in enumerate(anns)
        if not (
            isinstance(a, dict)
            and _is_int(a.get("id"))
            and _is_int(a.get("image_id"))
            and _is_int(a.get("category_id"))
            and _valid_box(a.get("bbox"))
            and a.get("iscrowd", 0) in (0, 1, False, True)
            and ("area" not in a or (_is_num(a["area"]) and a["area"] >= 0))
        )
    ]
    if bad:
        raise GroundTruthError(
            f"annotations {_fmt_ids(bad)}: each needs integer id, image_id and category_id and a bbox of 4 finite "
            "numbers [x, y, w, h] (iscrowd 0/1 and area >= 0 when given)"
        )
    if dup := _dups(a["id"] for a in anns):
        raise GroundTruthError(f"duplicate annotation ids: {_fmt_ids(dup)}")
    by_id = {im["id"]: im for im in images}
    unknown = [a for a in anns if a["image_id"] not in by_id]
    if unknown:
        raise GroundTruthError(
            f"annotations {_fmt_ids(a['id'] for a in unknown)} refer to unknown image ids "
            f"{_fmt_ids(a['image_id'] for a in unknown)}"
        )
    cat_ids = {c["id"] for c in cats}
    unknown = [a for a in anns if a["category_id"] not in cat_ids]
    if unknown:
        raise GroundTruthError(
            f"annotations {_fmt_ids(a['id'] for a in unknown)} refer to unknown category ids "
            f"{_fmt_ids(a['category_id'] for a in unknown)}"
        )
    flat = [a for a in anns if a["bbox"][2] <= 0 or a["bbox"][3] <= 0]
    if flat:
        raise GroundTruthError(f"annotations {_fmt_ids(a['id'] for a in flat)} have boxes with no area (w or h <= 0)")
    outside = []
    for a in anns:
        x, y, w, h = a["bbox"]
        im = by_id[a["image_id"]]
        if x < -tol or y < -tol or x + w > im["width"] + tol or y + h > im["height"] + tol:
            outside.append(a)
    if outside:
        a = outside[0]
        im = by_id[a["image_id"]]
        raise GroundTruthError(
            f"annotations {_fmt_ids(o['id'] for o in outside)} have boxes outside their image by more than {tol:g} px "
            f"(e.g. annotation {a['id']}: bbox {a['bbox']} in image {im['id']} of {im['width']}x{im['height']})"
        )

    return {
        "info": dict(doc["info"]) if isinstance(doc.get("info"), dict) else {},
        "images": [
            {"id": im["id"], "file_name": im["file_name"], "width": im["width"], "height": im["height"]}
            for im in images
        ],
        "annotations": [
            {
                "id": a["id"],
                "image_id": a["image_id"],
                "category_id": a["category_id"],
                "bbox": [float(v) for v in a["bbox"]],
                "area": float(a["area"]) if "area" in a else float(a["bbox"][2] * a["bbox"][3]),
                "iscrowd": int(a.get("iscrowd", 0)),
            }
            for a in anns
        ],
        "categories": [
            {"id": c["id"], "name": c["name"], "supercategory": str(c.get("supercategory", ""))} for c in cats
        ],
    }


def _norm(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


def default_categories() -> tuple[str, ...]:
    """The torchvision COCO category list (91 entries, label id = index, "N/A" gaps) from the weights metadata."""
    from core.models import get_model

    return get_model(HEADLINE_MODELS[0]).categories


def map_categories(
    gt_categories: Sequence[Mapping[str, Any]], model_categories: Sequence[str]
) -> tuple[dict[int, int], list[str]]:
    """GT categories -> model label ids by name: (GT id -> label id, unmapped GT names).

    Names match after lower-casing and `_`/`-` -> space, with a few other datasets' names (`NAME_ALIASES`:
    motorbike, aeroplane, sofa, ...). Two GT categories landing on one label is an error.
    """
    by_name: dict[str, int] = {}
    for label_id, cname in enumerate(model_categories):
        key = _norm(cname)
        if key and key not in _NOT_CLASSES:
            by_name.setdefault(key, label_id)
    mapping: dict[int, int] = {}
    unmapped: list[str] = []
    for c in gt_categories:
        key = _norm(c["name"])
        label_id = by_name.get(key, by_name.get(NAME_ALIASES.get(key, ""), -1))
        if label_id < 0:
            unmapped.append(c["name"])
        else:
            mapping[c["id"]] = label_id
    clash = [label for label, n in Counter(mapping.values()).items() if n > 1]
    if clash:
        ids = [gid for gid, label in mapping.items() if label == clash[0]]
        names = {c["id"]: c["name"] for c in gt_categories}
        raise GroundTruthError(
            f"categories {_fmt_ids(f'{i} ({names[i]!r})' for i in ids)} all map to model label {clash[0]} "
            f"({model_categories[clash[0]]!r}); keep one"
        )
    return mapping, unmapped


def _basename(name: str) -> str:
    return PurePosixPath(name.replace("\\", "/")).name


def load_ground_truth(
    path_or_bytes: object,
    *,
    image_names: Mapping[str, str] | None = None,
    image_sizes: Mapping[str, tuple[int, int]] | None = None,
    categories: Sequence[str] | None = None,
    max_bytes: int = GT_MAX_BYTES,
    tolerance_px: float = GT_BOX_TOLERANCE_PX,
) -> GroundTruth:
    """Read, validate and map a COCO instances JSON (bytes, a path or a file object such as a Streamlit upload).

    `image_names` maps our image_id (content hash) -> file name; images match GT images by file name (the full
    `file_name`, else its last path part when that is unique). `image_sizes` (our image_id -> (width, height), the
    displayed size) turns a size that differs from the GT's into a `size_mismatches` entry instead of a match (its
    boxes would be in other pixels). `categories` is the model's category list (label id = index; torchvision's
    COCO list by default). Raises GroundTruthError (one line) for anything unusable.
    """
    doc, name = _read_json(path_or_bytes, max_bytes, "ground truth", GroundTruthError)
    raw = _validate(doc, name, tolerance_px)
    model_categories = tuple(categories) if categories is not None else default_categories()
    category_map, unmapped = map_categories(raw["categories"], model_categories)
    gt_names = {c["id"]: c for c in raw["categories"]}
    coco = {
        "info": raw["info"],
        "images": raw["images"],
        "annotations": [
            {**a, "category_id": category_map[a["category_id"]]}
            for a in raw["annotations"]
            if a["category_id"] in category_map
        ],
        "categories": sorted(
            (
                {"id": label, "name": model_categories[label], "supercategory": gt_names[gid]["supercategory"]}
                for gid, label in category_map.items()
            ),
            key=lambda c: c["id"],
        ),
    }
    gt = GroundTruth(
        coco=coco,
        raw=raw,
        category_map=category_map,
        unmapped_categories=unmapped,
        dropped_annotations=len(raw["annotations"]) - len(coco["annotations"]),
        source=name,
    )
    return gt if image_names is None else with_images(gt, image_names, image_sizes=image_sizes)


def with_images(
    gt: GroundTruth, image_names: Mapping[str, str], *, image_sizes: Mapping[str, tuple[int, int]] | None = None
) -> GroundTruth:
    """A copy of `gt` matched to our images (see `load_ground_truth`): load a file once, match it per model or run."""
    out = replace(gt, image_id_map={}, unmatched_images=[], unmatched_gt_images=[], size_mismatches=[])
    _match_images(out, image_names, image_sizes or {})
    return out


def _match_images(gt: GroundTruth, image_names: Mapping[str, str], image_sizes: Mapping[str, tuple[int, int]]) -> None:
    exact = {im["file_name"]: im for im in gt.raw["images"]}
    by_base: dict[str, list[dict]] = {}
    for im in gt.raw["images"]:
        by_base.setdefault(_basename(im["file_name"]), []).append(im)
    used: set[int] = set()
    for image_id, fname in image_names.items():
        im = exact.get(fname)
        if im is None:
            candidates = by_base.get(_basename(str(fname)), [])
            im = candidates[0] if len(candidates) == 1 else None
        if im is None or im["id"] in used:
            gt.unmatched_images.append(image_id)
            continue
        size = image_sizes.get(image_id)
        if size is not None and tuple(int(v) for v in size) != (im["width"], im["height"]):
            gt.size_mismatches.append(image_id)
            continue
        gt.image_id_map[image_id] = im["id"]
        used.add(im["id"])
    gt.unmatched_gt_images = [im["file_name"] for im in gt.raw["images"] if im["id"] not in used]


def load_gallery_ground_truth(**kwargs: Any) -> GroundTruth:
    """The bundled hand-drawn boxes of the gallery photos (gallery/annotations.json)."""
    return load_ground_truth(GALLERY_ANNOTATIONS, **kwargs)


def image_names_from(inferences: pd.DataFrame, model: str | None = None) -> dict[str, str]:
    """Our image_id -> image_name of the images a model processed (rows without an error), for `image_names`."""
    rows = inferences[inferences["error"].fillna("") == ""]
    if model is not None:
        rows = rows[rows["model"] == model]
    return dict(zip(rows["image_id"].astype(str), rows["image_name"].astype(str)))


def image_sizes_from(inferences: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Our image_id -> displayed (width, height) of the processed images, for `image_sizes`."""
    rows = inferences[
        (inferences["error"].fillna("") == "") & inferences["width"].notna() & inferences["height"].notna()
    ]
    return {str(i): (int(w), int(h)) for i, w, h in zip(rows["image_id"], rows["width"], rows["height"])}


def gt_boxes(gt: GroundTruth) -> pd.DataFrame:
    """The evaluated GT boxes of our matched images in our terms (image_id = content hash, x1..y2 pixels)."""
    ours = {gid: our for our, gid in gt.image_id_map.items()}
    names = gt.class_names
    rows = [
        {
            "image_id": ours[a["image_id"]],
            "gt_id": a["id"],
            "label_id": a["category_id"],
            "label": names[a["category_id"]],
            "iscrowd": a["iscrowd"],
            "x1": a["bbox"][0],
            "y1": a["bbox"][1],
            "x2": a["bbox"][0] + a["bbox"][2],
            "y2": a["bbox"][1] + a["bbox"][3],
        }
        for a in gt.coco["annotations"]
        if a["image_id"] in ours
    ]
    frame = pd.DataFrame(rows, columns=list(GT_BOX_COLUMNS))
    return frame.astype(
        {"image_id": "string", "gt_id": "int64", "label_id": "int64", "label": "string", "iscrowd": "int64"}
        | dict.fromkeys(("x1", "y1", "x2", "y2"), "float64")
    )


# --- metrics --------------------------------------------------------------------------------------------------------


def evaluator_version() -> str:
    return f"pycocotools {importlib.metadata.version('pycocotools')}"


def _json_float(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _nan(v: float) -> float:
    """pycocotools' -1 ('nothing to measure') -> NaN."""
    return math.nan if v < 0 else float(v)


def _check_max_dets(max_dets: Sequence[int]) -> tuple[int, int, int]:
    md = tuple(int(m) for m in max_dets)
    if len(md) != 3 or md[0] < 1 or not md[0] < md[1] < md[2]:
        raise ValueError(f"max_dets must be three increasing positive counts, e.g. (1, 10, 100), not {max_dets}")
    return md  # type: ignore[return-value]


def _one_model(detections: pd.DataFrame, model: str | None) -> tuple[pd.DataFrame, str]:
    if model is not None:
        return detections[detections["model"] == model], model
    models = list(dict.fromkeys(detections["model"].dropna().astype(str))) if "model" in detections else []
    if len(models) > 1:
        raise ValueError(f"the detections hold {len(models)} models ({', '.join(models)}): pass model=")
    return detections, models[0] if models else ""


def _coco_api(dataset: dict[str, Any]):
    from pycocotools.coco import COCO

    api = COCO()
    api.dataset = dataset
    api.createIndex()
    return api


def _run_cocoeval(
    gt_dict: dict[str, Any], results: list[dict[str, Any]], img_ids: list[int], max_dets: tuple[int, int, int]
):
    """pycocotools' COCOeval (bbox) on dicts; prints swallowed. Results need image_id, category_id, bbox, score.

    The results are indexed the way `COCO.loadRes` does it (area = w*h, id = position + 1, iscrowd 0), without its
    failure on an empty list. Copies go in: COCOeval writes flags into the dicts it is given.
    """
    from pycocotools.cocoeval import COCOeval

    gt_copy = {
        "images": [dict(im) for im in gt_dict["images"]],
        "annotations": [dict(a) for a in gt_dict["annotations"]],
        "categories": [dict(c) for c in gt_dict["categories"]],
    }
    dts = [
        {
            "id": i + 1,
            "image_id": r["image_id"],
            "category_id": r["category_id"],
            "bbox": list(r["bbox"]),
            "score": r["score"],
            "area": r["bbox"][2] * r["bbox"][3],
            "iscrowd": 0,
        }
        for i, r in enumerate(results)
    ]
    with _COCO_LOCK, contextlib.redirect_stdout(io.StringIO()):
        coco_gt = _coco_api(gt_copy)
        coco_dt = _coco_api({"images": gt_copy["images"], "categories": gt_copy["categories"], "annotations": dts})
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.params.imgIds = sorted(img_ids)
        ev.params.maxDets = list(max_dets)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    if max_dets[2] != 100:
        # summarize() reads AP@[.5:.95] at maxDets=100 whatever the settings; take it at the last max_dets instead.
        p = ev.eval["precision"][:, :, :, 0, -1]
        ev.stats[0] = np.mean(p[p > -1]) if (p > -1).any() else -1
    return ev


def _metrics_from(ev, gt_dict: dict[str, Any], max_dets, score_floor: float, n_dets: int) -> Metrics:
    stats = [_nan(v) for v in ev.stats[:9]]
    cat_ids = list(ev.params.catIds)
    names = {c["id"]: c["name"] for c in gt_dict["categories"]}
    precision = np.asarray(ev.eval["precision"])[:, :, :, 0, -1]  # T, R, K at area "all", the last maxDets
    scores = np.asarray(ev.eval["scores"])[:, :, :, 0, -1]
    per_class = {}
    for k, cid in enumerate(cat_ids):
        p = precision[:, :, k]
        per_class[names[cid]] = float(np.mean(p[p > -1])) if (p > -1).any() else math.nan
    img_ids = set(ev.params.imgIds)
    n_gt = sum(1 for a in gt_dict["annotations"] if a["image_id"] in img_ids and not a["iscrowd"])
    return Metrics(
        *stats,
        per_class=per_class,
        evaluator=evaluator_version(),
        max_dets=max_dets,
        score_floor=float(score_floor),
        iou_thresholds=np.asarray(ev.params.iouThrs, dtype=np.float64),
        recall_thresholds=np.asarray(ev.params.recThrs, dtype=np.float64),
        precision=precision,
        scores=scores,
        class_ids=tuple(int(c) for c in cat_ids),
        class_names=tuple(names[c] for c in cat_ids),
        n_images=len(img_ids),
        n_gt=n_gt,
        n_detections=n_dets,
    )


def detections_to_results(detections: pd.DataFrame, image_id_map: Mapping[str, int]) -> list[dict[str, Any]]:
    """Schema rows (pixels x1..y2, our image ids) -> COCO results (GT image ids, [x, y, w, h]), full precision."""
    rows = detections[detections["image_id"].astype(str).isin(list(image_id_map))]
    if rows.empty:
        return []
    x1, y1 = rows["x1"].to_numpy(np.float64), rows["y1"].to_numpy(np.float64)
    w, h = rows["x2"].to_numpy(np.float64) - x1, rows["y2"].to_numpy(np.float64) - y1
    img = [image_id_map[i] for i in rows["image_id"].astype(str)]
    labels = rows["label_id"].to_numpy(np.int64)
    scores = rows["score"].to_numpy(np.float64)
    return [
        {
            "image_id": int(img[i]),
            "category_id": int(labels[i]),
            "bbox": [float(x1[i]), float(y1[i]), float(w[i]), float(h[i])],
            "score": float(scores[i]),
        }
        for i in range(len(rows))
    ]


def evaluate(
    gt: GroundTruth,
    detections: pd.DataFrame,
    *,
    model: str | None = None,
    score_floor: float = 0.0,
    max_dets: Sequence[int] = EVAL_MAX_DETS,
) -> Metrics:
    """COCO box metrics of one model's detections (records schema) on the images matched in `gt.image_id_map`.

    `model` picks one model's rows (needed when the frame holds several). Boxes below `score_floor` are dropped
    first (COCO's own protocol keeps every box: leave it at 0 for figures comparable with published mAP).
    """
    md = _check_max_dets(max_dets)
    if not gt.image_id_map:
        raise GroundTruthError(
            "none of the images matches a ground-truth file name"
            + (f" (ground truth has {_fmt_ids(gt.unmatched_gt_images)})" if gt.unmatched_gt_images else "")
        )
    dets, _ = _one_model(detections, model)
    dets = dets[dets["score"] >= score_floor]
    results = detections_to_results(dets, gt.image_id_map)
    ev = _run_cocoeval(gt.coco, results, sorted(set(gt.image_id_map.values())), md)
    return _metrics_from(ev, gt.coco, md, score_floor, len(results))


def load_results(source: object, gt_image_ids: Iterable[int], *, max_bytes: int = RESULTS_MAX_BYTES) -> list[dict]:
    """Read and check a COCO results JSON: a list of {image_id, category_id, bbox [x, y, w, h], score}."""
    doc, name = _read_json(source, max_bytes, "results", ResultsError)
    if not isinstance(doc, list):
        raise ResultsError(
            f"{_called('results', name)} is not a COCO results list (expected [{{'image_id': ...}}, ...])"
        )
    bad = [
        i
        for i, r in enumerate(doc)
        if not (
            isinstance(r, dict)
            and _is_int(r.get("image_id"))
            and _is_int(r.get("category_id"))
            and _valid_box(r.get("bbox"))
            and _is_num(r.get("score"))
        )
    ]
    if bad:
        raise ResultsError(
            f"{_called('results', name)}: entries {_fmt_ids(f'#{i}' for i in bad)} need integer image_id and category_id, "
            "a bbox of 4 finite numbers and a finite score"
        )
    known = set(gt_image_ids)
    unknown = [r["image_id"] for r in doc if r["image_id"] not in known]
    if unknown:
        raise ResultsError(
            f"{_called('results', name)} refer to image ids not in the ground truth: {_fmt_ids(unknown)}"
        )
    return [
        {"image_id": r["image_id"], "category_id": r["category_id"], "bbox": [float(v) for v in r["bbox"]],
         "score": float(r["score"])}
        for r in doc
    ]  # fmt: skip


def evaluate_results_file(
    gt_path: object,
    results_path: object,
    *,
    label_ids: Literal["gt", "model"] = "gt",
    score_floor: float = 0.0,
    max_dets: Sequence[int] = EVAL_MAX_DETS,
    categories: Sequence[str] | None = None,
) -> Metrics:
    """Any COCO results JSON against a COCO instances JSON, on every GT image (what pycocotools does with the pair).

    Image ids are the ground truth's. Category ids are the ground truth's (`label_ids="gt"`, the COCO convention)
    or the model's label ids (`"model"`: DetLens's own export with a GT of another numbering; the same for a GT
    with the standard COCO ids).
    """
    md = _check_max_dets(max_dets)
    gt = load_ground_truth(gt_path, categories=categories)
    results = load_results(results_path, (im["id"] for im in gt.raw["images"]))
    results = [r for r in results if r["score"] >= score_floor]
    target = gt.raw if label_ids == "gt" else gt.coco
    ev = _run_cocoeval(target, results, [im["id"] for im in gt.raw["images"]], md)
    return _metrics_from(ev, target, md, score_floor, len(results))


def pr_curve(metrics: Metrics, class_name: str | None = None, iou: float = EVAL_IOU) -> pd.DataFrame:
    """The 101-point interpolated precision/recall curve at one IoU threshold (pycocotools' accumulate()).

    `class_name=None` averages the precision over the classes that have GT (the curve whose area is AP at `iou`).
    Precision is NaN where nothing can be measured (no GT for the class).
    """
    t = np.flatnonzero(np.isclose(metrics.iou_thresholds, iou))
    if not len(t):
        raise ValueError(f"no IoU threshold {iou} in {np.round(metrics.iou_thresholds, 2).tolist()}")
    p = metrics.precision[t[0]]  # R, K
    if class_name is not None:
        if class_name not in metrics.class_names:
            raise ValueError(f"unknown class {class_name!r}")
        col = p[:, metrics.class_names.index(class_name)]
        prec = np.where(col > -1, col, np.nan)
    else:
        valid = (p > -1).all(axis=0)
        prec = p[:, valid].mean(axis=1) if valid.any() else np.full(p.shape[0], np.nan)
    return pd.DataFrame({"recall": metrics.recall_thresholds.copy(), "precision": prec.astype(np.float64)})


# --- per-box outcomes -----------------------------------------------------------------------------------------------


def _ious(dt_xywh: np.ndarray, gt_xywh: np.ndarray, iscrowd: np.ndarray) -> np.ndarray:
    """pycocotools' box IoU (what COCOeval uses: for a crowd GT, intersection over the detection's area)."""
    from pycocotools import mask as mask_utils

    if not len(dt_xywh) or not len(gt_xywh):
        return np.zeros((len(dt_xywh), len(gt_xywh)))
    return np.asarray(
        mask_utils.iou(
            np.ascontiguousarray(dt_xywh, np.float64),
            np.ascontiguousarray(gt_xywh, np.float64),
            [int(c) for c in iscrowd],
        ),
        dtype=np.float64,
    ).reshape(len(dt_xywh), len(gt_xywh))


def match_outcomes(
    gt: GroundTruth,
    detections: pd.DataFrame,
    threshold: float,
    iou: float = EVAL_IOU,
    *,
    model: str | None = None,
) -> pd.DataFrame:
    """One row per detection with score >= threshold on a matched image, one per missed GT box (OUTCOME_COLUMNS).

    Per image, detections are taken by decreasing score (ties in frame order); each takes the unmatched same-class
    GT box it overlaps most at IoU >= `iou`: a true positive ("tp"). Otherwise it is a false positive ("fp") with a
    reason: "duplicate" (a same-class GT it overlaps was already taken by a higher score), "wrong class" (it overlaps
    a GT of another class at IoU >= `iou`), "low IoU" (its best same-class IoU is below `iou`, or there is no GT). A
    detection on a crowd region is "ignored" (reason "crowd"), as in COCO. Unmatched non-crowd GT boxes are "fn"
    (reason "missed"). `iou` holds the IoU with the matched GT (tp) or the best same-class IoU (fp; NaN when no
    same-class GT); `gt_id` the GT annotation id (tp, fn, ignored).
    """
    dets, model_name = _one_model(detections, model)
    dets = dets[(dets["score"] >= threshold) & dets["image_id"].astype(str).isin(list(gt.image_id_map))]
    names = gt.class_names
    anns_by_image: dict[int, list[dict]] = {}
    for a in gt.coco["annotations"]:
        anns_by_image.setdefault(a["image_id"], []).append(a)
    det_groups = {str(k): g for k, g in dets.groupby(dets["image_id"].astype(str), sort=False)} if len(dets) else {}
    has_label = "label" in dets.columns
    rows: list[dict[str, Any]] = []
    for image_id, gt_image in gt.image_id_map.items():
        anns = anns_by_image.get(gt_image, [])
        g_box = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        g_lab = np.array([a["category_id"] for a in anns], dtype=np.int64)
        g_crowd = np.array([a["iscrowd"] for a in anns], dtype=np.int64)
        group = det_groups.get(image_id)
        if group is None:
            group = dets.iloc[0:0]
        order = np.argsort(-group["score"].to_numpy(np.float64), kind="mergesort")
        group = group.iloc[order]
        x1, y1 = group["x1"].to_numpy(np.float64), group["y1"].to_numpy(np.float64)
        x2, y2 = group["x2"].to_numpy(np.float64), group["y2"].to_numpy(np.float64)
        d_lab = group["label_id"].to_numpy(np.int64)
        ious = _ious(np.stack([x1, y1, x2 - x1, y2 - y1], axis=1), g_box, g_crowd)
        taken = np.zeros(len(anns), dtype=bool)
        for d in range(len(group)):
            same = g_lab == d_lab[d]
            row_iou = ious[d] if len(anns) else np.zeros(0)
            free = same & ~g_crowd.astype(bool) & ~taken & (row_iou >= iou)
            gt_id = None
            if free.any():
                m = int(np.flatnonzero(free)[np.argmax(row_iou[free])])
                taken[m] = True
                outcome, reason, best, gt_id = TP, "", float(row_iou[m]), anns[m]["id"]
            else:
                plain = same & ~g_crowd.astype(bool)
                best = float(row_iou[plain].max()) if plain.any() else math.nan
                crowd = same & g_crowd.astype(bool) & (row_iou >= iou)
                if crowd.any():
                    outcome, reason, gt_id = IGNORED, CROWD, anns[int(np.flatnonzero(crowd)[0])]["id"]
                elif (plain & taken & (row_iou >= iou)).any():
                    outcome, reason = FP, DUPLICATE
                elif (~same & ~g_crowd.astype(bool) & (row_iou >= iou)).any():
                    outcome, reason = FP, WRONG_CLASS
                else:
                    outcome, reason = FP, LOW_IOU
            rows.append(
                {
                    "image_id": image_id,
                    "model": str(group["model"].iloc[d]) if "model" in group else model_name,
                    "outcome": outcome,
                    "reason": reason,
                    "label_id": int(d_lab[d]),
                    "label": str(group["label"].iloc[d]) if has_label else names.get(int(d_lab[d]), str(d_lab[d])),
                    "score": float(group["score"].iloc[d]),
                    "iou": best,
                    "x1": x1[d],
                    "y1": y1[d],
                    "x2": x2[d],
                    "y2": y2[d],
                    "gt_id": gt_id,
                }
            )
        for m, a in enumerate(anns):
            if not taken[m] and not a["iscrowd"]:
                x, y, w, h = a["bbox"]
                rows.append(
                    {
                        "image_id": image_id, "model": model_name, "outcome": FN, "reason": MISSED,
                        "label_id": a["category_id"], "label": names[a["category_id"]], "score": math.nan,
                        "iou": math.nan, "x1": x, "y1": y, "x2": x + w, "y2": y + h, "gt_id": a["id"],
                    }
                )  # fmt: skip
    frame = pd.DataFrame(rows, columns=list(OUTCOME_COLUMNS))
    return frame.astype(OUTCOME_DTYPES)


def prf_at(outcomes: pd.DataFrame) -> PRF:
    """Precision, recall and F1 of `match_outcomes` rows (one threshold; ignored boxes do not count)."""
    counts = outcomes["outcome"].value_counts()
    tp, fp, fn = (int(counts.get(k, 0)) for k in (TP, FP, FN))
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    if math.isnan(precision) or math.isnan(recall):
        f1 = math.nan
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PRF(tp=tp, fp=fp, fn=fn, precision=precision, recall=recall, f1=f1)


# --- command line ---------------------------------------------------------------------------------------------------


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register `evaluate` on the `python -m core` sub-command parsers (handler: `main_evaluate`)."""
    p = subparsers.add_parser(
        "evaluate",
        help="COCO mAP of detections against COCO-format ground truth (pycocotools)",
        description="COCO box metrics (pycocotools) of a COCO results JSON, or of a stored run, against a COCO "
        "instances JSON. Exit status 2 with a one-line message when a file cannot be used.",
    )
    p.add_argument("--gt", default=str(GALLERY_ANNOTATIONS), help="COCO instances JSON (default: the gallery's)")
    p.add_argument("--results", help="COCO results JSON (image and category ids as in the ground truth)")
    p.add_argument("--label-ids", choices=("gt", "model"), default="gt",
                   help="category ids in --results: the ground truth's (gt) or torchvision label ids (model)")  # fmt: skip
    p.add_argument("--run", help="a stored run's id (with --store)")
    p.add_argument("--store", help="the run store folder (with --run; default: the store's own default)")
    p.add_argument("--model", help="with --run: only this model")
    p.add_argument("--score-floor", type=float, default=0.0, help="drop boxes below this score first (default 0)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=main_evaluate)


def _fmt(v: float) -> str:
    return "   -  " if v is None or not math.isfinite(v) else f"{v:6.3f}"


def _print_table(rows: dict[str, Metrics]) -> None:
    header = f"{'model':40} " + " ".join(f"{k:>6}" for k in METRIC_KEYS)
    print(header)
    print("-" * len(header))
    for name, m in rows.items():
        print(f"{name:40} " + " ".join(_fmt(getattr(m, k)) for k in METRIC_KEYS))
    first = next(iter(rows.values()), None)
    if first is not None:
        print(f"\n{first.evaluator}, maxDets {list(first.max_dets)}, score floor {first.score_floor:g}")
    for name, m in rows.items():
        measured = {k: v for k, v in m.per_class.items() if math.isfinite(v)}
        if measured:
            prefix = f"{name}: " if len(rows) > 1 else ""
            print(prefix + "AP per class: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(measured.items())))


def _evaluate_run(args: argparse.Namespace) -> dict[str, Metrics]:
    from core.store import Store, StoreError, default_store_dir

    try:
        inferences, detections, _ = Store(args.store or default_store_dir(), create=False).load_run(args.run)
    except StoreError as exc:
        raise GroundTruthError(f"run {args.run}: {exc}") from None
    present = list(dict.fromkeys(inferences["model"].astype(str)))
    if args.model and args.model not in present:
        raise GroundTruthError(f"run {args.run} has no model {args.model!r} (it has {', '.join(present) or 'none'})")
    gt = load_ground_truth(args.gt)
    out = {}
    for model in [args.model] if args.model else present:
        rows = inferences[inferences["model"] == model]
        matched = with_images(gt, image_names_from(rows), image_sizes=image_sizes_from(rows))
        out[model] = evaluate(matched, detections, model=model, score_floor=args.score_floor)
    if not out:
        raise GroundTruthError(f"run {args.run} is empty")
    return out


def main_evaluate(args: argparse.Namespace) -> int:
    """`python -m core evaluate`: 0 with the table or JSON; 2 with a one-line message for unusable input."""
    results = getattr(args, "results", None)
    run = getattr(args, "run", None)
    try:
        if bool(results) == bool(run):
            raise GroundTruthError("give exactly one of --results RESULTS.json and --run RUN_ID")
        if results:
            rows = {
                Path(results).name: evaluate_results_file(
                    args.gt,
                    results,
                    label_ids=getattr(args, "label_ids", "gt"),
                    score_floor=getattr(args, "score_floor", 0.0),
                )
            }
        else:
            rows = _evaluate_run(args)
    except (GroundTruthError, ResultsError, ValueError) as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return EXIT_USAGE
    if getattr(args, "json", False):
        payload: Any = next(iter(rows.values())).to_json() if results else {k: m.to_json() for k, m in rows.items()}
        print(json.dumps(payload, indent=2))
    else:
        _print_table(rows)
    return EXIT_OK
