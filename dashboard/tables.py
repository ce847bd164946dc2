"""Column settings for the app's tables (`st.column_config`): readable headers, formats for people (ms with one
decimal, percentages, thousands), ids last and narrow. Pages pass them to st.dataframe with a column order that puts
the columns a user came for first."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from pandas.io.formats.style import Styler

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

NA = "–"  # a missing value, instead of a raw None: st.dataframe(..., placeholder=NA)
RATE = "%.3f"  # AP, recall, precision, F1, scores: three decimals
POINTS = "%.2f"  # TIDE's AP points (0-100) and their differences


def formatted(df: pd.DataFrame, formats: dict[str, str] | None = None, *, default: str = RATE) -> dict:
    """A column_config giving every number column of `df` a format: `formats` by name, else counts (integers) with
    thousands and other numbers with `default`; text and flags as they are. Pair it with `placeholder=NA`, so that an
    undefined figure (NaN: no small boxes, no detections) shows "–" while the column stays numeric (sortable)."""
    out = {}
    for column in df.columns:
        dtype = df[column].dtype
        if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
            continue
        integer = pd.api.types.is_integer_dtype(dtype)
        out[column] = _num(format=(formats or {}).get(column, COUNT if integer else default))
    return out


def no_none(df: pd.DataFrame, formats: dict[str, str]) -> Styler:
    """`df` shown with `formats` (column -> format string, e.g. "{:,.1f} ms") and "–" for a missing value. The grid
    draws any missing cell as a raw None whatever its display value, so a column with a missing value is shown as
    text (formatted); the others stay numbers (sortable), formatted for display."""
    known = {c: f for c, f in formats.items() if c in df.columns}
    out = df.copy()
    for column in out.columns:
        if not out[column].isna().any():
            continue
        fmt = known.get(column, "{}")
        out[column] = [NA if pd.isna(v) else fmt.format(v) for v in out[column]]
    return out.style.format({c: f for c, f in known.items() if not df[c].isna().any()})


MODEL_CARD_ORDER = (
    "model", "median_total_ms", "p95_total_ms", "box_map", "n_images", "n_errors", "runtime", "weights", "device",
    "precision", "median_inference_ms", "p95_inference_ms", "gflops", "params", "file_size_mb", "title",
)  # fmt: skip
MODEL_CARD_FORMATS = {
    "median_total_ms": "{:,.1f} ms", "p95_total_ms": "{:,.1f} ms", "median_inference_ms": "{:,.1f} ms",
    "p95_inference_ms": "{:,.1f} ms", "box_map": "{:.1f}", "gflops": "{:,.2f}", "params": "{:,.0f}",
    "file_size_mb": "{:,.1f} MB", "n_images": "{:,}", "n_errors": "{:,}",
    "AP (ground truth)": "{:.3f}", "eager AP": "{:.3f}", "ΔAP vs eager": "{:+.3f}",
}  # fmt: skip
_col = st.column_config.Column
MODEL_CARD_CONFIG = {
    "model": _col("Model", width="medium"),
    "median_total_ms": _col("Median total", width=110),
    "p95_total_ms": _col("p95 total", width=110),
    "box_map": _col("Box mAP", width=90, help="Published COCO box mAP of the default weights"),
    "n_images": _col("Images", width=70),
    "n_errors": _col("Errors", width=70),
    "median_inference_ms": _col("Median model call", width=130),
    "p95_inference_ms": _col("p95 model call", width=120),
    "file_size_mb": _col("File", width=90),
}

_ms = _num(format="%.1f", width="small")
INFERENCE_CONFIG = {
    "image_name": _text("Image", width="medium"),
    "model": _text("Model", width="medium"),
    "total_ms": _num("Total ms", format="%.1f", width="small"),
    "inference_ms": _num("Model call ms", format="%.1f", width="small"),
    "preprocess_ms": _num("Preprocess ms", format="%.1f", width="small"),
    "postprocess_ms": _num("Postprocess ms", format="%.1f", width="small"),
    "n_detections": _num("Boxes", format=COUNT, width="small"),
    "threshold": _num("Threshold", format="%.2f", width="small"),
    "error": _text("Error", width="medium"),
    "run_id": _text("Run id", width="small"),
    "image_id": _text("Image id", width="small"),
}
INFERENCE_ORDER = (
    "image_name", "model", "total_ms", "inference_ms", "n_detections", "error", "weights", "runtime", "device",
    "precision", "batch_size", "preprocess_ms", "postprocess_ms", "width", "height", "threshold", "created_at",
    "run_id", "image_id",
)  # fmt: skip
DETECTION_CONFIG = {
    "label": _text("Class", width="small"),
    "score": _num("Score", format="%.3f", width="small"),
    **{c: _num(c, format="%.1f", width="small") for c in ("x1", "y1", "x2", "y2")},
    "image_id": _text("Image id", width="small"),
    "run_id": _text("Run id", width="small"),
}
DETECTION_ORDER = ("image_name", "model", "label", "score", "x1", "y1", "x2", "y2", "label_id", "run_id", "image_id")
MODEL_TABLE_CONFIG = {
    "model": _text("Model", width="medium"),
    "title": _text("Weights", width="medium"),
    "box_map": _num("Box mAP (COCO)", format="%.1f", width="small"),
    "gflops": _num("GFLOPS", format="%.2f", width="small"),
    "params_m": _num("Params (M)", format="%.2f", width="small"),
    "file_size_mb": _num("File (MB)", format="%.1f", width="small"),
    "weights_cached": st.column_config.CheckboxColumn("Weights here", width="small"),
    "classes": _num("Classes", width="small"),
    "weights_file": _text("Weights file", width="medium"),
    "note": _text("Note", width="medium"),
}
MODEL_TABLE_ORDER = (
    "model", "box_map", "gflops", "params_m", "file_size_mb", "weights_cached", "classes", "title", "weights_file",
    "note",
)  # fmt: skip


# The Evaluate page's tables (dashboard.evaluation's metrics_table, prf_table, category_table), with placeholder=NA
METRICS_CONFIG = {
    "model": _text("Model", width="medium"),
    **{k: _num(k, format=RATE, width="small") for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10",
                                                          "AR100")},
    "images": _num("Images", format=COUNT, width="small"),
    "GT boxes": _num("GT boxes", format=COUNT, width="small"),
}  # fmt: skip
PRF_CONFIG = {
    "model": _text("Model", width="medium"),
    **{k: _num(k, format=COUNT, width="small") for k in ("TP", "FP", "FN")},
    **{k: _num(k, format=RATE, width="small") for k in ("precision", "recall", "F1")},
}
CATEGORY_CONFIG = {"GT id": _num("GT id", format="%d"), "label id": _num("Label id", format="%d")}


def order(columns: object, preferred: tuple[str, ...]) -> list[str]:
    """`preferred` columns that exist first, then the rest: the columns a user came for are visible at 1280 px."""
    cols = [str(c) for c in columns]  # type: ignore[attr-defined]
    return [c for c in preferred if c in cols] + [c for c in cols if c not in preferred]
