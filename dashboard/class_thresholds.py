"""The "Per-class thresholds" sidebar control of the Gallery and Compare pages.

Per-class thresholds come from the Evaluate page's operating points ("Keep these per-class thresholds for this
session", `dashboard.errors.THRESHOLDS_KEY`: {series: {class: threshold}}, the series being the models' labels) or from
a thresholds JSON the user loads here (what the Evaluate page's download wrote). Loading a file keeps its thresholds in
the same session entry (a file uploader forgets its file when the page is left), under the model it names, or the one
the user picks when its series is not a viewed model. The toggle shows when the session holds thresholds for a viewed
model; when on, the pages pass a `ClassThresholds` (core.analytics.thresholds) wherever they passed the global float.
"""

from __future__ import annotations

import streamlit as st

from core.analytics.thresholds import ClassThresholds, Threshold
from core.evaluate.operating import ThresholdsFileError, read_thresholds_json
from dashboard.errors import THRESHOLDS_KEY
from dashboard.text import md

ON_KEY = "detlens_per_class_on"  # the toggle's value, kept across pages (widgets forget theirs when unmounted)
TOGGLE_KEY = "per_class_toggle"
FILE_KEY = "per_class_file"
TARGET_KEY = "per_class_target"
SOURCES_KEY = "detlens_per_class_sources"  # model -> (file name, the thresholds loaded from it)


def session_thresholds() -> dict[str, dict[str, float | None]]:
    """The session's per-class thresholds, {model: {class: threshold}}."""
    return st.session_state.get(THRESHOLDS_KEY) or {}


def keep(model: str, thresholds: dict[str, float | None], source: str = "Evaluate") -> None:
    """Keep `thresholds` as `model`'s per-class thresholds for this session."""
    st.session_state.setdefault(THRESHOLDS_KEY, {})[model] = dict(thresholds)
    st.session_state.setdefault(SOURCES_KEY, {})[model] = (source, dict(thresholds))


def source_of(model: str) -> str:
    """Where `model`'s kept thresholds came from: the file they were loaded from, else the Evaluate page (which
    may have kept others since)."""
    source, loaded = st.session_state.get(SOURCES_KEY, {}).get(model, ("Evaluate", None))
    return source if loaded == session_thresholds().get(model) else "Evaluate"


def _load(models: list[str]) -> None:
    """The file uploader: a loaded thresholds JSON is kept for its model (or the picked one); a bad file gets one
    line of error."""
    upload = st.sidebar.file_uploader(
        "Per-class thresholds file (JSON)",
        type=["json"],
        key=FILE_KEY,
        help="A file downloaded from the Evaluate page's operating points.",
    )
    if upload is None:
        return
    try:
        series, thresholds = read_thresholds_json(upload.getvalue())
    except ThresholdsFileError as exc:
        st.sidebar.error(f"{md(upload.name)}: {md(exc)}")
        return
    if series in models:
        target = series
    else:
        target = st.sidebar.selectbox(f"Apply {md(series)}'s thresholds to", models, key=TARGET_KEY)
    if target is not None and session_thresholds().get(target) != thresholds:
        keep(target, thresholds, upload.name)


def thresholds_ui(models: list[str], threshold: float) -> Threshold:
    """Draw the control in the sidebar; the threshold the page applies: `threshold`, or per-class thresholds for
    the viewed models that have some (`threshold` for the rest) when the toggle is on."""
    _load(models)
    have = {m: t for m, t in session_thresholds().items() if m in models}
    if not have:
        return threshold
    ss = st.session_state
    if TOGGLE_KEY not in ss:
        ss[TOGGLE_KEY] = bool(ss.get(ON_KEY, False))
    on = st.sidebar.toggle(
        "Per-class thresholds",
        key=TOGGLE_KEY,
        help=f"A box counts and is drawn when its score reaches its class's threshold for its model "
        f"({', '.join(have)}); other classes and models use the confidence threshold.",
    )
    ss[ON_KEY] = on
    if not on:
        return threshold
    source = ", ".join(dict.fromkeys(source_of(m) for m in have))
    return ClassThresholds.of(have, threshold, source)


def note(threshold: Threshold) -> None:
    """Say, above what the page shows, that per-class thresholds are in force (nothing for a plain float)."""
    if isinstance(threshold, ClassThresholds):
        models = ", ".join(dict.fromkeys(m for m, _, _ in threshold.table))
        st.caption(f"Counts and boxes at score ≥ {md(f'{threshold:.2f}')}: the kept thresholds of {md(models)}.")
