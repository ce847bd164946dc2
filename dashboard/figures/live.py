"""Live comparison charts (pure: small frames from core.execution.live's snapshot in, Plotly figures out): latency per frame,
frames per second achieved, detections per frame, and the rolling disagreement between two series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.figures.common import MODEL_PALETTE, empty_figure, mark_untrained, plain

FPS_SPAN = 10  # frames achieved per second: over the last this many frames a series processed


def series_color(index: int) -> str:
    return MODEL_PALETTE[index % len(MODEL_PALETTE)]


def rolling_fps(frames: pd.DataFrame, span: int = FPS_SPAN) -> pd.DataFrame:
    """Per series, at each processed frame: frames per second over its last `span` frames
    ((k - 1) / time between the first and last of them, k = min(span, frames so far); NaN for the first)."""
    out = []
    for series, grp in frames.groupby("series", sort=False):
        done = grp["done_at"].to_numpy(dtype=np.float64)
        fps = np.full(len(done), np.nan)
        for i in range(1, len(done)):
            first = max(0, i - span + 1)
            dt = done[i] - done[first]
            fps[i] = (i - first) / dt if dt > 0 else np.nan
        out.append(pd.DataFrame({"series": series, "time_s": grp["time_s"].to_numpy(), "fps": fps}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=["series", "time_s", "fps"])


def _lines(
    data: pd.DataFrame, y: str, title: str, y_title: str, order: list[str], untrained: bool, *, mode: str = "lines"
) -> go.Figure:
    if data.empty or data[y].isna().all():
        return empty_figure(f"{title}: waiting for frames", untrained=untrained)
    fig = go.Figure()
    for name, grp in data.groupby("series" if "series" in data else "pair", sort=False):
        idx = order.index(name) if name in order else len(order)
        fig.add_trace(
            go.Scatter(
                x=grp["time_s"], y=grp[y], name=plain(name), mode=mode, line={"color": series_color(idx)},
                hovertemplate=f"{plain(name)}<br>t %{{x:.2f}} s<br>{plain(y_title)} %{{y:.3g}}<extra></extra>",
            )
        )  # fmt: skip
    fig.update_layout(
        title=title, height=260, margin={"l": 40, "r": 10, "t": 40, "b": 30}, xaxis_title="source time (s)",
        yaxis_title=y_title, legend={"orientation": "h", "y": -0.25}, uirevision=title,
    )  # fmt: skip
    return mark_untrained(fig, untrained)


def latency_chart(frames: pd.DataFrame, order: list[str], untrained: bool = False) -> go.Figure:
    """Latency per processed frame (the model's total_ms), per series, against the frame's time in the source."""
    return _lines(frames, "latency_ms", "Latency per frame", "ms", order, untrained, mode="lines+markers")


def fps_chart(frames: pd.DataFrame, order: list[str], untrained: bool = False) -> go.Figure:
    """Frames per second each series achieved (rolling over FPS_SPAN frames)."""
    return _lines(rolling_fps(frames), "fps", "Frames per second achieved", "fps", order, untrained)


def detections_chart(frames: pd.DataFrame, order: list[str], untrained: bool = False) -> go.Figure:
    """Detections at the threshold per processed frame, per series."""
    return _lines(frames, "n_detections", "Detections per frame", "boxes", order, untrained, mode="lines+markers")


def disagreement_chart(pairs: pd.DataFrame, untrained: bool = False) -> go.Figure:
    """Rolling disagreement (1 - matched / distinct objects) of each pair on the frames both series processed."""
    fig = _lines(pairs, "disagreement", "Disagreement (rolling)", "share of objects", [], untrained)
    if not pairs.empty and not pairs["disagreement"].isna().all():
        fig.update_yaxes(range=[0, 1])
    return fig
