"""Runtimes against eager with ground truth, for Compare: each non-eager series' COCO AP, its eager reference's on the
same images, and the difference (core.compare.agreement.ap_against_eager), in the agreement table and the model cards.

The ground truth is the session's (picked on the Evaluate page), else the bundled gallery annotations (the Evaluate
page's default): images match it by file name and size, so a run on other images has no AP (the columns are left out
and a caption says so, never a 0). AP does not depend on the threshold: it is computed once per (frame, ground truth)
with every box of the series involved.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.analytics import RunFrame, queries
from core.compare import agreement
from core.evaluate import GroundTruth, GroundTruthError
from core.images import content_id
from dashboard import groundtruth, runviews
from dashboard.cache import memo

AP_COLUMNS: tuple[str, ...] = ("ap", "ap_eager", "ap_diff")
CARD_AP_COLUMNS: dict[str, str] = {"ap": "AP (ground truth)", "ap_eager": "eager AP", "ap_diff": "ΔAP vs eager"}


@dataclass(frozen=True)
class CompareGT:
    """The ground truth Compare measures AP against; equal (and hashed) by its content hash only."""

    key: str
    name: str
    gt: GroundTruth = field(compare=False, hash=False, repr=False)


def compare_ground_truth() -> CompareGT | None:
    """The session's ground truth, else the gallery's; None when the one in use does not validate."""
    info = groundtruth.session_info()
    if info is not None:
        key, data, name = info["digest"], info["data"], info.get("name", "")
    else:
        data, name = groundtruth.gallery_bytes(), groundtruth.GALLERY_NAME
        key = content_id(data)
    try:
        return CompareGT(key, name, groundtruth.ground_truth(key, data, name))
    except GroundTruthError:
        return None


def runtime_table(rf: RunFrame, threshold: float) -> tuple[pd.DataFrame, CompareGT | None]:
    """runviews.runtime_rows with AP, eager AP and ΔAP (NaN where the series' images have no ground truth), and the
    ground truth used (None without runtime series or a usable ground truth)."""
    rows = runviews.runtime_rows(rf, threshold)
    gt = compare_ground_truth() if len(rows) else None
    if gt is None:
        return rows, None
    return agreement.with_ap(rows, memo(rf, _runtime_ap, gt)), gt


def _runtime_ap(rf: RunFrame, gt: CompareGT) -> dict[str, tuple[float, float]]:
    refs = agreement.references(rf.inferences)
    models = sorted(set(refs) | set(refs.values()))
    return agreement.ap_against_eager(gt.gt, rf.inferences, queries.boxes(rf, 0.0, models))


def card_with_ap(card: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """The model card with CARD_AP_COLUMNS when any runtime series has an AP: a non-eager series gets its AP, its
    eager reference's and ΔAP; an eager reference its AP on those images. Unchanged without ground truth."""
    if not agreement.has_ap(table):
        return card
    out = card.copy()
    measured = table.dropna(subset=["ap", "ap_eager"])
    for column in CARD_AP_COLUMNS.values():
        out[column] = np.nan
    for row in measured.itertuples(index=False):
        own = out["model"] == row.series
        out.loc[own, list(CARD_AP_COLUMNS.values())] = [row.ap, row.ap_eager, row.ap_diff]
        reference = (out["model"] == row.reference) & out[CARD_AP_COLUMNS["ap"]].isna()
        out.loc[reference, CARD_AP_COLUMNS["ap"]] = row.ap_eager
    return out
