"""The Run page's widget helpers: a model's checkpoint upload, the image sources, the untrained way out.
Each draws widgets and returns plain values; the page composes them."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.config import WEIGHTS_UNTRAINED
from core.images import ImageSource, gallery_paths
from dashboard import choices, launch, state
from dashboard.text import md

WEIGHTS_FILE = "file"


def weights_file_ui(col, model: str) -> str:
    """Uploader for one model's checkpoint (and optional class names); returns its saved path, or "" until uploaded."""
    ckpt = col.file_uploader(f"Checkpoint for {model}", type=["pth", "pt", "safetensors"], key=f"run_ckpt_{model}")
    names = col.file_uploader(
        "Class names (JSON, optional)", type=["json"], key=f"run_names_{model}",
        help='A list of names in label-id order, {"categories": [...]}, or COCO-style [{"id": 1, "name": ...}].',
    )  # fmt: skip
    kept_key = f"run_ckpt_path_{model}"
    if ckpt is None:  # the uploader forgets its file when the page is left: the saved checkpoint stays chosen
        earlier = str(st.session_state.get(choices.keep_key(kept_key), ""))
        if earlier and Path(earlier).is_file():
            col.caption(f"Using the checkpoint uploaded earlier: {Path(earlier).name}")
            return earlier
        return ""
    path = str(launch.save_checkpoint(ckpt.name, ckpt.getvalue(), names.getvalue() if names else None))
    choices.remember(kept_key, path)
    return path


def images_ui() -> list[ImageSource]:
    """Image source widgets; returns the chosen images."""
    sources = ["Bundled gallery", "Upload", "Server folder", "Camera"]
    source = choices.kept(st.radio, "Images", key="run_source", default=sources[0], options=sources, horizontal=True)
    if source == "Bundled gallery":
        names = [p.name for p in gallery_paths()]
        chosen = choices.kept(
            st.multiselect, "Gallery photos", key="run_gallery", default=names, options=names, many=True
        )
        return launch.refs_from_paths([p for p in gallery_paths() if p.name in chosen])
    if source == "Upload":
        files = st.file_uploader("Images", accept_multiple_files=True, key="run_upload")
        return launch.refs_from_uploads([(f.name, f.getvalue()) for f in files or []])
    if source == "Server folder":
        roots = launch.folder_roots()
        st.caption("Allowed roots: " + ", ".join(f"`{r}`" for r in roots))
        text = choices.kept(st.text_input, "Folder on the server", key="run_folder", default="")
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
        choices.set_choice(f"run_weights_{m}", WEIGHTS_UNTRAINED)
    st.session_state.pop("run_weights_problem", None)
