"""Latency charts: total latency per image per model, median stage breakdown."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.records import models_in
from dashboard.figures.common import (
    STAGE_COLORS,
    STAGE_NAMES,
    display_name,
    empty_figure,
    latency_axis,
    model_color,
    plain,
    short_axis,
    successful,
)

LATENCY_STATS_COLUMNS: tuple[str, ...] = (
    "model", "n", "lowerfence", "q1", "median", "q3", "upperfence", "p95", "mean",
)  # fmt: skip
OUTLIERS_PER_MODEL = 50  # slowest (or fastest) images outside the whiskers sent to the browser, each named in hover


def latency_stats(inferences: pd.DataFrame, column: str = "total_ms") -> pd.DataFrame:
    """Per model (successful rows, order of appearance): n, quartiles (numpy's linear percentiles), p95, mean and
    the whisker ends (the most extreme values within 1.5 IQR of the box, as plotly draws them from raw data).

    The latency box plot is drawn from this small table, so the browser never receives every latency; a store query
    that computes the same columns where the data lives can feed `latency_box(stats=...)` directly.
    """
    ok = successful(inferences)
    rows = []
    for model in models_in(ok):
        values = ok.loc[ok["model"] == model, column].to_numpy(dtype=float)
        values = values[~np.isnan(values)]
        if not values.size:
            continue
        q1, median, q3, p95 = np.percentile(values, [25, 50, 75, 95])
        reach = 1.5 * (q3 - q1)
        inside = values[(values >= q1 - reach) & (values <= q3 + reach)]
        rows.append({
            "model": model, "n": int(values.size), "lowerfence": float(inside.min()), "q1": float(q1),
            "median": float(median), "q3": float(q3), "upperfence": float(inside.max()), "p95": float(p95),
            "mean": float(values.mean()),
        })  # fmt: skip
    stats = pd.DataFrame(rows, columns=list(LATENCY_STATS_COLUMNS))
    return stats.astype({"model": "string", "n": "int64"} | {c: "float64" for c in LATENCY_STATS_COLUMNS[2:]})


def latency_outliers(inferences: pd.DataFrame, stats: pd.DataFrame, limit: int = OUTLIERS_PER_MODEL) -> pd.DataFrame:
    """Successful rows outside their model's whiskers, at most `limit` per model (the farthest from the median)."""
    ok = successful(inferences)
    if ok.empty or stats.empty:
        return ok.iloc[:0]
    fences = stats.set_index("model")[["lowerfence", "upperfence", "median"]]
    joined = ok.join(fences, on="model", how="inner")
    out = joined[(joined["total_ms"] < joined["lowerfence"]) | (joined["total_ms"] > joined["upperfence"])]
    distance = (out["total_ms"] - out["median"]).abs()
    out = out.assign(_distance=distance).sort_values("_distance", ascending=False, kind="stable")
    return out.groupby("model", sort=False).head(limit).drop(columns=["_distance", *fences.columns])


def latency_box(inferences: pd.DataFrame | None = None, *, stats: pd.DataFrame | None = None) -> go.Figure:
    """One box per model of `total_ms` drawn from precomputed quartiles and whiskers (`latency_stats`, or `stats`
    given), its p50 and p95 marked, and only the outlying images as points (named in hover).

    Latency charts carry no untrained mark: timings of untrained weights are real (the page says so in its caption,
    `dashboard.views.latency_caption`).
    """
    inferences = inferences if inferences is not None else pd.DataFrame(columns=["model", "error", "total_ms"])
    stats = latency_stats(inferences) if stats is None else stats
    if stats.empty:
        return empty_figure("No processed images to time.")
    models = [str(m) for m in stats["model"]]
    fig = go.Figure()
    for row in stats.itertuples(index=False):
        model, color = str(row.model), model_color(str(row.model))
        fig.add_trace(
            go.Box(
                x=[model],
                q1=[row.q1],
                median=[row.median],
                q3=[row.q3],
                lowerfence=[row.lowerfence],
                upperfence=[row.upperfence],
                mean=[row.mean],
                boxpoints=False,
                name=display_name(model),
                marker={"color": color},
                line={"color": color},
                showlegend=False,
            )
        )
    outliers = latency_outliers(inferences, stats)
    if not outliers.empty:
        fig.add_trace(
            go.Scatter(
                x=outliers["model"].astype(str).to_numpy(),
                y=outliers["total_ms"].to_numpy(dtype=float),
                mode="markers",
                name="outlying images",
                marker={"color": [model_color(str(m)) for m in outliers["model"]], "size": 6, "opacity": 0.7},
                customdata=[[i, plain(n)] for i, n in zip(outliers["image_id"], outliers["image_name"], strict=True)],
                hovertemplate="%{customdata[1]}<br>%{y:.1f} ms<extra>%{x}</extra>",
            )
        )
    # p50 and p95 marked on each box (hover tells the value) and written under its name on the axis: labels never
    # sit on the data nor print over each other.
    for name, column, symbol, side in (
        ("p50", "median", "diamond", "middle left"),
        ("p95", "p95", "triangle-up", "middle right"),
    ):
        values = stats[column].to_numpy(dtype=float)
        fig.add_trace(
            go.Scatter(
                x=models,
                y=values,
                name=name,
                mode="markers",
                marker={"symbol": symbol, "size": 11, "color": "black", "line": {"color": "white", "width": 1}},
                text=[f"{name} {v:.1f}" for v in values],
                textposition=side,
                cliponaxis=False,
                hovertemplate=f"{name} %{{y:.1f}} ms<extra>%{{x}}</extra>",
            )
        )
    fig.update_layout(
        title={"text": "Total latency per image"},
        yaxis_title="total ms",
        xaxis_title=None,
        legend={"orientation": "h", "x": 0, "y": -0.15, "yanchor": "top"},
    )
    short_axis(fig, models)
    for row in stats.itertuples(index=False):
        fig.add_annotation(
            name="percentiles", x=str(row.model), xref="x", y=0, yref="paper", yanchor="top", yshift=-26,
            text=f"p50 {row.median:,.1f} ms<br>p95 {row.p95:,.1f} ms", showarrow=False, font={"size": 11, "color": "#4B5563"},
        )  # fmt: skip
    fig.update_layout(margin_b=110, legend_y=-0.3)
    spread = pd.concat([stats["lowerfence"], stats["upperfence"], outliers.get("total_ms", pd.Series(dtype=float))])
    latency_axis(fig, spread.astype(float))
    return fig


def latency_medians(inferences: pd.DataFrame) -> pd.DataFrame:
    """Median of each stage per model (successful rows only), in the models' order of appearance."""
    ok = successful(inferences)
    stages = list(STAGE_COLORS)
    if ok.empty:
        return pd.DataFrame(columns=stages, dtype="float64")
    return ok.groupby("model", sort=False)[stages].median().reindex(models_in(ok))


def latency_breakdown(inferences: pd.DataFrame) -> go.Figure:
    """A stacked bar per model: median preprocess, inference and postprocess time (no untrained mark: see
    `latency_box`)."""
    medians = latency_medians(inferences)
    if medians.empty:
        return empty_figure("No processed images to time.")
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
    short_axis(fig, models)
    return fig
