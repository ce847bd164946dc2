"""Reading COCO JSON files safely (size checked before parsing) and validating their content, with one-line errors.

`read_json` takes bytes, a path or a file object; `validate_instances` checks a COCO instances document and returns a
normalised copy; `load_results` reads and checks a COCO results list.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from core.config import RESULTS_MAX_BYTES
from core.text import fmt_ids, megabytes


class GroundTruthError(ValueError):
    """A ground-truth file that cannot be used; the message is one line and names the offending ids."""


class ResultsError(ValueError):
    """A COCO results file that cannot be used; the message is one line."""


def read_json(source: object, max_bytes: int, what: str, error: type[ValueError]) -> tuple[Any, str]:
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
            raise error(f"{what} file {path.name} is too large: {megabytes(size)} (limit {megabytes(max_bytes)})")
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
        raise error(f"{_called(what, name)} is too large: more than {megabytes(max_bytes)} (limit)")
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


def validate_coco(doc: object, name: str, tol: float) -> dict[str, Any]:
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
            f"images {fmt_ids(bad)}: each needs an integer id, a file_name and positive width/height"
        )
    if dup := _dups(im["id"] for im in images):
        raise GroundTruthError(f"duplicate image ids: {fmt_ids(dup)}")
    if not images:
        raise GroundTruthError(f"{_called('ground truth', name)} has no images")

    bad = [
        _label(c, i)
        for i, c in enumerate(cats)
        if not (isinstance(c, dict) and _is_int(c.get("id")) and isinstance(c.get("name"), str) and c["name"].strip())
    ]
    if bad:
        raise GroundTruthError(f"categories {fmt_ids(bad)}: each needs an integer id and a name")
    if dup := _dups(c["id"] for c in cats):
        raise GroundTruthError(f"duplicate category ids: {fmt_ids(dup)}")
    if dup := _dups(norm_name(c["name"]) for c in cats):
        raise GroundTruthError(f"duplicate category names: {fmt_ids(repr(n) for n in dup)}")

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
            f"annotations {fmt_ids(bad)}: each needs integer id, image_id and category_id and a bbox of 4 finite "
            "numbers [x, y, w, h] (iscrowd 0/1 and area >= 0 when given)"
        )
    if dup := _dups(a["id"] for a in anns):
        raise GroundTruthError(f"duplicate annotation ids: {fmt_ids(dup)}")
    by_id = {im["id"]: im for im in images}
    unknown = [a for a in anns if a["image_id"] not in by_id]
    if unknown:
        raise GroundTruthError(
            f"annotations {fmt_ids(a['id'] for a in unknown)} refer to unknown image ids "
            f"{fmt_ids(a['image_id'] for a in unknown)}"
        )
    cat_ids = {c["id"] for c in cats}
    unknown = [a for a in anns if a["category_id"] not in cat_ids]
    if unknown:
        raise GroundTruthError(
            f"annotations {fmt_ids(a['id'] for a in unknown)} refer to unknown category ids "
            f"{fmt_ids(a['category_id'] for a in unknown)}"
        )
    flat = [a for a in anns if a["bbox"][2] <= 0 or a["bbox"][3] <= 0]
    if flat:
        raise GroundTruthError(f"annotations {fmt_ids(a['id'] for a in flat)} have boxes with no area (w or h <= 0)")
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
            f"annotations {fmt_ids(o['id'] for o in outside)} have boxes outside their image by more than {tol:g} px "
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


def norm_name(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


def load_results(source: object, gt_image_ids: Iterable[int], *, max_bytes: int = RESULTS_MAX_BYTES) -> list[dict]:
    """Read and check a COCO results JSON: a list of {image_id, category_id, bbox [x, y, w, h], score}."""
    doc, name = read_json(source, max_bytes, "results", ResultsError)
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
            f"{_called('results', name)}: entries {fmt_ids(f'#{i}' for i in bad)} need integer image_id and category_id, "
            "a bbox of 4 finite numbers and a finite score"
        )
    known = set(gt_image_ids)
    unknown = [r["image_id"] for r in doc if r["image_id"] not in known]
    if unknown:
        raise ResultsError(f"{_called('results', name)} refer to image ids not in the ground truth: {fmt_ids(unknown)}")
    return [
        {"image_id": r["image_id"], "category_id": r["category_id"], "bbox": [float(v) for v in r["bbox"]],
         "score": float(r["score"])}
        for r in doc
    ]  # fmt: skip
