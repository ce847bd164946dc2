"""Analytics at scale: a run's records as integer-coded columns (RunFrame), read from the store's Parquet segments,
and the aggregations the pages show (queries). No streamlit here; dashboard/cache.py caches what these return."""

from __future__ import annotations

from core.analytics.frame import BIN_EDGES, SCORE_BINS, RunFrame, threshold_bin
from core.analytics.segments import load_run_frame

__all__ = [
    "BIN_EDGES",
    "SCORE_BINS",
    "RunFrame",
    "load_run_frame",
    "threshold_bin",
]
