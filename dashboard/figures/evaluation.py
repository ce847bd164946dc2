"""Ground-truth evaluation charts: precision-recall, AP per class, the accuracy/speed frontier."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.figures.common import (
    display_name,
    empty_figure,
    latency_axis,
    mark_untrained,
    model_color,
    plain,
    untrained_flag,
)

PARETO_NAME = "Pareto front"


def pr_curves_chart(
    curves: Mapping[str, pd.DataFrame], *, title: str = "Precision-recall", untrained: bool | Collection[str] = False
) -> go.Figure:
    """One precision-recall line per model from `core.evaluate.pr_curve` frames (columns recall, precision).

    Precision is NaN where there is nothing to measure (no GT for the class): those points are gaps. `untrained` is a
    flag or the labels made with untrained weights.
    """
    flag = untrained_flag(untrained, curves)
    shown = {k: v for k, v in curves.items() if v["precision"].notna().any()}
    if not shown:
        return empty_figure("No precision-recall curve: no ground-truth boxes to recall.", untrained=flag)
    fig = go.Figure()
    for label, curve in shown.items():
        name, full = display_name(label), plain(label)
        fig.add_trace(
            go.Scatter(
                x=curve["recall"].to_numpy(dtype=float),
                y=curve["precision"].to_numpy(dtype=float),
                mode="lines",
                name=name,
                line={"color": model_color(str(label)), "width": 2, "shape": "hv"},
                hovertemplate="recall %{x:.2f}<br>precision %{y:.3f}<extra>" + full + "</extra>",
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
    flag = untrained_flag(untrained, per_class)
    table = pd.DataFrame({label: pd.Series(values, dtype="float64") for label, values in per_class.items()})
    table = table.dropna(how="all")
    if table.empty:
        return empty_figure("No class with ground-truth boxes.", untrained=flag)
    table = table.loc[table.mean(axis=1).sort_values(ascending=False, kind="stable").index]
    classes = [plain(c) for c in table.index]
    fig = go.Figure()
    for label in table.columns:
        name, full = display_name(label), plain(label)
        fig.add_trace(
            go.Bar(
                x=classes,
                y=table[label].to_numpy(dtype=float),
                name=name,
                marker={"color": model_color(str(label))},
                hovertemplate="%{x}: AP %{y:.3f}<extra>" + full + "</extra>",
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
    flag = untrained_flag(untrained, points["label"].astype(str) if len(points) else [])
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
        name, full = display_name(row.label), plain(row.label)
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
                hovertemplate=full + "<br>median %{x:.1f} ms<br>AP %{y:.3f}<br>%{customdata[0]}<extra></extra>",
            )
        )
    fig.update_layout(
        title={"text": "Measured accuracy against measured speed"},
        xaxis_title="median total ms (measured here)",
        yaxis_title="AP@[.5:.95] (measured on the ground truth)",
        showlegend=False,
    )
    latency_axis(fig, usable["median_total_ms"].astype(float), axis="x")
    fig.update_yaxes(rangemode="tozero")
    return mark_untrained(fig, flag)
