"""Slices: AP, AP50 and recall (at IoU 0.5, maxDets 100) by COCO object size and by image attribute.

Sizes are COCOeval's own area ranges (small < 32², medium < 96², large; a box outside the range is ignored, as
pycocotools does), read from one evaluation. An image attribute is a tag from a CSV (image name, tags: one row per
image with tags separated by ";" or "|", or one row per tag) or the folder of the image's file name; each tag's AP is
COCOeval's on that tag's images only.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from core.config import EVAL_MAX_DETS
from core.evalcore import VECTOR, evaluate_arrays
from core.evaluate.series import Series, SeriesError, SeriesSet

SLICE_COLUMNS: tuple[str, ...] = ("slice", "images", "AP", "AP50", "recall50")
SIZES: tuple[str, ...] = ("small", "medium", "large")
ROOT_FOLDER = "(top folder)"


def _figures(ev, area: int) -> tuple[float, float, float]:  # noqa: ANN001
    """AP, AP50 and recall at IoU 0.5 of a finished evaluation for area range `area` (NaN: nothing to measure)."""
    p = ev.eval["precision"][:, :, :, area, -1]
    r = ev.eval["recall"][0, :, area, -1]
    ap = float(p[p > -1].mean()) if (p > -1).any() else math.nan
    p50 = p[0]
    ap50 = float(p50[p50 > -1].mean()) if (p50 > -1).any() else math.nan
    rec = float(r[r > -1].mean()) if (r > -1).any() else math.nan
    return ap, ap50, rec


def _evaluate(ss: SeriesSet, s: Series, image_ids: np.ndarray):  # noqa: ANN202
    on = np.isin(s.img, image_ids)
    return evaluate_arrays(ss.coco, sorted(image_ids.tolist()), EVAL_MAX_DETS, VECTOR, s.img[on], s.cls[on],
                           s.score[on], s.boxes[on])  # fmt: skip


def size_slices(ss: SeriesSet, s: Series) -> pd.DataFrame:
    """AP, AP50 and recall50 on all the series' images, then per COCO size."""
    ev = _evaluate(ss, s, s.images)
    rows = [("all", len(s.images), *_figures(ev, 0))]
    rows += [(f"size: {name}", len(s.images), *_figures(ev, k)) for k, name in enumerate(SIZES, start=1)]
    return pd.DataFrame(rows, columns=list(SLICE_COLUMNS))


def tag_slices(ss: SeriesSet, s: Series, tags: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """AP, AP50 and recall50 on each tag's images (those the series was run on)."""
    rows = []
    for name, members in tags.items():
        ids = np.intersect1d(s.images, np.asarray(members, dtype=np.int64))
        if len(ids):
            rows.append((name, len(ids), *_figures(_evaluate(ss, s, ids), 0)))
    return pd.DataFrame(rows, columns=list(SLICE_COLUMNS))


def folder_tags(ss: SeriesSet) -> dict[str, np.ndarray]:
    """Image ids per folder of the ground truth's file names (`a/b/x.jpg` -> `folder: a/b`)."""
    out: dict[str, list[int]] = {}
    for image_id, name in ss.image_names.items():
        folder = str(PurePosixPath(str(name).replace("\\", "/")).parent)
        out.setdefault(f"folder: {ROOT_FOLDER if folder in ('', '.') else folder}", []).append(int(image_id))
    return {k: np.array(sorted(v), dtype=np.int64) for k, v in sorted(out.items())}


def read_tags(source: object, ss: SeriesSet) -> dict[str, np.ndarray]:
    """Image ids per tag from a CSV (path, bytes or text): image name, then tags; a header row naming `image` is
    skipped. Names match the ground truth's file names, else their last part when that is unique."""
    if isinstance(source, bytes):
        text = source.decode("utf-8-sig")
    elif isinstance(source, str) and "\n" not in source and Path(source).is_file():
        text = Path(source).read_text(encoding="utf-8-sig")
    elif isinstance(source, Path):
        text = source.read_text(encoding="utf-8-sig")
    else:
        text = str(source)
    exact = {str(n): int(i) for i, n in ss.image_names.items()}
    by_base: dict[str, list[int]] = {}
    for i, n in ss.image_names.items():
        by_base.setdefault(PurePosixPath(str(n).replace("\\", "/")).name, []).append(int(i))
    out: dict[str, set[int]] = {}
    unknown: list[str] = []
    for n, row in enumerate(csv.reader(io.StringIO(text))):
        if not row or not row[0].strip():
            continue
        name = row[0].strip()
        if n == 0 and name.lower() in ("image", "image_name", "file_name", "name"):
            continue
        image_id = exact.get(name)
        if image_id is None:
            found = by_base.get(PurePosixPath(name.replace("\\", "/")).name, [])
            image_id = found[0] if len(found) == 1 else None
        if image_id is None:
            unknown.append(name)
            continue
        for cell in row[1:]:
            for tag in cell.replace("|", ";").split(";"):
                if tag.strip():
                    out.setdefault(f"tag: {tag.strip()}", set()).add(image_id)
    if not out:
        hint = f" ({len(unknown)} names not in the ground truth, e.g. {unknown[0]!r})" if unknown else ""
        raise SeriesError(f"the tags CSV tags no image of the ground truth{hint}")
    return {k: np.array(sorted(v), dtype=np.int64) for k, v in sorted(out.items())}
