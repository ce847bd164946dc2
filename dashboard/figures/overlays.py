"""Image overlays: one image with each model's boxes, side by side, optionally coloured by outcome against GT."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Collection, Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from core.config import UNTRAINED_MARK
from dashboard.figures.common import (
    UNTRAINED_ANNOTATION_NAME,
    at_or_above,
    class_color,
    class_colors,
    display_name,
    mark_untrained,
    plain,
)

OVERLAY_WIDTH = 900  # nominal figure width of an overlay; its height follows the image's aspect ratio
OVERLAY_MARGIN = {"l": 0, "r": 0, "t": 40, "b": 40}
JPEG_QUALITY = 85

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


def _outline_trace(
    boxes: list[tuple[float, float, float, float, str, str]], sx: float, sy: float, *, name: str, group: str,
    line: dict, showlegend: bool | None = None, textposition: str = "top right", meta: dict | None = None,
) -> go.Scatter:  # fmt: skip
    """One legend entry's boxes as one line trace: each (x1, y1, x2, y2, hover, text) box outlined in display pixels
    (scaled by sx, sy), its hover on every point of its outline and its text at its first corner."""
    xs: list[float | None] = []
    ys: list[float | None] = []
    texts: list[str] = []
    hovers: list[str] = []
    for x1, y1, x2, y2, hover, text in boxes:
        bx, by = _outline(x1 * sx, y1 * sy, x2 * sx, y2 * sy)
        xs.extend(bx)
        ys.extend(by)
        hovers.extend([hover] * len(bx))
        texts.extend([text] + [""] * (len(bx) - 1))
    return go.Scatter(
        x=xs, y=ys, mode="lines+text", name=name, legendgroup=group, showlegend=showlegend, line=line, text=texts,
        textposition=textposition, textfont={"color": line["color"], "size": 11}, hovertext=hovers,
        hovertemplate="%{hovertext}<extra></extra>", connectgaps=False, meta=meta,
    )  # fmt: skip


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
    colors: Mapping[str, str] | None = None,
) -> go.Figure:
    """The image with one model's boxes (score >= threshold, in `classes` if given): one outline trace per class.

    `detections` are in original-image pixels; the background is downscaled to `max_side` for display and the boxes
    are scaled with it. Hover shows label, score and the box size in original pixels. `uirevision` (default: the
    title) keeps zoom and legend toggles across reruns. `colors`: class -> colour (default `class_colors` of the
    classes drawn: no two alike).
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
    boxes = at_or_above(detections, threshold)
    if classes is not None:
        boxes = boxes[boxes["label"].isin(list(classes))]
    colors = colors or class_colors(boxes["label"].astype(str).unique())
    for raw_label, part in sorted(boxes.groupby("label", sort=False), key=lambda kv: str(kv[0])):
        color = colors.get(str(raw_label)) or class_color(str(raw_label))
        label = plain(raw_label)
        boxes_ = [
            (x1, y1, x2, y2, f"<b>{label}</b><br>score {score:.3f}<br>{x2 - x1:.0f} × {y2 - y1:.0f} px",
             f"{label} {score:.2f}")
            for x1, y1, x2, y2, score in part[["x1", "y1", "x2", "y2", "score"]].itertuples(index=False)
        ]  # fmt: skip
        fig.add_trace(_outline_trace(boxes_, sx, sy, name=label, group=label, line={"color": color, "width": 2}))

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
    shown = at_or_above(detections, threshold)
    colors = class_colors(shown["label"].astype(str).unique())  # one image: no two classes alike in any panel
    panels = [
        overlay_figure(
            image,
            detections[detections["model"] == model],
            title=model,
            threshold=threshold,
            classes=classes,
            max_side=max_side,
            colors=colors,
        )
        for model in models
    ]
    fig = make_subplots(
        rows=1, cols=len(models), subplot_titles=[display_name(m) for m in models], horizontal_spacing=0.02
    )
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
            text=f"⚠ {UNTRAINED_MARK}: {', '.join(display_name(m) for m in shown)}",
            xref="paper", yref="paper", x=0.5, y=1.08, xanchor="center", yanchor="bottom", showarrow=False,
            font={"color": "#B00020", "size": 14}, bgcolor="rgba(255, 235, 238, 0.9)", bordercolor="#B00020",
        )  # fmt: skip
    return fig


OUTCOME_STYLES: dict[str, tuple[str, str, str]] = {  # outcome -> (legend name, colour, line dash)
    "tp": ("true positive", "#2CA02C", "solid"),
    "fp": ("false positive", "#D62728", "solid"),
    "fn": ("missed ground truth", "#FF7F0E", "dash"),
    "ignored": ("ignored (crowd)", "#7F7F7F", "dot"),
}


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
            boxes_ = [(r.x1, r.y1, r.x2, r.y2, *_outcome_hover(r, outcome)) for r in part.itertuples(index=False)]
            trace = _outline_trace(
                boxes_, sx, sy, name=name, group=outcome, showlegend=outcome not in seen,
                line={"color": color, "width": 2.5 if outcome != "fn" else 2, "dash": dash},
                textposition="top right" if outcome != "fn" else "bottom right", meta={"outcome": outcome, "model": model},
            )  # fmt: skip
            fig.add_trace(trace, row=1, col=col)
            seen.add(outcome)
    return fig


HIGHLIGHT_COLOR = "#ffd400"  # error boxes opened from a TIDE bin: a thick dashed yellow outline over the class colours


def with_highlights(
    fig: go.Figure,
    image_size: tuple[int, int],
    boxes: Sequence[tuple[float, float, float, float, str]],
    *,
    col: int = 1,
    name: str = "highlighted",
    max_side: int = 1024,
) -> go.Figure:
    """`fig` (an `overlay_grid`) with `boxes` (x1, y1, x2, y2 in original pixels, hover text) outlined in panel `col`
    (1-based), scaled as the panel's image is; one legend entry `name`."""
    width, height = image_size
    dw, dh = display_size(width, height, max_side)
    sx, sy = dw / max(width, 1), dh / max(height, 1)
    xs: list[float | None] = []
    ys: list[float | None] = []
    hovers: list[str] = []
    for x1, y1, x2, y2, text in boxes:
        bx, by = _outline(x1 * sx, y1 * sy, x2 * sx, y2 * sy)
        xs.extend(bx)
        ys.extend(by)
        hovers.extend([plain(text)] * len(bx))
    if xs:
        fig.add_trace(
            go.Scatter(x=xs, y=ys, mode="lines", name=name, line={"color": HIGHLIGHT_COLOR, "width": 4, "dash": "dash"},
                       hovertext=hovers, hovertemplate="%{hovertext}<extra></extra>", connectgaps=False),
            row=1, col=col,
        )  # fmt: skip
    return fig
