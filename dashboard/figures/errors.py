"""Error analysis charts: TIDE dAP bars, the confusion matrix, bootstrap intervals, the reliability diagram.

Pure: small frames in, plotly figures out. Series named in `untrained` carry the untrained mark.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.figures.common import display_name, empty_figure, mark_untrained, model_color, plain, untrained_flag

ERROR_ORDER: tuple[str, ...] = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss", "FalsePos", "FalseNeg")


def tide_bars(frame: pd.DataFrame, *, title: str = "", untrained: bool | Collection[str] = False) -> go.Figure:
    """Grouped bars of dAP (AP50 points) per error type, one bar per series. `frame`: series, error, dAP, count."""
    flag = untrained_flag(untrained, frame["series"].unique() if len(frame) else [])
    if frame.empty or frame["dAP"].isna().all():
        return empty_figure("No error to show: no series with ground truth.", untrained=flag)
    fig = go.Figure()
    for series, rows in frame.groupby("series", sort=False):
        rows = rows.set_index("error").reindex([e for e in ERROR_ORDER if e in set(rows["error"])])
        fig.add_trace(go.Bar(
            x=list(rows.index), y=rows["dAP"].to_numpy(float), name=display_name(series),
            marker_color=model_color(str(series)), customdata=rows["count"].to_numpy(),
            hovertemplate="%{x}: dAP %{y:.2f}<br>%{customdata} errors<extra>" + plain(series) + "</extra>",
        ))  # fmt: skip
    fig.update_layout(barmode="group", title={"text": plain(title or "TIDE: AP50 gained by fixing each error")},
                      xaxis_title="error type (FalsePos, FalseNeg: special)", yaxis_title="dAP (AP50 points)")  # fmt: skip
    return mark_untrained(fig, flag)


def confusion_heatmap(counts: pd.DataFrame, *, title: str = "", untrained: bool = False) -> go.Figure:
    """The confusion matrix (rows: true class, columns: predicted class, both with background) as a heatmap of
    counts, shaded by the share of each true row (the background row by its own total)."""
    if counts.empty or int(counts.to_numpy().sum()) == 0:
        return empty_figure("No box to count at this threshold.", untrained=untrained)
    values = counts.to_numpy(dtype=float)
    rows = values.sum(axis=1, keepdims=True)
    share = np.divide(values, rows, out=np.zeros_like(values), where=rows > 0)
    labels_x = [plain(c) for c in counts.columns]
    labels_y = [plain(c) for c in counts.index]
    fig = go.Figure(go.Heatmap(
        z=share, x=labels_x, y=labels_y, text=values.astype(int), texttemplate="%{text}", colorscale="Blues",
        zmin=0, zmax=1, colorbar={"title": "share of row"},
        hovertemplate="true %{y}, predicted %{x}: %{text} boxes<extra></extra>",
    ))  # fmt: skip
    fig.update_layout(title={"text": plain(title or "Confusion matrix")}, xaxis_title="predicted",
                      yaxis_title="true", yaxis={"autorange": "reversed"})  # fmt: skip
    return mark_untrained(fig, untrained)


def interval_chart(frame: pd.DataFrame, *, title: str = "", untrained: bool = False) -> go.Figure:
    """Forest plot of B - A with its 95 % interval per row. `frame`: name, diff, low, high."""
    frame = frame.dropna(subset=["diff"])
    if frame.empty:
        return empty_figure("Nothing to compare.", untrained=untrained)
    names = [plain(n) for n in frame["name"]]
    diff = frame["diff"].to_numpy(float)
    fig = go.Figure(go.Scatter(
        x=diff, y=names, mode="markers", marker={"size": 9, "color": "#3366CC"},
        error_x={"type": "data", "symmetric": False, "array": frame["high"].to_numpy(float) - diff,
                 "arrayminus": diff - frame["low"].to_numpy(float)},
        hovertemplate="%{y}: %{x:+.4f}<extra></extra>",
    ))  # fmt: skip
    fig.add_vline(x=0, line_dash="dash", line_color="grey")
    fig.update_layout(title={"text": plain(title or "B - A with 95% bootstrap intervals")}, xaxis_title="B - A",
                      yaxis={"autorange": "reversed"}, height=max(260, 28 * len(frame) + 120))  # fmt: skip
    return mark_untrained(fig, untrained)


def reliability_diagram(bins: Mapping[str, pd.DataFrame], *, untrained: bool | Collection[str] = False) -> go.Figure:
    """Accuracy against mean score per bin, one line per series, with the diagonal of perfect calibration.
    `bins`: series -> frame with confidence, accuracy, count (empty bins NaN)."""
    flag = untrained_flag(untrained, bins)
    shown = {k: v for k, v in bins.items() if v["count"].sum() > 0}
    if not shown:
        return empty_figure("No detection to calibrate.", untrained=flag)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                             line={"dash": "dash", "color": "grey"}, hoverinfo="skip"))  # fmt: skip
    for series, b in shown.items():
        on = b["count"] > 0
        fig.add_trace(go.Scatter(
            x=b.loc[on, "confidence"].to_numpy(float), y=b.loc[on, "accuracy"].to_numpy(float),
            mode="lines+markers", name=display_name(series), line={"color": model_color(str(series))},
            customdata=b.loc[on, "count"].to_numpy(),
            hovertemplate="mean score %{x:.2f}: %{y:.1%} correct (%{customdata} boxes)<extra>" + plain(series)
            + "</extra>",
        ))  # fmt: skip
    fig.update_layout(title={"text": "Reliability: share correct (IoU 0.5) against score"},
                      xaxis_title="mean score in bin", yaxis_title="share correct")  # fmt: skip
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1.02])
    return mark_untrained(fig, flag)
