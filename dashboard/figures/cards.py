"""Model cards: published figures joined with measured latency, and accuracy against speed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.config import SERIES_SEP, WEIGHTS_UNTRAINED
from core.inference.series import base_model, split_series
from core.records import models_in
from dashboard.figures.common import (
    display_name,
    empty_figure,
    mark_untrained,
    model_color,
    percentile,
    plain,
    successful,
)

MODEL_CARD_COLUMNS: tuple[str, ...] = (
    "model", "title", "runtime", "weights", "device", "precision", "n_images", "n_errors",
    "median_total_ms", "p95_total_ms", "median_inference_ms", "p95_inference_ms",
    "box_map", "gflops", "params", "file_size_mb",
)  # fmt: skip
_META_COLUMNS: tuple[str, ...] = ("model", "title", "box_map", "gflops", "params", "file_size_mb")
_CARD_DTYPES: dict[str, str] = {  # every other column of the card is float64
    "model": "string", "title": "string", "runtime": "string", "weights": "string", "device": "string",
    "precision": "string", "n_images": "int64", "n_errors": "int64",
}  # fmt: skip


def _joined(values: pd.Series) -> str:
    return ", ".join(str(v) for v in values.dropna().unique())  # in order of appearance, as pd.unique keeps it


def model_card(inferences: pd.DataFrame, meta: pd.DataFrame) -> pd.DataFrame:
    """Per measured series: published figures from `meta` (model, title, box_map, gflops, params, file_size_mb) of
    its registry model joined with measured median / p95 of total_ms and inference_ms over successful images,
    n_images, n_errors, and the runtime, device, precision and weights it ran with (comma-joined when several).
    A runtime variant (`model@runtime`, core.inference.runtimes) gets its own card, titled with its runtime.
    """
    models = models_in(inferences)
    ok = successful(inferences)
    rows = []
    for model in models:
        every = inferences[inferences["model"] == model]
        part = ok[ok["model"] == model]
        rows.append(
            {
                "model": model,
                "runtime": _joined(every["runtime"]) if "runtime" in every else split_series(model)[1],
                "weights": _joined(every["weights"]),
                "device": _joined(every["device"]),
                "precision": _joined(every["precision"]),
                "n_images": len(part),
                "n_errors": len(every) - len(part),
                "median_total_ms": percentile(part["total_ms"], 50),
                "p95_total_ms": percentile(part["total_ms"], 95),
                "median_inference_ms": percentile(part["inference_ms"], 50),
                "p95_inference_ms": percentile(part["inference_ms"], 95),
            }
        )
    measured = pd.DataFrame(rows, columns=[c for c in MODEL_CARD_COLUMNS if c not in _META_COLUMNS or c == "model"])
    meta = meta.reindex(columns=list(_META_COLUMNS)).drop_duplicates("model").rename(columns={"model": "base_"})
    measured["base_"] = measured["model"].map(base_model)
    card = measured.merge(meta, on="base_", how="left")
    suffix = card["model"].map(lambda m: "" if base_model(m) == m else f" ({str(m).split(SERIES_SEP, 1)[1]})")
    card["title"] = (
        card["title"].fillna(card["model"]).where(suffix == "", card["title"].fillna(card["base_"]) + suffix)
    )
    card = card.reindex(columns=list(MODEL_CARD_COLUMNS))
    # Published figures describe torchvision's default weights; they say nothing of untrained or other weights.
    card.loc[card["weights"] != "default", "box_map"] = np.nan
    return card.astype({c: _CARD_DTYPES.get(c, "float64") for c in MODEL_CARD_COLUMNS})


def accuracy_vs_speed(card: pd.DataFrame) -> go.Figure:
    """Published COCO box mAP (y) against measured median total latency (x), one labelled point per model."""
    weights = card["weights"].fillna("") if "weights" in card else pd.Series(dtype="string")
    untrained = bool(weights.astype(str).str.split(", ").apply(lambda ws: WEIGHTS_UNTRAINED in ws).any())
    points = card.dropna(subset=["median_total_ms", "box_map"]) if not card.empty else card
    if points.empty:
        return empty_figure("No model with both a measured latency and a published mAP.", untrained=untrained)
    fig = go.Figure()
    for row in points.itertuples(index=False):
        model = str(row.model)
        title = str(row.title) if isinstance(row.title, str) and row.title else model
        fig.add_trace(
            go.Scatter(
                x=[float(row.median_total_ms)],
                y=[float(row.box_map)],
                mode="markers+text",
                name=display_name(model),
                text=[display_name(model)],
                textposition="top center",
                marker={"color": model_color(model), "size": 14},
                hovertemplate=f"{plain(title)} ({model})<br>median %{{x:.1f}} ms<br>box mAP %{{y:.1f}}<extra></extra>",
            )
        )
    fig.update_layout(
        title={"text": "Published accuracy against measured speed"},
        xaxis_title="median total ms (measured here)",
        yaxis_title="COCO box mAP (published)",
        showlegend=False,
    )
    fig.update_xaxes(rangemode="tozero")
    return mark_untrained(fig, untrained)
