"""The ground truth: a validated COCO instances file mapped to a model's label ids and matched to our images.

Images match ours by file name (the full `file_name`, else its last path part when that is unique) and, when known,
by displayed size; category names map to the model's label ids (torchvision's label ids are the COCO category ids, so
a standard COCO file maps id for id; a file of its own numbering, "cup" = 3, is mapped by name to label 47).
Categories no model class carries are reported and their boxes left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from core import categories as category_lists
from core.categories import is_class_name
from core.config import GT_BOX_TOLERANCE_PX, GT_MAX_BYTES, HEADLINE_MODELS
from core.evaluate.validate import GroundTruthError, norm_name, read_json, validate_coco
from core.records import models_in
from core.text import basename, fmt_ids

GT_BOX_COLUMNS: tuple[str, ...] = ("image_id", "gt_id", "label_id", "label", "iscrowd", "x1", "y1", "x2", "y2")

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


def default_categories() -> tuple[str, ...]:
    """The torchvision COCO category list (91 entries, label id = index, "N/A" gaps) from the weights metadata (the
    copy `core.categories` keeps for the installed torchvision, so that reading it needs no torch import)."""
    model = HEADLINE_MODELS[0]
    kept = category_lists.kept_categories(model)
    if kept is not None:
        return kept
    from core.inference.models import get_model

    names = get_model(model).categories
    category_lists.keep_categories(model, names)
    return names


def map_categories(
    gt_categories: Sequence[Mapping[str, Any]], model_categories: Sequence[str]
) -> tuple[dict[int, int], list[str]]:
    """GT categories -> model label ids by name: (GT id -> label id, unmapped GT names).

    Names match after lower-casing and `_`/`-` -> space, with a few other datasets' names (`NAME_ALIASES`:
    motorbike, aeroplane, sofa, ...). Two GT categories landing on one label is an error.
    """
    by_name: dict[str, int] = {}
    for label_id, cname in enumerate(model_categories):
        key = norm_name(cname)
        if is_class_name(key):
            by_name.setdefault(key, label_id)
    mapping: dict[int, int] = {}
    unmapped: list[str] = []
    for c in gt_categories:
        key = norm_name(c["name"])
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
            f"categories {fmt_ids(f'{i} ({names[i]!r})' for i in ids)} all map to model label {clash[0]} "
            f"({model_categories[clash[0]]!r}); keep one"
        )
    return mapping, unmapped


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
    doc, name = read_json(path_or_bytes, max_bytes, "ground truth", GroundTruthError)
    raw = validate_coco(doc, name, tolerance_px)
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
    by_base: dict[str, list[dict]] | None = None  # made at the first name that is not matched exactly
    used: set[int] = set()
    for image_id, fname in image_names.items():
        im = exact.get(fname)
        if im is None:
            if by_base is None:
                by_base = {}
                for gt_im in gt.raw["images"]:
                    by_base.setdefault(basename(gt_im["file_name"]), []).append(gt_im)
            candidates = by_base.get(basename(str(fname)), [])
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


def one_model(detections: pd.DataFrame, model: str | None) -> tuple[pd.DataFrame, str]:
    if model is not None:
        return detections[detections["model"] == model], model
    models = models_in(detections)
    if len(models) > 1:
        raise ValueError(f"the detections hold {len(models)} models ({', '.join(models)}): pass model=")
    return detections, models[0] if models else ""
