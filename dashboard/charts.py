"""Charts on a page: a figure with nothing to show is a sentence (st.info), not an empty frame; the rest are drawn
with the app's Plotly settings (no Plotly logo, no outside request)."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import streamlit as st

from dashboard.figures import empty_message

CHART_CONFIG: dict[str, Any] = {"displaylogo": False}


def show(fig: go.Figure, *, key: str, where: Any = None, **kwargs: Any) -> Any:
    """Draw `fig` in `where` (st, a column, a container); a figure that only says why it is empty is shown as that
    sentence instead. Returns what st.plotly_chart returns (its selection event), or None for a sentence."""
    where = where if where is not None else st
    message = empty_message(fig)
    if message:
        where.info(message)
        return None
    config = CHART_CONFIG | kwargs.pop("config", {})
    return where.plotly_chart(fig, key=key, config=config, **kwargs)
