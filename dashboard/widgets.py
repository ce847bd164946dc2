"""Small widget helpers shared by pages."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import state
from dashboard.pagelist import page


def require_results(message: str = "No results yet: run some models first.") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The session's (inferences, detections); on an empty session, say so, link to Run and stop the page."""
    inf, det = state.inferences(), state.detections()
    if inf.empty:
        st.info(message)
        st.page_link(page("pages/run.py"), label="Go to Run", icon=":material/play_arrow:")
        st.stop()
    return inf, det
