"""Column settings for the app's tables (`st.column_config`): readable headers, formats for people (ms with one
decimal, percentages, thousands), ids last and narrow. Pages pass them to st.dataframe with a column order that puts
the columns a user came for first."""

from __future__ import annotations

import streamlit as st

_num = st.column_config.NumberColumn
_text = st.column_config.TextColumn

MS = "%.1f ms"
COUNT = "localized"  # thousands separated

RUN_LIST_CONFIG = {
    "name": _text("Run", width="large", help="Its name: rename it below once selected"),
    "status": _text("Status", width="small"),
    "n_images": _num("Images", format=COUNT, width="small"),
    "models": _text("Models", width="medium"),
    "n_inferences": _num("Records", format=COUNT, width="small", help="image x model records stored"),
    "n_errors": _num("Errors", format=COUNT, width="small"),
    "n_reviews": _num("Reviews", format=COUNT, width="small"),
    "untrained": st.column_config.CheckboxColumn("Untrained", width="small"),
    "user": _text("By", width="small"),
    "created_at": st.column_config.DatetimeColumn("Created", format="D MMM YYYY, HH:mm", width="small"),
    "finished_at": None,
    "device": _text("Device", width="small"),
    "run_id": _text("Run id", width="small"),
}
