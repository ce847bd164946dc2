"""Detection charts: score histograms, counts against threshold, classes, speed against count."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.records import models_in
from dashboard.figures.common import (
    any_untrained,
    at_or_above,
    display_name,
    empty_figure,
    latency_axis,
    latency_log_scale,
    mark_untrained,
    model_color,
    plain,
    plain_array,
    successful,
)

WEBGL_MIN_POINTS = 1000  # from this many points a scatter is drawn with WebGL (SVG slows down past a few thousand)
# Above MERGE_MIN_POINTS points, speed_vs_count draws one point per model and cell of a MERGE_X_CELLS x MERGE_Y_CELLS
# grid over its axes (a cell is about 2 px; a marker 10 px): what the chart shows stays, the browser draws a fraction
MERGE_MIN_POINTS = 4000
MERGE_X_CELLS, MERGE_Y_CELLS = 300, 200


def _threshold_line(fig: go.Figure, threshold: float) -> None:
    fig.add_vline(
        x=threshold,
        line={"color": "black", "dash": "dash", "width": 1.5},
        annotation={"text": f"threshold {threshold:.2f}", "xanchor": "left"},
        name="threshold",
    )


def score_histograms(
    detections: pd.DataFrame | None,
    threshold: float,
    *,
    untrained: bool = False,
    binned: pd.DataFrame | None = None,
) -> go.Figure:
    """Overlaid histograms of box scores per model, with the threshold as a dashed vertical line.

    `binned` (model, score = bin's left edge, boxes; 0.02 wide, core.analytics.queries.score_histogram) draws the
    same bars from a pre-aggregated histogram: a few hundred numbers sent instead of every score."""
    if binned is not None:
        return _score_bars(binned, threshold, untrained)
    models = models_in(detections)
    if not models:
        return empty_figure("No detections.", untrained=untrained)
    fig = go.Figure()
    for model in models:
        scores = detections.loc[detections["model"] == model, "score"].to_numpy(dtype=float)
        fig.add_trace(
            go.Histogram(
                x=scores,
                name=display_name(model),
                xbins={"start": 0.0, "end": 1.0, "size": 0.02},
                marker={"color": model_color(model)},
                opacity=0.6,
                hovertemplate="score %{x}<br>%{y} boxes<extra>" + model + "</extra>",
            )
        )
    return _score_layout(fig, threshold, untrained)


def _score_layout(fig: go.Figure, threshold: float, untrained: bool) -> go.Figure:
    """The score distribution's frame, whether its bars came from raw scores or a pre-binned histogram."""
    _threshold_line(fig, threshold)
    fig.update_layout(barmode="overlay", title={"text": "Score distribution"}, xaxis_title="score", yaxis_title="boxes")
    fig.update_xaxes(range=[0, 1])
    return mark_untrained(fig, untrained)


def _score_bars(binned: pd.DataFrame, threshold: float, untrained: bool) -> go.Figure:
    models = models_in(binned)
    if not models:
        return empty_figure("No detections.", untrained=untrained)
    fig = go.Figure()
    for model in models:
        part = binned[binned["model"] == model]
        fig.add_trace(
            go.Bar(
                x=part["score"].to_numpy(dtype=float) + 0.01,  # bar centres of the 0.02 bins
                y=part["boxes"].to_numpy(),
                width=0.02,
                name=display_name(model),
                marker={"color": model_color(model)},
                opacity=0.6,
                hovertemplate="score %{x:.2f}<br>%{y} boxes<extra>" + model + "</extra>",
            )
        )
    return _score_layout(fig, threshold, untrained)


def count_points(inferences: pd.DataFrame, detections: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """The points of speed_vs_count from records tables: successful inference rows with `count`, their boxes with
    score >= threshold (0 when none). A RunFrame gives the same table as core.analytics.queries.counts_above."""
    ok = successful(inferences)
    keys = ["run_id", "image_id", "model"]
    counts = at_or_above(detections, threshold).groupby(keys).size().rename("count").reset_index()
    out = ok.merge(counts, on=keys, how="left")
    out["count"] = out["count"].fillna(0).astype("int64")
    return out


def _point_data(part: pd.DataFrame) -> np.ndarray:
    """[image_id, image name (escaped for Plotly)] per point as one object array, with how many images the point
    stands for where points were merged: Plotly takes a numpy array as it is, where a list of lists is validated
    element by element (0.3 s at 20,000 points). The model, the same for every point of a trace, is written once in
    the hover template instead."""
    columns = [part["image_id"].astype(str).to_numpy(dtype=object), plain_array(part["image_name"])]
    if "images" in part:
        columns.append(np.array([f"{n:,} image{'s' if n > 1 else ''} in this cell" for n in part["images"]], object))
    return np.column_stack(columns)


def merge_close_points(table: pd.DataFrame, *, log: bool) -> pd.DataFrame:
    """One row per model and grid cell of the speed chart (`count` on the x axis, `total_ms` on the y axis, log10
    when `log`; MERGE_X_CELLS x MERGE_Y_CELLS cells over the table's range): the cell's first row in table order,
    with `images`, how many rows it stands for. Rows without a finite latency are dropped (they are not drawn)."""
    y = table["total_ms"].to_numpy(dtype=float)
    keep = np.isfinite(y) & ((y > 0) if log else True)
    table, y = table[keep], y[keep]
    if log:
        y = np.log10(y)
    x = table["count"].to_numpy(dtype=float)
    cells = []
    for values, n in ((x, MERGE_X_CELLS), (y, MERGE_Y_CELLS)):
        lo, span = (values.min(), np.ptp(values)) if len(values) else (0.0, 0.0)
        cells.append(np.minimum(np.floor((values - lo) / (span / n if span > 0 else 1.0)), n - 1).astype(np.int64))
    keys = pd.DataFrame({"model": table["model"].to_numpy(), "x": cells[0], "y": cells[1]})
    groups = keys.groupby(["model", "x", "y"], sort=False)
    first = (groups.cumcount() == 0).to_numpy()
    return table[first].assign(images=groups["x"].transform("size").to_numpy()[first])


def speed_vs_count(
    inferences: pd.DataFrame, detections: pd.DataFrame | None, threshold: float, *, table: pd.DataFrame | None = None
) -> go.Figure:
    """One point per (image, model): boxes above threshold (x) against total latency (y); WebGL traces
    (`go.Scattergl`) from WEBGL_MIN_POINTS points on. Above MERGE_MIN_POINTS, the points of a model that fall in one
    cell of a fine grid over the axes are drawn as one (`merge_close_points`; its hover says how many images, a
    selection opens the first), and the x axis title says how many were drawn.

    Each point's customdata is `[image_id, image_name]`, so a selection event names the image.
    `table`: the count_points table already computed (core.analytics.queries.counts_above), `detections` unused.
    """
    untrained = any_untrained(inferences)
    table = count_points(inferences, detections, threshold) if table is None else table
    models = models_in(table)
    if not models:
        return empty_figure("No processed images.", untrained=untrained)
    totals = successful(inferences)["total_ms"]  # the latency axis's scale, which the merge's grid follows
    points = len(table)
    if points > MERGE_MIN_POINTS:
        table = merge_close_points(table, log=latency_log_scale(totals))
    more = "<br>%{customdata[2]}" if "images" in table else ""
    fig = go.Figure()
    trace = go.Scattergl if len(table) >= WEBGL_MIN_POINTS else go.Scatter  # WebGL: thousands of points stay fluid
    for model in models:
        part = table[table["model"] == model]
        fig.add_trace(
            trace(
                x=part["count"].to_numpy(),
                y=part["total_ms"].to_numpy(dtype=float),
                mode="markers",
                name=display_name(model),
                marker={"color": model_color(model), "size": 10, "opacity": 0.8},
                customdata=_point_data(part),
                hovertemplate="%{customdata[1]}<br>%{x} boxes<br>%{y:.1f} ms"
                + more
                + "<extra>"
                + plain(model)
                + "</extra>",
            )
        )
    fig.update_layout(
        title={"text": f"Latency against detections (score ≥ {threshold:.2f})"},
        xaxis_title="detections above threshold"
        + (
            f" ({points:,} points drawn as {len(table):,}: overlapping ones merged, hover for counts)"
            if "images" in table
            else ""
        ),
        yaxis_title="total ms",
        clickmode="event+select",
    )
    fig.update_xaxes(rangemode="tozero")
    latency_axis(fig, totals)
    return mark_untrained(fig, untrained)


def class_counts_chart(
    detections: pd.DataFrame | None,
    threshold: float,
    *,
    untrained: bool = False,
    counts: pd.DataFrame | None = None,
) -> go.Figure:
    """Boxes above threshold per class, grouped by model (classes by decreasing total). `counts` (label, model,
    boxes; core.analytics.queries.class_counts) replaces `detections` with the counts already aggregated."""
    if counts is None:
        counts = at_or_above(detections, threshold).groupby(["label", "model"], sort=False).size()
        counts = counts.rename("boxes").reset_index()
    models = models_in(counts)
    if not models:
        return empty_figure(f"No detections with score ≥ {threshold:.2f}.", untrained=untrained)
    counts = counts.pivot_table(index="label", columns="model", values="boxes", aggfunc="sum", fill_value=0)
    counts = counts.sort_index()
    counts = counts.loc[counts.sum(axis=1).sort_values(ascending=False, kind="stable").index]
    labels = [plain(label) for label in counts.index]
    fig = go.Figure()
    for model in models:
        fig.add_trace(
            go.Bar(
                x=labels,
                y=counts[model].to_numpy(),
                name=display_name(model),
                marker={"color": model_color(model)},
                hovertemplate="%{x}: %{y}<extra>" + model + "</extra>",
            )
        )
    fig.update_layout(
        barmode="group", title={"text": f"Detections per class (score ≥ {threshold:.2f})"}, yaxis_title="boxes"
    )
    return mark_untrained(fig, untrained)


def count_curves(
    detections: pd.DataFrame, inferences: pd.DataFrame, thresholds: np.ndarray | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The lines of count_vs_threshold from records tables (a RunFrame's: core.analytics.queries.mean_count_curve):
    model -> (thresholds, mean boxes per successful image with score >= threshold). The default thresholds are
    k/100 (`np.arange(101) / 100`, the doubles the slider's 0.35 is; `linspace` gives 0.35000000000000003)."""
    thresholds = np.arange(101) / 100 if thresholds is None else np.asarray(thresholds, dtype=float)
    ok = successful(inferences)
    keys = ["run_id", "image_id", "model"]
    dets = detections.merge(ok[keys].drop_duplicates(), on=keys, how="inner") if not ok.empty else detections.iloc[:0]
    curves = {}
    for model in models_in(ok):
        n_images = int((ok["model"] == model).sum())
        scores = np.sort(dets.loc[dets["model"] == model, "score"].to_numpy(dtype=float))
        above = scores.size - np.searchsorted(scores, thresholds, side="left")
        curves[model] = (thresholds, above / n_images)
    return curves


def count_vs_threshold(
    detections: pd.DataFrame | None,
    inferences: pd.DataFrame,
    *,
    threshold: float | None = None,
    curves: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> go.Figure:
    """Mean detections per image against the score threshold (0..1), one line per model.

    Divides by each model's number of successfully processed images; `threshold`, if given, is drawn as a line.
    `curves`: count_curves' result already computed (core.analytics.queries.mean_count_curve).
    """
    untrained = any_untrained(inferences)
    curves = count_curves(detections, inferences) if curves is None else curves
    if not curves:
        return empty_figure("No processed images.", untrained=untrained)
    fig = go.Figure()
    for model, (xs, ys) in curves.items():
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                name=display_name(model),
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
