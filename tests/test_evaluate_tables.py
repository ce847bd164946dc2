"""Every table of the Evaluate page (metrics, at the threshold, category mapping, each error analysis) formats its
numbers and never shows a raw None or nan for an undefined figure (issue #22)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.errors_ui import VIEWS
from tests.test_evaluate_page import A, B, open_page, session, with_fp

RAW = {"None", "nan", "NaN", "<NA>", "NaT"}


def no_small_boxes_and_an_empty_series():
    """cat.jpg only: its one ground-truth box (the cat, 398 x 300 px) is large, so APs and APm are undefined; A finds
    it and a dog on nothing, B finds nothing (its precision and F1 are 0/0)."""
    return session({A: with_fp(), B: []})


def shown_cells(frame) -> list[str]:  # noqa: ANN001 (an AppTest dataframe)
    """What the grid writes in each cell, as far as missing values go: the placeholder (Streamlit's "None" without
    one) for a missing value, else the value's text."""
    placeholder = frame.proto.placeholder if frame.proto.HasField("placeholder") else "None"
    return [placeholder if pd.isna(v) else str(v) for c in frame.value.columns for v in frame.value[c]]


def unformatted(frame) -> list[str]:  # noqa: ANN001
    """Number columns shown without a format of the page's column_config."""
    config = json.loads(frame.proto.columns or "{}")
    numbers = [c for c in frame.value.columns if pd.api.types.is_numeric_dtype(frame.value[c].dtype)]
    numbers = [c for c in numbers if not pd.api.types.is_bool_dtype(frame.value[c].dtype)]
    return [c for c in numbers if not config.get(str(c), {}).get("type_config", {}).get("format")]


def opened(view: str | None) -> AppTest:
    at = open_page(no_small_boxes_and_an_empty_series())
    assert not at.exception, at.exception
    if view is not None:
        at.segmented_control(key="eval_more_view").set_value(view).run()
        if view == VIEWS[3]:  # the paired bootstrap: few resamples
            at.number_input(key="eval_sig_n").set_value(200).run()
        assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("view", [None, *VIEWS], ids=lambda v: v or "metrics")
def test_no_table_shows_a_raw_none_or_nan(view):
    at = opened(view)
    frames = list(at.dataframe)
    assert frames or view in (VIEWS[1],), "the view shows a table"
    for frame in frames:
        cells = shown_cells(frame)
        assert not RAW & set(cells), (list(frame.value.columns), cells)
        assert unformatted(frame) == [], list(frame.value.columns)


def test_the_undefined_figures_are_there_and_shown_as_a_dash():
    """By hand: no small or medium ground-truth box, so APs/APm are undefined for both; B has no detection, so its
    precision and F1 are 0/0. The cells hold missing values (the columns stay numbers) and show the placeholder."""
    at = opened(None)
    metrics = next(d for d in at.dataframe if "APs" in d.value.columns)
    assert metrics.value[["APs", "APm"]].isna().all().all()
    assert pd.api.types.is_float_dtype(metrics.value["APs"].dtype)
    prf = next(d for d in at.dataframe if "F1" in d.value.columns).value.set_index("model")
    assert pd.isna(prf.loc[B, "precision"]) and pd.isna(prf.loc[B, "F1"]) and prf.loc[A, "precision"] == 0.5
    assert {"–"} <= set(shown_cells(metrics))
