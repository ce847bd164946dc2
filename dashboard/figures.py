"""Pure figure builders: the records tables of DESIGN.md in, plotly figures out (no streamlit here).

Conventions every builder keeps:
- one colour per class (`class_color`) and one per model (`model_color`), the same in every figure;
- a figure drawn from any row with `weights == "untrained"` carries a visible `UNTRAINED_MARK` annotation
  (`mark_untrained`); builders fed only detections take an `untrained` flag (see `untrained_models`);
- rows with a non-empty `error` are left out of latency statistics;
- empty tables (with the schema's columns) give a figure, never an exception.
"""

from __future__ import annotations

import base64
import html
import io
import math
import zlib
from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from core.config import HEADLINE_MODELS, UNTRAINED_MARK, WEIGHTS_UNTRAINED
from core.matching import Agreement

CLASS_PALETTE: tuple[str, ...] = tuple(qualitative.Dark24 + qualitative.Light24)
MODEL_PALETTE: tuple[str, ...] = tuple(qualitative.Plotly)
STAGE_COLORS: dict[str, str] = {"preprocess_ms": "#9FB4CC", "inference_ms": "#3366CC", "postprocess_ms": "#F2A541"}
STAGE_NAMES: dict[str, str] = {
    "preprocess_ms": "preprocess",
    "inference_ms": "inference",
    "postprocess_ms": "postprocess",
}
UNTRAINED_ANNOTATION_NAME = "untrained"
OVERLAY_WIDTH = 900  # nominal figure width of an overlay; its height follows the image's aspect ratio
OVERLAY_MARGIN = {"l": 0, "r": 0, "t": 40, "b": 40}
JPEG_QUALITY = 85
MODEL_CARD_COLUMNS: tuple[str, ...] = (
    "model", "title", "weights", "device", "precision", "n_images", "n_errors",
    "median_total_ms", "p95_total_ms", "median_inference_ms", "p95_inference_ms",
    "box_map", "gflops", "params", "file_size_mb",
)  # fmt: skip
_META_COLUMNS: tuple[str, ...] = ("model", "title", "box_map", "gflops", "params", "file_size_mb")
_CARD_DTYPES: dict[str, str] = {  # every other column of the card is float64
    "model": "string", "title": "string", "weights": "string", "device": "string", "precision": "string",
    "n_images": "int64", "n_errors": "int64",
}  # fmt: skip


# --- colours and marks -------------------------------------------------------------------------------------------


def plain(text: object) -> str:
    """User-derived text (file names, class names) made safe for Plotly, which renders a subset of HTML."""
    return html.escape(str(text), quote=False)


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


def untrained_models(inferences: pd.DataFrame) -> list[str]:
    """Models with any row run on untrained weights (for the `untrained` flag of detection-only builders)."""
    if inferences.empty or "weights" not in inferences:
        return []
    rows = inferences[inferences["weights"].fillna("") == WEIGHTS_UNTRAINED]
    return _models(rows)


def _any_untrained(*frames: pd.DataFrame) -> bool:
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


def _models(df: pd.DataFrame) -> list[str]:
    """Models in order of first appearance (the order the user picked them in)."""
    if df.empty:
        return []
    return [str(m) for m in dict.fromkeys(df["model"].dropna())]


def successful(inferences: pd.DataFrame) -> pd.DataFrame:
    """Rows of images that were processed (empty or missing `error`)."""
    if inferences.empty:
        return inferences
    return inferences[inferences["error"].fillna("").astype(str).str.strip() == ""]


def _above(detections: pd.DataFrame, threshold: float) -> pd.DataFrame:
    return detections[detections["score"] >= threshold]


def _percentile(values: Iterable[float], q: float) -> float:
    arr = np.asarray(list(values), dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(np.percentile(arr, q)) if arr.size else math.nan


# --- image overlay -----------------------------------------------------------------------------------------------


def image_data_uri(image: Image.Image, *, quality: int = JPEG_QUALITY) -> str:
    """The image as a base64 JPEG data URI (a compact background for `layout.images`)."""
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def display_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Size the image is shown at: its own, or scaled down so that its longer side is `max_side`."""
    scale = min(1.0, max_side / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _outline(x1: float, y1: float, x2: float, y2: float) -> tuple[list[float | None], list[float | None]]:
    """A closed rectangle with points at the corners and edge midpoints (more points to hover on), then a gap."""
    xm, ym = (x1 + x2) / 2, (y1 + y2) / 2
    xs = [x1, xm, x2, x2, x2, xm, x1, x1, x1, None]
    ys = [y1, y1, y1, ym, y2, y2, y2, ym, y1, None]
    return xs, ys


def overlay_figure(
    image: Image.Image,
    detections: pd.DataFrame,
    *,
    title: str,
    threshold: float,
    classes: Collection[str] | None = None,
    untrained: bool = False,
    max_side: int = 1024,
    uirevision: str | None = None,
) -> go.Figure:
    """The image with one model's boxes (score >= threshold, in `classes` if given): one outline trace per class.

    `detections` are in original-image pixels; the background is downscaled to `max_side` for display and the boxes
    are scaled with it. Hover shows label, score and the box size in original pixels. `uirevision` (default: the
    title) keeps zoom and legend toggles across reruns.
    """
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    width, height = image.size
    dw, dh = display_size(width, height, max_side)
    sx, sy = dw / width, dh / height
    background = (
        image if (dw, dh) == (width, height) else image.resize((dw, dh), Image.Resampling.BICUBIC, reducing_gap=3.0)
    )

    fig = go.Figure()
    boxes = _above(detections, threshold)
    if classes is not None:
        boxes = boxes[boxes["label"].isin(list(classes))]
    for raw_label, part in sorted(boxes.groupby("label", sort=False), key=lambda kv: str(kv[0])):
        color = class_color(str(raw_label))
        label = plain(raw_label)
        xs: list[float | None] = []
        ys: list[float | None] = []
        texts: list[str] = []
        hovers: list[str] = []
        for x1, y1, x2, y2, score in part[["x1", "y1", "x2", "y2", "score"]].itertuples(index=False):
            bx, by = _outline(x1 * sx, y1 * sy, x2 * sx, y2 * sy)
            xs.extend(bx)
            ys.extend(by)
            hover = f"<b>{label}</b><br>score {score:.3f}<br>{x2 - x1:.0f} × {y2 - y1:.0f} px"
            hovers.extend([hover] * len(bx))
            texts.extend([f"{label} {score:.2f}"] + [""] * (len(bx) - 1))
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines+text",
                name=label,
                legendgroup=label,
                line={"color": color, "width": 2},
                text=texts,
                textposition="top right",
                textfont={"color": color, "size": 11},
                hovertext=hovers,
                hovertemplate="%{hovertext}<extra></extra>",
                connectgaps=False,
            )
        )

    fig.add_layout_image(
        source=image_data_uri(background),
        xref="x",
        yref="y",
        x=0,
        y=0,
        sizex=dw,
        sizey=dh,
        xanchor="left",
        yanchor="top",
        sizing="stretch",
        layer="below",
    )
    axis = {"showgrid": False, "zeroline": False, "showticklabels": False, "ticks": ""}
    fig.update_xaxes(range=[0, dw], constrain="domain", **axis)
    fig.update_yaxes(range=[dh, 0], scaleanchor="x", scaleratio=1, constrain="domain", **axis)
    plot_h = round(OVERLAY_WIDTH * dh / dw)
    fig.update_layout(
        title={"text": title},
        width=OVERLAY_WIDTH,
        height=plot_h + OVERLAY_MARGIN["t"] + OVERLAY_MARGIN["b"],
        margin=OVERLAY_MARGIN,
        plot_bgcolor="white",
        showlegend=True,
        legend={"orientation": "h", "x": 0, "y": -0.01, "yanchor": "top", "title": {"text": ""}},
        uirevision=uirevision if uirevision is not None else title,
        hovermode="closest",
        dragmode="zoom",
    )
    return mark_untrained(fig, untrained)


def overlay_grid(
    image: Image.Image,
    detections: pd.DataFrame,
    models: Sequence[str],
    *,
    threshold: float,
    classes: Collection[str] | None = None,
    untrained_models: Collection[str] = (),
    max_side: int = 1024,
) -> go.Figure:
    """One image side by side for several models: same size, linked zoom and pan, one legend entry per class.

    Each panel is `overlay_figure` for one model; the panels share their axes (zooming one zooms all) and a class's
    legend entry toggles it in every panel.
    """
    models = list(models) or ["(no model)"]
    panels = [
        overlay_figure(
            image,
            detections[detections["model"] == model],
            title=model,
            threshold=threshold,
            classes=classes,
            max_side=max_side,
        )
        for model in models
    ]
    fig = make_subplots(rows=1, cols=len(models), subplot_titles=models, horizontal_spacing=0.02)
    seen: set[str] = set()
    for col, panel in enumerate(panels, start=1):
        for trace in panel.data:
            trace.showlegend = trace.name not in seen
            seen.add(trace.name)
            fig.add_trace(trace, row=1, col=col)
        background = panel.layout.images[0].to_plotly_json()
        suffix = "" if col == 1 else str(col)
        fig.add_layout_image(background | {"xref": f"x{suffix}", "yref": f"y{suffix}"})
        x_range, y_range = panel.layout.xaxis.range, panel.layout.yaxis.range
        axis = {"showgrid": False, "zeroline": False, "showticklabels": False, "ticks": ""}
        fig.update_xaxes(range=x_range, constrain="domain", matches="x" if col > 1 else None, row=1, col=col, **axis)
        fig.update_yaxes(
            range=y_range, scaleanchor=f"x{suffix}", scaleratio=1, constrain="domain",
            matches="y" if col > 1 else None, row=1, col=col, **axis,
        )  # fmt: skip
    width = OVERLAY_WIDTH if len(models) == 1 else min(1600, 620 * len(models))
    dw, dh = abs(panels[0].layout.xaxis.range[1]), abs(panels[0].layout.yaxis.range[0])
    plot_h = round(width / len(models) * dh / max(dw, 1))
    fig.update_layout(
        height=plot_h + OVERLAY_MARGIN["t"] + OVERLAY_MARGIN["b"] + 30,
        margin=OVERLAY_MARGIN | {"t": 60},
        plot_bgcolor="white",
        legend={"orientation": "h", "x": 0, "y": -0.01, "yanchor": "top"},
        uirevision="overlay",
        hovermode="closest",
        dragmode="zoom",
    )
    if untrained_models:
        shown = [m for m in models if m in set(untrained_models)]
        fig.add_annotation(
            name=UNTRAINED_ANNOTATION_NAME,
            text=f"⚠ {UNTRAINED_MARK}: {', '.join(shown)}",
            xref="paper", yref="paper", x=0.5, y=1.08, xanchor="center", yanchor="bottom", showarrow=False,
            font={"color": "#B00020", "size": 14}, bgcolor="rgba(255, 235, 238, 0.9)", bordercolor="#B00020",
        )  # fmt: skip
    return fig


# --- latency -----------------------------------------------------------------------------------------------------


def latency_box(inferences: pd.DataFrame) -> go.Figure:
    """One box per model of `total_ms` with every image as a point, and its p50 and p95 marked."""
    untrained = _any_untrained(inferences)
    ok = successful(inferences)
    models = _models(ok)
    if not models:
        return empty_figure("No processed images to time.", untrained=untrained)
    fig = go.Figure()
    p50, p95 = [], []
    for model in models:
        part = ok[ok["model"] == model]
        fig.add_trace(
            go.Box(
                y=part["total_ms"].to_numpy(dtype=float),
                x=[model] * len(part),
                name=model,
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                marker={"color": model_color(model), "size": 5, "opacity": 0.6},
                line={"color": model_color(model)},
                customdata=[[i, plain(n)] for i, n in zip(part["image_id"], part["image_name"], strict=True)],
                hovertemplate="%{customdata[1]}<br>%{y:.1f} ms<extra>%{x}</extra>",
                showlegend=False,
            )
        )
        p50.append(_percentile(part["total_ms"], 50))
        p95.append(_percentile(part["total_ms"], 95))
    for name, values, symbol in (("p50", p50, "diamond"), ("p95", p95, "triangle-up")):
        fig.add_trace(
            go.Scatter(
                x=models,
                y=values,
                name=name,
                mode="markers+text",
                marker={"symbol": symbol, "size": 11, "color": "black", "line": {"color": "white", "width": 1}},
                text=[f"{name} {v:.1f}" for v in values],
                textposition="middle right",
                hovertemplate=f"{name} %{{y:.1f}} ms<extra>%{{x}}</extra>",
            )
        )
    fig.update_layout(title={"text": "Total latency per image"}, yaxis_title="total ms", xaxis_title=None)
    _latency_axis(fig, ok["total_ms"])
    return mark_untrained(fig, untrained)


LOG_SCALE_SPREAD = 20.0  # latencies spanning more than this factor get a log axis (else the fast model is a flat line)


def _latency_axis(fig: go.Figure, values: pd.Series, axis: str = "y") -> None:
    """Log scale when latencies span more than LOG_SCALE_SPREAD x, else linear from zero."""
    positive = values[values > 0].dropna()
    log = len(positive) > 0 and positive.max() / positive.min() > LOG_SCALE_SPREAD
    update = fig.update_yaxes if axis == "y" else fig.update_xaxes
    if log:
        update(type="log", title_text="total ms (log scale)")
    else:
        update(rangemode="tozero")


def latency_medians(inferences: pd.DataFrame) -> pd.DataFrame:
    """Median of each stage per model (successful rows only), in the models' order of appearance."""
    ok = successful(inferences)
    stages = list(STAGE_COLORS)
    if ok.empty:
        return pd.DataFrame(columns=stages, dtype="float64")
    return ok.groupby("model", sort=False)[stages].median().reindex(_models(ok))


def latency_breakdown(inferences: pd.DataFrame) -> go.Figure:
    """A stacked bar per model: median preprocess, inference and postprocess time."""
    untrained = _any_untrained(inferences)
    medians = latency_medians(inferences)
    if medians.empty:
        return empty_figure("No processed images to time.", untrained=untrained)
    models = [str(m) for m in medians.index]
    fig = go.Figure()
    for stage, color in STAGE_COLORS.items():
        values = medians[stage].to_numpy(dtype=float)
        fig.add_trace(
            go.Bar(
                x=models,
                y=values,
                name=STAGE_NAMES[stage],
                marker={"color": color},
                text=[f"{v:.1f}" for v in values],
                textposition="inside",
                hovertemplate=f"{STAGE_NAMES[stage]} median %{{y:.1f}} ms<extra>%{{x}}</extra>",
            )
        )
    fig.update_layout(barmode="stack", title={"text": "Median latency by stage"}, yaxis_title="ms")
    return mark_untrained(fig, untrained)


# --- detections --------------------------------------------------------------------------------------------------


def _threshold_line(fig: go.Figure, threshold: float) -> None:
    fig.add_vline(
        x=threshold,
        line={"color": "black", "dash": "dash", "width": 1.5},
        annotation={"text": f"threshold {threshold:.2f}", "xanchor": "left"},
        name="threshold",
    )


def score_histograms(detections: pd.DataFrame, threshold: float, *, untrained: bool = False) -> go.Figure:
    """Overlaid histograms of box scores per model, with the threshold as a dashed vertical line."""
    models = _models(detections)
    if not models:
        return empty_figure("No detections.", untrained=untrained)
    fig = go.Figure()
    for model in models:
        scores = detections.loc[detections["model"] == model, "score"].to_numpy(dtype=float)
        fig.add_trace(
            go.Histogram(
                x=scores,
                name=model,
                xbins={"start": 0.0, "end": 1.0, "size": 0.02},
                marker={"color": model_color(model)},
                opacity=0.6,
                hovertemplate="score %{x}<br>%{y} boxes<extra>" + model + "</extra>",
            )
        )
    _threshold_line(fig, threshold)
    fig.update_layout(barmode="overlay", title={"text": "Score distribution"}, xaxis_title="score", yaxis_title="boxes")
    fig.update_xaxes(range=[0, 1])
    return mark_untrained(fig, untrained)


def counts_above(inferences: pd.DataFrame, detections: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Successful inference rows with `count`: their boxes with score >= threshold (0 when none)."""
    ok = successful(inferences)
    keys = ["run_id", "image_id", "model"]
    counts = _above(detections, threshold).groupby(keys).size().rename("count").reset_index()
    out = ok.merge(counts, on=keys, how="left")
    out["count"] = out["count"].fillna(0).astype("int64")
    return out


def speed_vs_count(inferences: pd.DataFrame, detections: pd.DataFrame, threshold: float) -> go.Figure:
    """One point per (image, model): boxes above threshold (x) against total latency (y).

    Each point's customdata is `[image_id, image_name, model, run_id]`, so a selection event names the image.
    """
    untrained = _any_untrained(inferences)
    table = counts_above(inferences, detections, threshold)
    models = _models(table)
    if not models:
        return empty_figure("No processed images.", untrained=untrained)
    fig = go.Figure()
    for model in models:
        part = table[table["model"] == model]
        fig.add_trace(
            go.Scatter(
                x=part["count"].to_numpy(),
                y=part["total_ms"].to_numpy(dtype=float),
                mode="markers",
                name=model,
                marker={"color": model_color(model), "size": 10, "opacity": 0.8},
                customdata=[
                    [i, plain(n), m, r]
                    for i, n, m, r in zip(
                        part["image_id"], part["image_name"], part["model"], part["run_id"], strict=True
                    )
                ],
                hovertemplate="%{customdata[1]}<br>%{x} boxes<br>%{y:.1f} ms<extra>%{customdata[2]}</extra>",
            )
        )
    fig.update_layout(
        title={"text": f"Latency against detections (score ≥ {threshold:.2f})"},
        xaxis_title="detections above threshold",
        yaxis_title="total ms",
        clickmode="event+select",
    )
    fig.update_xaxes(rangemode="tozero")
    _latency_axis(fig, successful(inferences)["total_ms"])
    return mark_untrained(fig, untrained)


def class_counts(detections: pd.DataFrame, threshold: float, *, untrained: bool = False) -> go.Figure:
    """Boxes above threshold per class, grouped by model (classes by decreasing total)."""
    above = _above(detections, threshold)
    models = _models(above)
    if not models:
        return empty_figure(f"No detections with score ≥ {threshold:.2f}.", untrained=untrained)
    counts = above.groupby(["label", "model"]).size().unstack("model", fill_value=0)
    counts = counts.loc[counts.sum(axis=1).sort_values(ascending=False, kind="stable").index]
    labels = [plain(label) for label in counts.index]
    fig = go.Figure()
    for model in models:
        fig.add_trace(
            go.Bar(
                x=labels,
                y=counts[model].to_numpy(),
                name=model,
                marker={"color": model_color(model)},
                hovertemplate="%{x}: %{y}<extra>" + model + "</extra>",
            )
        )
    fig.update_layout(
        barmode="group", title={"text": f"Detections per class (score ≥ {threshold:.2f})"}, yaxis_title="boxes"
    )
    return mark_untrained(fig, untrained)


def mean_count_curve(
    detections: pd.DataFrame, inferences: pd.DataFrame, thresholds: np.ndarray | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """model -> (thresholds, mean boxes per successful image with score >= threshold)."""
    thresholds = np.linspace(0.0, 1.0, 101) if thresholds is None else np.asarray(thresholds, dtype=float)
    ok = successful(inferences)
    keys = ["run_id", "image_id", "model"]
    dets = detections.merge(ok[keys].drop_duplicates(), on=keys, how="inner") if not ok.empty else detections.iloc[:0]
    curves = {}
    for model in _models(ok):
        n_images = int((ok["model"] == model).sum())
        scores = np.sort(dets.loc[dets["model"] == model, "score"].to_numpy(dtype=float))
        above = scores.size - np.searchsorted(scores, thresholds, side="left")
        curves[model] = (thresholds, above / n_images)
    return curves


def count_vs_threshold(
    detections: pd.DataFrame, inferences: pd.DataFrame, *, threshold: float | None = None
) -> go.Figure:
    """Mean detections per image against the score threshold (0..1), one line per model.

    Divides by each model's number of successfully processed images; `threshold`, if given, is drawn as a line.
    """
    untrained = _any_untrained(inferences)
    curves = mean_count_curve(detections, inferences)
    if not curves:
        return empty_figure("No processed images.", untrained=untrained)
    fig = go.Figure()
    for model, (xs, ys) in curves.items():
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                name=model,
                line={"color": model_color(model), "width": 2},
                hovertemplate="score ≥ %{x:.2f}: %{y:.2f} per image<extra>" + model + "</extra>",
            )
        )
    if threshold is not None:
        _threshold_line(fig, threshold)
    fig.update_layout(
        title={"text": "Detections per image against threshold"},
        xaxis_title="score threshold",
        yaxis_title="mean detections per image",
    )
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(rangemode="tozero")
    return mark_untrained(fig, untrained)


def agreement_figure(
    agreement: Agreement, *, names: Mapping[str, str] | None = None, untrained: bool = False
) -> go.Figure:
    """Stacked bars per image: boxes both models found, found only by A, only by B.

    `names` maps image ids to display names for the x tick labels; bars carry the image id in customdata.
    """
    per_image = agreement.per_image
    if per_image.empty:
        return empty_figure("No images to compare.", untrained=untrained)
    ids = [str(i) for i in per_image["image_id"]]
    names = names or {}
    ticks = [plain(names.get(i, i[:12])) for i in ids]
    series = (
        ("both", "both", "#2CA02C"),
        ("only_a", f"only {agreement.model_a}", model_color(agreement.model_a)),
        ("only_b", f"only {agreement.model_b}", model_color(agreement.model_b)),
    )
    fig = go.Figure()
    for column, name, color in series:
        fig.add_trace(
            go.Bar(
                x=ids,
                y=per_image[column].to_numpy(),
                name=name,
                marker={"color": color},
                customdata=[[i, plain(names.get(i, i))] for i in ids],
                hovertemplate="%{customdata[1]}<br>" + name + ": %{y}<extra></extra>",
            )
        )
    share = "n/a" if math.isnan(agreement.agreement) else f"{agreement.agreement:.0%}"
    fig.update_layout(
        barmode="stack",
        title={
            "text": f"Agreement {agreement.model_a} vs {agreement.model_b}: {share} "
            f"(score ≥ {agreement.threshold:.2f}, IoU ≥ {agreement.iou:.2f})"
        },
        yaxis_title="boxes",
    )
    fig.update_xaxes(type="category", tickmode="array", tickvals=ids, ticktext=ticks)
    return mark_untrained(fig, untrained)


# --- models ------------------------------------------------------------------------------------------------------


def _joined(values: pd.Series) -> str:
    return ", ".join(str(v) for v in dict.fromkeys(values.dropna()))


def model_card(inferences: pd.DataFrame, meta: pd.DataFrame) -> pd.DataFrame:
    """Per measured model: published figures from `meta` (model, title, box_map, gflops, params, file_size_mb) joined
    with measured median / p95 of total_ms and inference_ms over successful images, n_images, n_errors, and the
    device, precision and weights it ran with (comma-joined when several).
    """
    models = _models(inferences)
    ok = successful(inferences)
    rows = []
    for model in models:
        every = inferences[inferences["model"] == model]
        part = ok[ok["model"] == model]
        rows.append(
            {
                "model": model,
                "weights": _joined(every["weights"]),
                "device": _joined(every["device"]),
                "precision": _joined(every["precision"]),
                "n_images": len(part),
                "n_errors": len(every) - len(part),
                "median_total_ms": _percentile(part["total_ms"], 50),
                "p95_total_ms": _percentile(part["total_ms"], 95),
                "median_inference_ms": _percentile(part["inference_ms"], 50),
                "p95_inference_ms": _percentile(part["inference_ms"], 95),
            }
        )
    measured = pd.DataFrame(rows, columns=[c for c in MODEL_CARD_COLUMNS if c not in _META_COLUMNS or c == "model"])
    meta = meta.reindex(columns=list(_META_COLUMNS)).drop_duplicates("model")
    card = measured.merge(meta, on="model", how="left").reindex(columns=list(MODEL_CARD_COLUMNS))
    card["title"] = card["title"].fillna(card["model"])
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
                name=model,
                text=[title],
                textposition="top center",
                marker={"color": model_color(model), "size": 14},
                hovertemplate=f"{title}<br>median %{{x:.1f}} ms<br>box mAP %{{y:.1f}}<extra></extra>",
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


# --- ground-truth evaluation -------------------------------------------------------------------------------------

OUTCOME_STYLES: dict[str, tuple[str, str, str]] = {  # outcome -> (legend name, colour, line dash)
    "tp": ("true positive", "#2CA02C", "solid"),
    "fp": ("false positive", "#D62728", "solid"),
    "fn": ("missed ground truth", "#FF7F0E", "dash"),
    "ignored": ("ignored (crowd)", "#7F7F7F", "dot"),
}
PARETO_NAME = "Pareto front"


def _untrained_flag(untrained: bool | Collection[str], labels: Iterable[str]) -> bool:
    """`untrained` as given (bool), or whether any of `labels` is in it (a collection of untrained labels)."""
    if isinstance(untrained, bool):
        return untrained
    marked = set(untrained)
    return any(label in marked for label in labels)


def pr_curves(
    curves: Mapping[str, pd.DataFrame], *, title: str = "Precision-recall", untrained: bool | Collection[str] = False
) -> go.Figure:
    """One precision-recall line per model from `core.evaluate.pr_curve` frames (columns recall, precision).

    Precision is NaN where there is nothing to measure (no GT for the class): those points are gaps. `untrained` is a
    flag or the labels made with untrained weights.
    """
    flag = _untrained_flag(untrained, curves)
    shown = {k: v for k, v in curves.items() if v["precision"].notna().any()}
    if not shown:
        return empty_figure("No precision-recall curve: no ground-truth boxes to recall.", untrained=flag)
    fig = go.Figure()
    for label, curve in shown.items():
        name = plain(label)
        fig.add_trace(
            go.Scatter(
                x=curve["recall"].to_numpy(dtype=float),
                y=curve["precision"].to_numpy(dtype=float),
                mode="lines",
                name=name,
                line={"color": model_color(str(label)), "width": 2, "shape": "hv"},
                hovertemplate="recall %{x:.2f}<br>precision %{y:.3f}<extra>" + name + "</extra>",
            )
        )
    fig.update_layout(title={"text": plain(title)}, xaxis_title="recall", yaxis_title="precision")
    fig.update_xaxes(range=[0, 1.02])
    fig.update_yaxes(range=[0, 1.05])
    return mark_untrained(fig, flag)


def per_class_ap(
    per_class: Mapping[str, Mapping[str, float]], *, untrained: bool | Collection[str] = False
) -> go.Figure:
    """AP@[.5:.95] per class, one group of bars per class and one bar per model (classes without GT left out).

    `per_class`: model label -> {class name -> AP} (`Metrics.per_class`, NaN for classes without GT).
    """
    flag = _untrained_flag(untrained, per_class)
    table = pd.DataFrame({label: pd.Series(values, dtype="float64") for label, values in per_class.items()})
    table = table.dropna(how="all")
    if table.empty:
        return empty_figure("No class with ground-truth boxes.", untrained=flag)
    table = table.loc[table.mean(axis=1).sort_values(ascending=False, kind="stable").index]
    classes = [plain(c) for c in table.index]
    fig = go.Figure()
    for label in table.columns:
        name = plain(label)
        fig.add_trace(
            go.Bar(
                x=classes,
                y=table[label].to_numpy(dtype=float),
                name=name,
                marker={"color": model_color(str(label))},
                hovertemplate="%{x}: AP %{y:.3f}<extra>" + name + "</extra>",
            )
        )
    fig.update_layout(barmode="group", title={"text": "AP per class (IoU 0.50:0.95)"}, yaxis_title="AP")
    fig.update_yaxes(range=[0, 1.05])
    return mark_untrained(fig, flag)


def pareto_front(points: pd.DataFrame, *, x: str = "median_total_ms", y: str = "AP") -> pd.Series:
    """True for the points no other point dominates (lower or equal `x` and higher or equal `y`, one strictly).

    Points without a finite x or y are never on the front.
    """
    xs = points[x].to_numpy(dtype=float)
    ys = points[y].to_numpy(dtype=float)
    valid = np.isfinite(xs) & np.isfinite(ys)
    front = valid.copy()
    for i in np.flatnonzero(valid):
        better = valid & (xs <= xs[i]) & (ys >= ys[i]) & ((xs < xs[i]) | (ys > ys[i]))
        front[i] = not better.any()
    return pd.Series(front, index=points.index, name="pareto")


def frontier(points: pd.DataFrame, *, untrained: bool | Collection[str] = False) -> go.Figure:
    """Measured AP (y) against measured median total latency (x): one point per (model, weights, device, precision),
    with the Pareto front (nothing both faster and more accurate) drawn as a line through its points.

    `points`: columns label, model, AP, median_total_ms (as `dashboard.evaluation.frontier_points`).
    """
    flag = _untrained_flag(untrained, points["label"].astype(str) if len(points) else [])
    usable = points[np.isfinite(points["AP"].astype(float)) & np.isfinite(points["median_total_ms"].astype(float))]
    if usable.empty:
        return empty_figure("No model with both a measured AP and a measured latency.", untrained=flag)
    on_front = pareto_front(usable)
    fig = go.Figure()
    front = usable[on_front].sort_values("median_total_ms", kind="stable")
    fig.add_trace(
        go.Scatter(
            x=front["median_total_ms"].to_numpy(dtype=float),
            y=front["AP"].to_numpy(dtype=float),
            mode="lines",
            name=PARETO_NAME,
            line={"color": "black", "dash": "dash", "width": 1.5, "shape": "hv"},
            hoverinfo="skip",
        )
    )
    for row, best in zip(usable.itertuples(index=False), on_front, strict=True):
        name = plain(row.label)
        fig.add_trace(
            go.Scatter(
                x=[float(row.median_total_ms)],
                y=[float(row.AP)],
                mode="markers+text",
                name=name,
                text=[name],
                textposition="top center",
                marker={
                    "color": model_color(str(row.model)),
                    "size": 14 if best else 10,
                    "symbol": "star" if best else "circle",
                    "line": {"color": "black", "width": 1},
                },
                customdata=[["on the Pareto front" if best else "dominated"]],
                hovertemplate=name + "<br>median %{x:.1f} ms<br>AP %{y:.3f}<br>%{customdata[0]}<extra></extra>",
            )
        )
    fig.update_layout(
        title={"text": "Measured accuracy against measured speed"},
        xaxis_title="median total ms (measured here)",
        yaxis_title="AP@[.5:.95] (measured on the ground truth)",
        showlegend=False,
    )
    _latency_axis(fig, usable["median_total_ms"].astype(float), axis="x")
    fig.update_yaxes(rangemode="tozero")
    return mark_untrained(fig, flag)


def _outcome_hover(row: object, outcome: str) -> tuple[str, str]:
    """(hover text, box label) of one `match_outcomes` row."""
    label = plain(row.label)
    iou = float(row.iou)
    iou_text = f"IoU {iou:.2f}" if math.isfinite(iou) else "no same-class ground truth"
    if outcome == "fn":
        return f"<b>{label}</b><br>missed ground-truth box<br>{row.x2 - row.x1:.0f} × {row.y2 - row.y1:.0f} px", label
    score = f"{float(row.score):.2f}"
    if outcome == "tp":
        text = f"<b>{label}</b> {score}<br>true positive, {iou_text}"
    elif outcome == "fp":
        text = f"<b>{label}</b> {score}<br>false positive: {plain(row.reason)}<br>best same-class {iou_text}"
    else:
        text = f"<b>{label}</b> {score}<br>ignored: on a crowd region"
    return text, f"{label} {score}"


def outcome_overlay_grid(
    image: Image.Image,
    outcomes_by_model: Mapping[str, pd.DataFrame],
    models: Sequence[str],
    *,
    untrained_models: Collection[str] = (),
    max_side: int = 1024,
) -> go.Figure:
    """The image side by side per model with boxes coloured by their outcome against the ground truth.

    `outcomes_by_model`: model -> `core.evaluate.match_outcomes` rows of this image (already at the threshold). True
    positives green, false positives red (the reason in the hover: wrong class, duplicate, low IoU), missed
    ground-truth boxes dashed orange, boxes on crowd regions dotted grey. Same panels, linked zoom and legend as
    `overlay_grid` (one legend entry per outcome toggles it in every panel).
    """
    empty = pd.DataFrame({c: pd.Series(dtype="float64") for c in ("score", "x1", "y1", "x2", "y2")}).assign(
        model=pd.Series(dtype="string"), label=pd.Series(dtype="string")
    )
    fig = overlay_grid(image, empty, models, threshold=0.0, untrained_models=untrained_models, max_side=max_side)
    width, height = image.size
    dw, dh = display_size(width, height, max_side)
    sx, sy = dw / width, dh / height
    seen: set[str] = set()
    for col, model in enumerate(list(models) or ["(no model)"], start=1):
        frame = outcomes_by_model.get(model)
        if frame is None or frame.empty:
            continue
        for outcome, (name, color, dash) in OUTCOME_STYLES.items():
            part = frame[frame["outcome"] == outcome]
            if part.empty:
                continue
            xs: list[float | None] = []
            ys: list[float | None] = []
            texts: list[str] = []
            hovers: list[str] = []
            for row in part.itertuples(index=False):
                bx, by = _outline(row.x1 * sx, row.y1 * sy, row.x2 * sx, row.y2 * sy)
                hover, text = _outcome_hover(row, outcome)
                xs.extend(bx)
                ys.extend(by)
                hovers.extend([hover] * len(bx))
                texts.extend([text] + [""] * (len(bx) - 1))
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines+text",
                    name=name,
                    legendgroup=outcome,
                    showlegend=outcome not in seen,
                    line={"color": color, "width": 2.5 if outcome != "fn" else 2, "dash": dash},
                    text=texts,
                    textposition="top right" if outcome != "fn" else "bottom right",
                    textfont={"color": color, "size": 11},
                    hovertext=hovers,
                    hovertemplate="%{hovertext}<extra></extra>",
                    connectgaps=False,
                    meta={"outcome": outcome, "model": model},
                ),
                row=1,
                col=col,
            )
            seen.add(outcome)
    return fig
