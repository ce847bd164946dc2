"""Cached wrappers around core loaders: models with st.cache_resource, derived data with st.cache_data."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from core.analytics import RunFrame, load_run_frame
from core.images import ImageSource, LoadedImage, gallery_paths
from core.inference.models import list_models
from core.inference.weights import cached_weights_path
from core.store import Store, default_store_dir


@st.cache_data(show_spinner=False)
def model_table() -> pd.DataFrame:
    """The registry as a table: published figures from each weights enum's meta, and whether weights are cached."""
    return pd.DataFrame([s.as_row() | {"weights_cached": cached_weights_path(s).is_file()} for s in list_models()])


@st.cache_data(show_spinner=False, max_entries=64)
def gallery() -> list[tuple[str, bytes]]:
    """The bundled photos as (name, bytes)."""
    return [(p.name, p.read_bytes()) for p in gallery_paths()]


@st.cache_data(show_spinner=False, max_entries=16)
def full_image(image_id: str, _ref: ImageSource) -> LoadedImage:
    """The decoded image for overlays (figures downscale it for display and scale the boxes with it)."""
    return _ref.load()


@st.cache_resource(show_spinner=False)
def _store(path: str) -> Store:
    return Store(path)


def store() -> Store:
    """The run store of this server ($DETLENS_STORE, else ~/.local/share/detlens), opened once per folder."""
    return _store(str(default_store_dir().resolve()))


# st.cache_resource, not cache_data: a RunFrame of 2 million boxes is ~70 MB, and cache_data would pickle and copy
# it on every rerun. It is read-only after it is built, so sessions may share it.
@st.cache_resource(show_spinner=False, max_entries=4)
def _run_frame(path: str, run_id: str, version: tuple) -> RunFrame:
    return load_run_frame(_store(path), run_id)


def run_frame(run_id: str) -> RunFrame:
    """The stored run as a RunFrame (core.analytics), loaded once per version (status, record count): a run still
    being written reloads when it grew. StoreError for an unknown run."""
    s = store()
    return _run_frame(str(s.path.resolve()), run_id, s.run_version(run_id))


@st.cache_data(show_spinner=False, max_entries=16)
def _run_counts(path: str, run_id: str, version: tuple) -> tuple[int, int, int]:
    return _store(path).run_counts(run_id)


def run_counts(run_id: str) -> tuple[int, int, int]:
    """(images, records, boxes) of a stored run, counted once per version without loading its RunFrame (a page that
    needs no records, like Home, stays free of the 2-million-box load)."""
    s = store()
    return _run_counts(str(s.path.resolve()), run_id, s.run_version(run_id))


@st.cache_resource(show_spinner=False, max_entries=2)
def _frame_rows(_rf: RunFrame, key: tuple) -> pd.DataFrame:
    return _rf.rows(slice(None))


def run_tables(run_id: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, ImageSource]]:
    """(inferences, detections, images) of a stored run as whole pandas tables, for the pages that still need every
    row (Evaluate, run against run); StoreError for an unknown one."""
    s = store()
    version = s.run_version(run_id)
    rf = _run_frame(str(s.path.resolve()), run_id, version)
    return rf.inferences, _frame_rows(rf, (str(s.path.resolve()), run_id, version)), run_images(run_id)


@st.cache_resource(show_spinner=False, max_entries=8)
def _run_images(path: str, run_id: str, version: tuple) -> dict[str, ImageSource]:
    return _store(path).run_images(run_id)


def run_images(run_id: str) -> dict[str, ImageSource]:
    """image_id -> source of a stored run's kept images (reloaded when the run grew)."""
    s = store()
    return _run_images(str(s.path.resolve()), run_id, s.run_version(run_id))


_MEMO: weakref.WeakKeyDictionary[RunFrame, dict[tuple, Any]] = weakref.WeakKeyDictionary()
_MEMO_LOCK = threading.Lock()
MEMO_ENTRIES = 32  # results kept per RunFrame (thresholds, filters); the oldest goes first


def memo(rf: RunFrame, fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(rf, *args)`, remembered with the RunFrame it came from (it dies with it): a threshold or filter seen before
    costs nothing, and nothing is pickled. `args` must be hashable. Results are shared: never mutate them."""
    key = (fn.__module__, fn.__qualname__, *args)
    with _MEMO_LOCK:
        table = _MEMO.setdefault(rf, {})
        if key in table:
            return table[key]
    value = fn(rf, *args)
    with _MEMO_LOCK:
        if len(table) >= MEMO_ENTRIES:
            table.pop(next(iter(table)))
        table[key] = value
    return value
