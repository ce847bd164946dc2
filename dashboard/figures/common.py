"""Shared by every chart family: colours, safe names, the untrained mark, empty figures, small table helpers."""

from __future__ import annotations

import html
import math
import zlib
from collections.abc import Collection, Iterable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from core.config import HEADLINE_MODELS, UNTRAINED_MARK
from core.models import short_name
from dashboard.views import untrained_models

CLASS_PALETTE: tuple[str, ...] = tuple(qualitative.Dark24 + qualitative.Light24)
MODEL_PALETTE: tuple[str, ...] = tuple(qualitative.Plotly)
STAGE_COLORS: dict[str, str] = {"preprocess_ms": "#9FB4CC", "inference_ms": "#3366CC", "postprocess_ms": "#F2A541"}
STAGE_NAMES: dict[str, str] = {
    "preprocess_ms": "preprocess",
    "inference_ms": "inference",
    "postprocess_ms": "postprocess",
}
UNTRAINED_ANNOTATION_NAME = "untrained"

# --- colours and marks -------------------------------------------------------------------------------------------


def plain(text: object) -> str:
    """User-derived text (file names, class names) made safe for Plotly, which renders a subset of HTML."""
    return html.escape(str(text), quote=False)


def plain_array(values: Iterable[object]) -> np.ndarray:
    """`plain` of every value, as an object array, without a Python call per value (Plotly takes numpy arrays as
    they are; a list of thousands of lists it validates element by element)."""
    text = pd.Series(list(values) if not isinstance(values, pd.Series) else values, dtype=object).astype(str)
    for char, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):  # html.escape(quote=False)
        text = text.str.replace(char, entity, regex=False)
    return text.to_numpy(dtype=object)


def display_name(model: object) -> str:
    """The compact name charts show on tight axes and legends (`core.models.short_name`), safe for Plotly; hover
    texts carry the full name."""
    return plain(short_name(str(model)))


def _stable_index(key: str, n: int) -> int:
    return zlib.crc32(str(key).encode("utf-8")) % n


def class_color(label: str) -> str:
    """One colour per class label, the same for every model, figure and session."""
    return CLASS_PALETTE[_stable_index(label, len(CLASS_PALETTE))]


def model_color(model: str) -> str:
    """One colour per model; the headline models get their own colours, the rest a stable hash."""
    if model in HEADLINE_MODELS:
        return MODEL_PALETTE[HEADLINE_MODELS.index(model) % len(MODEL_PALETTE)]
    rest = MODEL_PALETTE[len(HEADLINE_MODELS) :] or MODEL_PALETTE
    return rest[_stable_index(model, len(rest))]


def any_untrained(*frames: pd.DataFrame) -> bool:
    return any(untrained_models(df) for df in frames)


def mark_untrained(fig: go.Figure, untrained: bool) -> go.Figure:
    """Add a visible warning that the figure shows the output of untrained weights (no-op when `untrained` is false)."""
    if untrained and not any(a.name == UNTRAINED_ANNOTATION_NAME for a in fig.layout.annotations):
        fig.add_annotation(
            name=UNTRAINED_ANNOTATION_NAME,
            text=f"⚠ {UNTRAINED_MARK}",
            xref="paper",
            yref="paper",
            x=0.5,
            y=1.0,
            xanchor="center",
            yanchor="bottom",
            showarrow=False,
            font={"color": "#B00020", "size": 14},
            bgcolor="rgba(255, 235, 238, 0.9)",
            bordercolor="#B00020",
            borderwidth=1,
        )
    return fig


def empty_figure(message: str, *, untrained: bool = False) -> go.Figure:
    """A blank figure that says why there is nothing to show."""
    fig = go.Figure()
    fig.add_annotation(
        name="empty", text=message, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False, font={"size": 16}
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=300, margin={"l": 20, "r": 20, "t": 40, "b": 20})
    return mark_untrained(fig, untrained)


# --- small table helpers -----------------------------------------------------------------------------------------


def short_axis(fig: go.Figure, models: Sequence[str], axis: str = "x") -> None:
    """A category axis of full model names that shows their display names (hover keeps the full name)."""
    update = fig.update_xaxes if axis == "x" else fig.update_yaxes
    update(type="category", tickmode="array", tickvals=list(models), ticktext=[display_name(m) for m in models])


def models_in(df: pd.DataFrame) -> list[str]:
    """Models in order of first appearance (the order the user picked them in)."""
    if df.empty:
        return []
    return [str(m) for m in dict.fromkeys(df["model"].dropna())]


def successful(inferences: pd.DataFrame) -> pd.DataFrame:
    """Rows of images that were processed (empty or missing `error`)."""
    if inferences.empty:
        return inferences
    return inferences[inferences["error"].fillna("").astype(str).str.strip() == ""]


def at_or_above(detections: pd.DataFrame, threshold: float) -> pd.DataFrame:
    return detections[detections["score"] >= threshold]


def percentile(values: Iterable[float], q: float) -> float:
    arr = np.asarray(list(values), dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(np.percentile(arr, q)) if arr.size else math.nan


LOG_SCALE_SPREAD = 20.0  # latencies spanning more than this factor get a log axis (else the fast model is a flat line)


def log_ticks(low: float, high: float) -> list[float]:
    """Tick values at 1-2-5 per decade covering [low, high] (only the decades when that gives more than 12)."""
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 or high <= 0:
        return []
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    decades = [10.0**k for k in range(first, last + 1)]
    ticks = [d * m for d in decades for m in (1, 2, 5)]
    inside = [t for t in ticks if low / 1.5 <= t <= high * 1.5]
    if len(inside) > 12:
        inside = [t for t in decades if low / 10 <= t <= high * 10]
    return inside


def latency_axis(fig: go.Figure, values: pd.Series, axis: str = "y") -> None:
    """Log scale when latencies span more than LOG_SCALE_SPREAD x, else linear from zero.

    A log axis gets labelled ticks at 1-2-5 per decade only (plotly's default labels every minor digit when zoomed,
    a clutter of overlapping numbers), with unlabelled minor grid lines between them.
    """
    positive = values[values > 0].dropna()
    log = len(positive) > 0 and positive.max() / positive.min() > LOG_SCALE_SPREAD
    update = fig.update_yaxes if axis == "y" else fig.update_xaxes
    if log:
        ticks = log_ticks(float(positive.min()), float(positive.max()))
        update(
            type="log",
            title_text="total ms (log scale)",
            tickmode="array",
            tickvals=ticks,
            ticktext=[f"{t:g}" for t in ticks],
            minor={"showgrid": True, "gridcolor": "rgba(0, 0, 0, 0.04)"},
        )
    else:
        update(rangemode="tozero")


def untrained_flag(untrained: bool | Collection[str], labels: Iterable[str]) -> bool:
    """`untrained` as given (bool), or whether any of `labels` is in it (a collection of untrained labels)."""
    if isinstance(untrained, bool):
        return untrained
    marked = set(untrained)
    return any(label in marked for label in labels)
