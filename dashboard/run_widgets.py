"""The Run page's widget helpers: a model's checkpoint upload, the image sources, the untrained way out.
Each draws widgets and returns plain values; the page composes them."""

from __future__ import annotations

import streamlit as st

from core.config import WEIGHTS_UNTRAINED
from core.images import ImageSource, gallery_paths
from dashboard import launch, state
from dashboard.text import md

WEIGHTS_FILE = "file"


def weights_file_ui(col, model: str) -> str:
    """Uploader for one model's checkpoint (and optional class names); returns its saved path, or "" until uploaded."""
    ckpt = col.file_uploader(f"Checkpoint for {model}", type=["pth", "pt", "safetensors"], key=f"run_ckpt_{model}")
    names = col.file_uploader(
        "Class names (JSON, optional)", type=["json"], key=f"run_names_{model}",
        help='A list of names in label-id order, {"categories": [...]}, or COCO-style [{"id": 1, "name": ...}].',
    )  # fmt: skip
    if ckpt is None:
        return ""
    return str(launch.save_checkpoint(ckpt.name, ckpt.getvalue(), names.getvalue() if names else None))


def images_ui() -> list[ImageSource]:
    """Image source widgets; returns the chosen images."""
    source = st.radio(
        "Images", ["Bundled gallery", "Upload", "Server folder", "Camera"], horizontal=True, key="run_source"
    )
    if source == "Bundled gallery":
        names = [p.name for p in gallery_paths()]
        chosen = st.multiselect("Gallery photos", names, default=names, key="run_gallery")
        return launch.refs_from_paths([p for p in gallery_paths() if p.name in chosen])
    if source == "Upload":
        files = st.file_uploader("Images", accept_multiple_files=True, key="run_upload")
        return launch.refs_from_uploads([(f.name, f.getvalue()) for f in files or []])
    if source == "Server folder":
        roots = launch.folder_roots()
        st.caption("Allowed roots: " + ", ".join(f"`{r}`" for r in roots))
        text = st.text_input("Folder on the server", key="run_folder")
        if not text:
            return []
        try:
            return launch.refs_from_paths([launch.resolve_folder(text, roots)])
        except launch.FolderNotAllowedError as exc:
            st.error(md(exc))
            return []
    shot = st.camera_input("Snapshot", key="run_camera")
    return launch.refs_from_uploads([(f"camera_{len(state.images()) + 1}.jpg", shot.getvalue())]) if shot else []


def use_untrained(models: list[str]) -> None:
    """Switch the given models to untrained weights (a callback: widget state may change only before drawing)."""
    for m in models:
        st.session_state[f"run_weights_{m}"] = WEIGHTS_UNTRAINED
    st.session_state.pop("run_weights_problem", None)
