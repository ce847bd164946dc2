"""Analytics at scale: a run's records as integer-coded columns (RunFrame), Parquet segments kept beside the store,
and the aggregations the pages show (queries). No streamlit here; dashboard/cache.py caches what these return."""

from __future__ import annotations

from core.analytics.frame import BIN_EDGES, SCORE_BINS, RunFrame, threshold_bin
from core.analytics.segments import drop_segment, load_run_frame, segment_dir, write_segment

__all__ = [
    "BIN_EDGES",
    "SCORE_BINS",
    "RunFrame",
    "drop_segment",
    "load_run_frame",
    "segment_dir",
    "threshold_bin",
    "write_segment",
]
