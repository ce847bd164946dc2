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
from core.inference.models import model_names, short_name
from dashboard.views import untrained_models

CLASS_PALETTE: tuple[str, ...] = tuple(qualitative.Dark24 + qualitative.Light24)
# Plotly's ten, then two more (brown, grey-blue) and Dark2's: one colour each for the twelve registered models
MODEL_PALETTE: tuple[str, ...] = (*qualitative.Plotly, "#8C564B", "#5F7A8C", *qualitative.Dark2)
STAGE_COLORS: dict[str, str] = {"preprocess_ms": "#9FB4CC", "inference_ms": "#3366CC", "postprocess_ms": "#F2A541"}
STAGE_NAMES: dict[str, str] = {
    "preprocess_ms": "preprocess",
    "inference_ms": "inference",
    "postprocess_ms": "postprocess",
}
UNTRAINED_ANNOTATION_NAME = "untrained"
EMPTY_ANNOTATION_NAME = "empty"
UNTRAINED_COLOR = "#B00020"
UNTRAINED_MARGIN_T = 78  # px above the plot: the title, then the untrained subtitle line under it

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
    """The compact name charts show on tight axes and legends (`core.inference.models.short_name`), safe for Plotly; hover
    texts carry the full name."""
    return plain(short_name(str(model)))


def _stable_index(key: str, n: int) -> int:
    return zlib.crc32(str(key).encode("utf-8")) % n


def class_color(label: str) -> str:
    """A class label's preferred colour: the same for every model, figure and session (`class_colors` keeps it
    unless another class of the same image has it already)."""
    return CLASS_PALETTE[_stable_index(label, len(CLASS_PALETTE))]


def class_colors(labels: Iterable[str]) -> dict[str, str]:
    """One colour per class of one image, never the same for two classes (up to len(CLASS_PALETTE) classes): each
    keeps its preferred colour (`class_color`) unless an earlier class (in sorted order) has it, then takes the next
    free one in the palette."""
    taken: set[int] = set()
    out: dict[str, str] = {}
    n = len(CLASS_PALETTE)
    for label in sorted({str(x) for x in labels}):
        k = _stable_index(label, n)
        for step in range(n):
            if (k + step) % n not in taken:
                k = (k + step) % n
                break
        taken.add(k)
        out[label] = CLASS_PALETTE[k]
    return out


def model_color(model: str) -> str:
    """One colour per model, from its name alone (the same on every page and in every session): the headline models
    first, then each registered model its own colour in registry order; other series (a runtime, a checkpoint) a
    stable hash of their name."""
    known = _model_order()
    if model in known:
        return MODEL_PALETTE[known.index(model) % len(MODEL_PALETTE)]
    return MODEL_PALETTE[_stable_index(model, len(MODEL_PALETTE))]


def _model_order() -> list[str]:
    return [*HEADLINE_MODELS, *(m for m in model_names() if m not in HEADLINE_MODELS)]


def any_untrained(*frames: pd.DataFrame) -> bool:
    return any(untrained_models(df) for df in frames)


def mark_untrained(fig: go.Figure, untrained: bool) -> go.Figure:
    """Add a visible warning that the figure shows the output of untrained weights (no-op when `untrained` is
    false): a red subtitle line at the top left, just above the plot, in a top margin kept free for it (never on the
    Plotly toolbar, which sits at the top right, nor clipped)."""
    if untrained and not any(a.name == UNTRAINED_ANNOTATION_NAME for a in fig.layout.annotations):
        fig.add_annotation(
            name=UNTRAINED_ANNOTATION_NAME,
            text=f"⚠ {UNTRAINED_MARK}",
            xref="paper",
            yref="paper",
            x=0,
            y=1,
            xanchor="left",
            yanchor="bottom",
            yshift=6,
            showarrow=False,
            font={"color": UNTRAINED_COLOR, "size": 12},
        )
        top = fig.layout.margin.t
        fig.update_layout(margin_t=max(top if top is not None else 0, UNTRAINED_MARGIN_T))
    return fig


def empty_figure(message: str, *, untrained: bool = False) -> go.Figure:
    """A blank figure that says why there is nothing to show (pages show `empty_message(fig)` as a sentence
    instead of drawing it)."""
    fig = go.Figure()
    fig.add_annotation(
        name=EMPTY_ANNOTATION_NAME, text=message, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
        font={"size": 16},
    )  # fmt: skip
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=300, margin={"l": 20, "r": 20, "t": 40, "b": 20})
    return mark_untrained(fig, untrained)


def empty_message(fig: go.Figure) -> str | None:
    """The sentence of a figure that has nothing to show (`empty_figure`, or a chart with no trace that says why),
    else None."""
    if len(fig.data):
        return None
    texts = [a.text for a in fig.layout.annotations if a.name != UNTRAINED_ANNOTATION_NAME and a.text]
    return texts[0] if texts else None


# --- the app's look ------------------------------------------------------------------------------------------------

FONT_FAMILY = '"Source Sans 3", "Source Sans Pro", -apple-system, "Segoe UI", Roboto, sans-serif'  # Streamlit's own
GRID_COLOR = "#E9ECF1"
LOOK_MARGIN = {"l": 56, "r": 28, "t": 56, "b": 48}


def apply_look(fig: go.Figure) -> go.Figure:
    """The app's one look on a figure (its builder's own choices win): font, title at the top left, margins, a light
    grid, white hover labels, axes that make room for their labels (automargin), thousands separated."""
    lay = fig.layout
    margin = {k: v for k, v in LOOK_MARGIN.items() if getattr(lay.margin, k) is None}
    fig.update_layout(
        font_family=lay.font.family or FONT_FAMILY,
        font_size=lay.font.size or 13,
        font_color=lay.font.color or "#1F2937",
        hoverlabel={"bgcolor": "white", "bordercolor": "#CBD2DC", "font_size": 12, "font_family": FONT_FAMILY},
        separators=lay.separators or ".,",
        colorway=lay.colorway or MODEL_PALETTE,
        plot_bgcolor=lay.plot_bgcolor or "white",
        paper_bgcolor=lay.paper_bgcolor or "white",
        margin=margin,
    )
    if lay.title.text:
        fig.update_layout(title_x=0, title_xanchor="left", title_xref="paper", title_font_size=16)
    axis = {"gridcolor": GRID_COLOR, "zeroline": False, "automargin": True, "linecolor": "#CBD2DC"}
    fig.update_xaxes(**axis)
    fig.update_yaxes(**axis)
    labels_inside(fig)
    return fig


def labels_inside(fig: go.Figure) -> None:
    """Point labels (single-point scatter traces with text, one per model) never clipped at the plot's edges: the
    rightmost label is written to the left of its point, the leftmost to the right, none clipped by the axes."""
    labelled = [
        t for t in fig.data
        if isinstance(t, go.Scatter | go.Scattergl) and t.mode and "text" in t.mode and t.x is not None
        and len(t.x) == 1 and isinstance(t.x[0], int | float)
    ]  # fmt: skip
    if len(labelled) < 2:
        return
    xs = [float(t.x[0]) for t in labelled]
    for t, x in zip(labelled, xs, strict=True):
        if x == max(xs):
            t.textposition = "top left"
        elif x == min(xs):
            t.textposition = "top right"
        if isinstance(t, go.Scatter):
            t.cliponaxis = False


# --- small table helpers -----------------------------------------------------------------------------------------


def short_axis(fig: go.Figure, models: Sequence[str], axis: str = "x") -> None:
    """A category axis of full model names that shows their display names (hover keeps the full name)."""
    update = fig.update_xaxes if axis == "x" else fig.update_yaxes
    update(type="category", tickmode="array", tickvals=list(models), ticktext=[display_name(m) for m in models])


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


def latency_log_scale(values: pd.Series) -> bool:
    """Whether latency_axis draws these latencies on a log axis: they span more than LOG_SCALE_SPREAD x."""
    positive = values[values > 0].dropna()
    return len(positive) > 0 and bool(positive.max() / positive.min() > LOG_SCALE_SPREAD)


def latency_axis(fig: go.Figure, values: pd.Series, axis: str = "y") -> None:
    """Log scale when latencies span more than LOG_SCALE_SPREAD x, else linear from zero.

    A log axis gets labelled ticks at 1-2-5 per decade only (plotly's default labels every minor digit when zoomed,
    a clutter of overlapping numbers) and no minor grid lines (they drew dense grey bands).
    """
    positive = values[values > 0].dropna()
    update = fig.update_yaxes if axis == "y" else fig.update_xaxes
    if latency_log_scale(values):
        ticks = log_ticks(float(positive.min()), float(positive.max()))
        update(
            type="log",
            title_text="total ms (log scale)",
            tickmode="array",
            tickvals=ticks,
            ticktext=[f"{t:g}" for t in ticks],
            minor={"showgrid": False},
        )
    else:
        update(rangemode="tozero")


def untrained_flag(untrained: bool | Collection[str], labels: Iterable[str]) -> bool:
    """`untrained` as given (bool), or whether any of `labels` is in it (a collection of untrained labels)."""
    if isinstance(untrained, bool):
        return untrained
    marked = set(untrained)
    return any(label in marked for label in labels)
