"""A stored run as a RunFrame: from its Parquet segment (core.store.segments) when current, else from SQLite once
(then the segment is written, so the next open is fast)."""

from __future__ import annotations

import contextlib

import pyarrow as pa

from core.analytics.frame import RunFrame
from core.store import Store
from core.store.segments import read_from_sqlite, read_segment, segment_dir, write_tables


def _released(rf: RunFrame) -> RunFrame:
    """`rf`, after handing the Arrow pool's freed memory back to the system: the pool (mimalloc) otherwise keeps the
    ~250 MB the Parquet read and decoding used at 2 million boxes, as resident memory of the server."""
    pa.default_memory_pool().release_unused()
    return rf


def load_run_frame(store: Store, run_id: str) -> RunFrame:
    """The RunFrame of a stored run: from its segment when current, else from SQLite (then writing the segment
    for a finished run). StoreError for an unknown run."""
    version = store.run_version(run_id)
    if version[0] != "running":
        found = read_segment(segment_dir(store, run_id), version)
        if found is not None:
            return _released(RunFrame.from_arrow(*found))
    inf, det, version = read_from_sqlite(store, run_id)
    if version[0] != "running":
        with contextlib.suppress(OSError):  # a read-only store still shows the run, from SQLite each time
            write_tables(store, run_id, inf, det, version)
    return _released(RunFrame.from_arrow(inf, det))
