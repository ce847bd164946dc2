"""Session state behind small helpers: the session's two tables, its images and the shared settings."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.config import DEFAULT_THRESHOLD
from core.images import ImageSource
from core.records import RunInfo, empty_detections, empty_inferences

_INF, _DET, _IMAGES, _RUNS = "detlens_inferences", "detlens_detections", "detlens_images", "detlens_runs"
THRESHOLD_KEY = "detlens_threshold"


def init() -> None:
    """Create the session's tables once (idempotent: every page calls it)."""
    ss = st.session_state
    if _INF not in ss:
        ss[_INF] = empty_inferences()
        ss[_DET] = empty_detections()
        ss[_IMAGES] = {}
        ss[_RUNS] = []
    ss.setdefault(THRESHOLD_KEY, DEFAULT_THRESHOLD)


def inferences() -> pd.DataFrame:
    init()
    return st.session_state[_INF]


def detections() -> pd.DataFrame:
    init()
    return st.session_state[_DET]


def images() -> dict[str, ImageSource]:
    init()
    return st.session_state[_IMAGES]


def runs() -> list[RunInfo]:
    init()
    return st.session_state[_RUNS]


def threshold() -> float:
    init()
    return float(st.session_state[THRESHOLD_KEY])


def add_images(refs: list[ImageSource]) -> None:
    store = images()
    for ref in refs:
        store.setdefault(ref.image_id, ref)


def add_run(info: RunInfo, inferences_df: pd.DataFrame, detections_df: pd.DataFrame) -> None:
    """Append a run's rows to the session tables."""
    init()
    ss = st.session_state
    ss[_INF] = pd.concat([ss[_INF], inferences_df], ignore_index=True) if len(ss[_INF]) else inferences_df
    if len(detections_df):
        ss[_DET] = pd.concat([ss[_DET], detections_df], ignore_index=True) if len(ss[_DET]) else detections_df
    ss[_RUNS].append(info)


def done_keys() -> set[tuple[str, str, str, str, str]]:
    """(image_id, model, weights, device, precision) already processed without error in this session."""
    inf = inferences()
    ok = inf[inf["error"] == ""]
    cols = ["image_id", "model", "weights", "device", "precision"]
    return set(ok[cols].itertuples(index=False, name=None))


def clear() -> None:
    """Forget the session's results and images."""
    for key in (_INF, _DET, _IMAGES, _RUNS):
        st.session_state.pop(key, None)
    init()


def sidebar_settings() -> None:
    """Settings every page shares, drawn once by the frame."""
    init()
    st.sidebar.slider(
        "Confidence threshold",
        min_value=0.0,
        max_value=1.0,
        step=0.05,
        key=THRESHOLD_KEY,
        help="Boxes below it are hidden and not counted. Changing it never runs a model again.",
    )
    inf = inferences()
    st.sidebar.caption(f"Session: {inf['image_id'].nunique()} images, {len(inf)} inferences, {len(detections())} boxes")
