"""Derived tables the pages show (pure pandas, no widgets): per-image summaries, sorting, counts."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from core.compare.matching import Agreement, compare_models, latest_run
from core.config import WEIGHTS_UNTRAINED
from core.records import models_in

GALLERY_IMAGE_KEY = "gallery_image"  # the image the Gallery shows; other pages set it to open an image there
COMPARE_TAB_KEY = "cmp_tab"  # the Compare tab open (kept for the session)
COMPARE_TABS = ("Speed", "Scores and classes", "Agreement", "Runtimes")  # Runtimes only with runtime series

# Sort options of the Gallery: label -> column of runviews.image_table.
SORT_KEYS: dict[str, str] = {
    "name": "image_name",
    "detections": "detections",
    "latency": "latency_ms",
    "disagreement": "disagreement",
    "errors": "errors",
}


def sort_images(table: pd.DataFrame, key: str, descending: bool) -> pd.DataFrame:
    """Sort the image table by a SORT_KEYS label (missing values last)."""
    return table.sort_values(SORT_KEYS[key], ascending=not descending, na_position="last", kind="stable")


def summary(row: object) -> str:
    """'3 boxes, 12 ms' style caption of an image_table row."""
    latency = getattr(row, "latency_ms", float("nan"))
    text = f"{int(row.detections)} boxes"
    if latency == latency:  # not NaN
        text += f", {latency:.0f} ms"
    if int(getattr(row, "errors", 0) or 0):
        text += f", {int(row.errors)} failed"
    return text


def untrained_models(inf: pd.DataFrame, models: Sequence[str] | None = None) -> list[str]:
    """Models (among `models`, if given) with any row run on untrained weights, in order of first appearance."""
    if inf.empty or "weights" not in inf:
        return []
    rows = inf[inf["weights"].fillna("") == WEIGHTS_UNTRAINED]
    names = models_in(rows)
    return [m for m in names if models is None or m in models]


def latency_caption(inf: pd.DataFrame) -> str | None:
    """What a latency chart's caption must say about untrained weights (None when no model ran untrained): latency
    charts carry no untrained mark, since the timings of random weights are real."""
    untrained = untrained_models(inf)
    if not untrained:
        return None
    return (
        f"Includes {', '.join(untrained)} with {WEIGHTS_UNTRAINED} weights: their timings are real, but a trained "
        "model's postprocessing time can differ (it keeps a different number of boxes)."
    )


def agreement_metrics(agreement: Agreement) -> dict[str, tuple[str, str]]:
    """The headline numbers of an agreement: label -> (value formatted, help). Labels stay short (they share a row of
    five at 1280 px): "Only in A" names its model in the help ('n/a' where nothing matched)."""
    share, iou = agreement.agreement, agreement.mean_iou
    a, b = agreement.model_a, agreement.model_b
    return {
        "Both": (str(agreement.both), "Boxes both models found: same label, matched one to one"),
        "Only in A": (str(agreement.only_a), f"Boxes only {a} (Model A) found"),
        "Only in B": (str(agreement.only_b), f"Boxes only {b} (Model B) found"),
        "Agreement": ("n/a" if share != share else f"{share:.0%}", "Both / (both + only in A + only in B)"),
        "Mean IoU": ("n/a" if iou != iou else f"{iou:.2f}", "Mean IoU of the matched pairs"),
    }


def image_names(inf: pd.DataFrame) -> dict[str, str]:
    """image_id -> image name."""
    return dict(zip(inf["image_id"].astype(str), inf["image_name"].astype(str), strict=False))


def selected_image(event: object) -> str | None:
    """The image id of the first point selected in a speed-versus-count chart (customdata[0]), if any."""
    try:
        points = event.selection.points  # type: ignore[attr-defined]
    except AttributeError:
        try:
            points = event["selection"]["points"]  # type: ignore[index]
        except (KeyError, TypeError):
            return None
    for point in points or []:
        custom = point.get("customdata") if isinstance(point, dict) else None
        if custom:
            return str(custom[0] if isinstance(custom, (list, tuple)) else custom)
    return None


def run_delta(
    inf_a: pd.DataFrame, det_a: pd.DataFrame, inf_b: pd.DataFrame, det_b: pd.DataFrame, threshold: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run A against run B, model by model, on the images both processed: (per image, per model).

    Per image: latency A/B and delta, boxes at or above the threshold in A/B, and same-label boxes matched between the
    runs (IoU >= 0.5) with those only in A or only in B. Per model: medians and the summed box differences.
    """
    keys = ["image_id", "model"]
    ok_a = inf_a[inf_a["error"] == ""].drop_duplicates(keys, keep="last")
    ok_b = inf_b[inf_b["error"] == ""].drop_duplicates(keys, keep="last")
    both = ok_a[[*keys, "image_name", "total_ms"]].merge(ok_b[[*keys, "total_ms"]], on=keys, suffixes=("_a", "_b"))
    rows = []
    for model, part in both.groupby("model", sort=False):
        a = latest_run(det_a[det_a["model"] == model]).assign(model="A")
        b = latest_run(det_b[det_b["model"] == model]).assign(model="B")
        agreement = compare_models(pd.concat([a, b]), "A", "B", threshold=threshold, image_ids=part["image_id"])
        per_image = agreement.per_image.set_index("image_id")
        for r in part.itertuples(index=False):
            m = per_image.loc[r.image_id] if r.image_id in per_image.index else None
            rows.append({
                "model": model, "image_id": r.image_id, "image_name": r.image_name,
                "total_ms_a": r.total_ms_a, "total_ms_b": r.total_ms_b, "delta_ms": r.total_ms_b - r.total_ms_a,
                "boxes_a": int(m["both"] + m["only_a"]) if m is not None else 0,
                "boxes_b": int(m["both"] + m["only_b"]) if m is not None else 0,
                "matched": int(m["both"]) if m is not None else 0,
                "only_a": int(m["only_a"]) if m is not None else 0,
                "only_b": int(m["only_b"]) if m is not None else 0,
            })  # fmt: skip
    per_image = pd.DataFrame(rows, columns=PER_IMAGE_DELTA_COLUMNS)
    per_model = (
        per_image.groupby("model", sort=False)
        .agg(
            images=("image_id", "size"),
            median_ms_a=("total_ms_a", "median"),
            median_ms_b=("total_ms_b", "median"),
            matched=("matched", "sum"),
            only_a=("only_a", "sum"),
            only_b=("only_b", "sum"),
        )
        .reset_index()
    )
    per_model["median_delta_pct"] = 100 * (per_model["median_ms_b"] / per_model["median_ms_a"] - 1)
    return per_image, per_model


PER_IMAGE_DELTA_COLUMNS = [
    "model", "image_id", "image_name", "total_ms_a", "total_ms_b", "delta_ms",
    "boxes_a", "boxes_b", "matched", "only_a", "only_b",
]  # fmt: skip


NOT_REVIEWED = "not reviewed"


def review_runs(inf: pd.DataFrame, viewed_run: str | None) -> dict[str, str]:
    """image_id -> the run its reviews belong to: the viewed stored run, else the image's latest run in the session."""
    if inf.empty:
        return {}
    if viewed_run:
        return dict.fromkeys(inf["image_id"].astype(str), viewed_run)
    latest = inf.groupby("image_id")["run_id"].max()
    return {str(k): str(v) for k, v in latest.items()}


def with_verdicts(table: pd.DataFrame, reviews: pd.DataFrame) -> pd.DataFrame:
    """Add each image's latest verdict (any reviewer) as `verdict`, NOT_REVIEWED when none."""
    table = table.copy()
    if reviews.empty:
        table["verdict"] = NOT_REVIEWED
        return table
    latest = reviews.sort_values("created_at", kind="stable").groupby("image_id")["verdict"].last()
    table["verdict"] = table["image_id"].map(latest).fillna(NOT_REVIEWED).astype(str)
    return table
