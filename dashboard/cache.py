"""Cached wrappers around core loaders: models with st.cache_resource, derived data with st.cache_data."""

from __future__ import annotations

import io

import pandas as pd
import streamlit as st

from core.engine import Detector, load_detector
from core.images import ImageSource, LoadedImage, downscale_for_display, gallery_paths
from core.models import list_models
from core.weights import ProgressFn, cached_weights_path


@st.cache_resource(show_spinner=False, max_entries=8)
def detector(model: str, weights: str, device: str, precision: str, _progress: ProgressFn | None = None) -> Detector:
    """One loaded detector per (model, weights, device, precision), shared by every browser session.

    Never mutate it (no .train()/.to()): the engine runs it under inference_mode with a per-device lock.
    `_progress` (not part of the cache key) reports a weights download.
    """
    return load_detector(model, weights, device, precision, progress=_progress)


@st.cache_data(show_spinner=False)
def model_table() -> pd.DataFrame:
    """The registry as a table: published figures from each weights enum's meta, and whether weights are cached."""
    return pd.DataFrame(
        [
            {
                "model": s.name,
                "title": s.title,
                "box_map": s.box_map,
                "gflops": s.gflops,
                "params_m": round(s.params / 1e6, 2) if s.params else None,
                "file_size_mb": s.file_size_mb,
                "classes": s.num_classes,
                "weights_cached": cached_weights_path(s).is_file(),
                "note": s.note,
            }
            for s in list_models()
        ]
    )


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
