"""Small widget helpers shared by pages."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.analytics import RunFrame
from core.store import StoreError
from core.store.common import ACTIVE_STATUSES
from dashboard import choices, state, views
from dashboard.pagelist import page


def _waiting(live_run: bool) -> str:
    """While the viewed run is queued or running and has no record yet: say that results are on their way."""
    run_id = state.viewed_run()
    if not (live_run and run_id):
        return ""
    from dashboard import cache

    try:
        status, _ = cache.store().run_version(run_id)
    except StoreError:
        return ""
    if status not in ACTIVE_STATUSES:
        return ""
    return "The run has started: its first results appear here as soon as they are measured."


def require_frame(message: str = "No results yet: run some models first.", *, live_run: bool = False) -> RunFrame:
    """The viewed records as a RunFrame; on an empty view, say so, link to Run and stop the page.
    `live_run`: when the viewed run is still queued or running, show the live mark and redraw as records land."""
    if live_run:
        from dashboard import live

        live.banner(state.viewed_run())
    rf = state.frame()
    if rf.inferences.empty:
        st.info(_waiting(live_run) or message)
        st.page_link(page("pages/run.py"), label="Go to Run", icon=":material/play_arrow:")
        st.stop()
    return rf


def adopt_gallery_params(models_all: list[str]) -> None:
    """On a session's first Gallery view, take the image and models from the URL (a refresh or a shared link)."""
    params = st.query_params
    if "image" in params and views.GALLERY_IMAGE_KEY not in st.session_state:
        st.session_state[views.GALLERY_IMAGE_KEY] = params["image"]
    if "models" in params and "gallery_models" not in st.session_state:
        wanted = [m for m in params["models"].split(",") if m in models_all]
        if wanted:
            st.session_state["gallery_models"] = wanted


def run_labels(runs: pd.DataFrame) -> dict[str, str]:
    """run_id -> the run's name for choosers (`Store.list_runs()` rows); a name two runs share gets its run id."""
    names = runs["name"].astype(str).tolist()
    ids = runs["run_id"].astype(str).tolist()
    twice = {n for n in names if names.count(n) > 1}
    return {r: f"{n} ({r})" if n in twice or not n else n for r, n in zip(ids, names, strict=True)}


def pick_two(
    options: list[str],
    labels: tuple[str, str],
    key: str,
    *,
    index: tuple[int, int] = (0, 1),
    noun: str = "models",
    names: dict[str, str] | None = None,
) -> tuple[str, str] | None:
    """Two selectboxes side by side; the picked pair, or None (with a note) when the same option is picked twice.
    `names`: how an option is shown (a run's name), the option itself otherwise."""
    a_col, b_col = st.columns(2)
    shown = (lambda o: names.get(o, o)) if names else str
    a = a_col.selectbox(labels[0], options, index=index[0], key=f"{key}_a", format_func=shown)
    b = b_col.selectbox(labels[1], options, index=index[1], key=f"{key}_b", format_func=shown)
    if a == b:
        st.info(f"Choose two different {noun}.")
        return None
    return a, b


def lazy_tabs(labels: list[str], key: str) -> list:
    """Tabs of which only the open one runs (`tab.open`), the open tab kept for the session: a page draws the charts
    of one tab, not of all of them, and comes back to the tab the user left."""
    choices.restore(key, labels[0], options=labels)
    tabs = st.tabs(labels, key=key, on_change="rerun")
    choices.remember(key, st.session_state[key])
    return list(tabs)
