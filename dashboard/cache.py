"""Cached wrappers around core loaders: models with st.cache_resource, derived data with st.cache_data."""

from __future__ import annotations

import io

import pandas as pd
import streamlit as st

from core.images import ImageSource, LoadedImage, downscale_for_display, gallery_paths
from core.models import list_models
from core.store import Store, default_store_dir
from core.weights import cached_weights_path


@st.cache_data(show_spinner=False)
def model_table() -> pd.DataFrame:
    """The registry as a table: published figures from each weights enum's meta, and whether weights are cached."""
    return pd.DataFrame([s.as_row() | {"weights_cached": cached_weights_path(s).is_file()} for s in list_models()])


@st.cache_data(show_spinner=False, max_entries=64)
def gallery() -> list[tuple[str, bytes]]:
    """The bundled photos as (name, bytes)."""
    return [(p.name, p.read_bytes()) for p in gallery_paths()]


@st.cache_data(show_spinner=False, max_entries=4096)
def thumbnail(image_id: str, _ref: ImageSource, side: int = 192) -> bytes | None:
    """A small JPEG of a session image, keyed by its content hash (the ref itself is not hashed)."""
    loaded = _ref.load()
    if not loaded.ok:
        return None
    small, _ = downscale_for_display(loaded.image, side)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


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


@st.cache_data(show_spinner=False, max_entries=8)
def _stored_run(path: str, run_id: str, version: tuple) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, ImageSource]]:
    """A stored run's tables and images; `version` (status, record count) makes a run still being written reload."""
    s = _store(path)
    inf, det, _ = s.load_run(run_id)
    return inf, det, s.run_images(run_id)


def stored_run(run_id: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, ImageSource]]:
    """(inferences, detections, images) of a stored run; StoreError for an unknown one."""
    s = store()
    return _stored_run(str(s.path.resolve()), run_id, s.run_version(run_id))
