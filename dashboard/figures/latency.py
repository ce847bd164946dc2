"""Latency charts: total latency per image per model, median stage breakdown."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from dashboard.figures.common import (
    STAGE_COLORS,
    STAGE_NAMES,
    any_untrained,
    empty_figure,
    latency_axis,
    mark_untrained,
    model_color,
    models_in,
    percentile,
    plain,
    short_axis,
    successful,
)


def latency_box(inferences: pd.DataFrame) -> go.Figure:
    """One box per model of `total_ms` with every image as a point, and its p50 and p95 marked."""
    untrained = any_untrained(inferences)
    ok = successful(inferences)
    models = models_in(ok)
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
        p50.append(percentile(part["total_ms"], 50))
        p95.append(percentile(part["total_ms"], 95))
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
    latency_axis(fig, ok["total_ms"])
    return mark_untrained(fig, untrained)


def latency_medians(inferences: pd.DataFrame) -> pd.DataFrame:
    """Median of each stage per model (successful rows only), in the models' order of appearance."""
    ok = successful(inferences)
    stages = list(STAGE_COLORS)
    if ok.empty:
        return pd.DataFrame(columns=stages, dtype="float64")
    return ok.groupby("model", sort=False)[stages].median().reindex(models_in(ok))


def latency_breakdown(inferences: pd.DataFrame) -> go.Figure:
    """A stacked bar per model: median preprocess, inference and postprocess time."""
    untrained = any_untrained(inferences)
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
    short_axis(fig, models)
    return mark_untrained(fig, untrained)
