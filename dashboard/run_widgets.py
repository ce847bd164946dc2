"""The Run page's widget helpers: a model's checkpoint upload, the image sources, the untrained way out.
Each draws widgets and returns plain values; the page composes them."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.config import WEIGHTS_UNTRAINED
from core.errors import DeviceError, UnknownModelError, WeightsError
from core.execution.runner import RunSettings
from core.images import ImageSource, gallery_paths
from core.inference.runtimes import RuntimeRefusedError
from core.store import StoreError, current_user
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


def use_file(model: str) -> None:
    """Set `model` to a checkpoint file (a callback): its uploader appears under its Weights box."""
    choices.set_choice(f"run_weights_{model}", WEIGHTS_FILE)
    st.session_state.pop("run_weights_problem", None)


def offline_ui(missing: list[launch.WeightsStatus]) -> None:
    """One message for every model whose default weights are missing on an offline machine, with its ways out as
    buttons: untrained weights for all of them, or a checkpoint upload per model."""
    folder = missing[0].expected_file.parent if missing[0].expected_file else ""
    files = "\n".join(
        f"- **{md(s.model)}** needs `{s.expected_file.name if s.expected_file else '?'}`" for s in missing
    )
    noun = "this model" if len(missing) == 1 else f"these {len(missing)} models"
    st.error(
        f"**No internet, and the default weights of {noun} are not on this machine.**\n\n{files}\n\n"
        f"Choose a way out below, or copy the files into `{folder}` from a machine with internet."
    )
    models = [s.model for s in missing]
    st.button(
        "Use untrained for these models" if len(models) > 1 else f"Use untrained for {models[0]}",
        key="run_use_untrained", type="primary", on_click=use_untrained, args=(models,),
        help="Random weights: the run is marked untrained, for smoke tests and latency only.",
    )  # fmt: skip
    for m in models:
        st.button(f"Upload the checkpoint for {m}", key=f"run_use_file_{m}", on_click=use_file, args=(m,))


def download_notes(statuses: list[launch.WeightsStatus]) -> None:
    """One note for the default weights a run will download first (online)."""
    pending = [s for s in statuses if s.needs_download]
    if pending:
        files = ", ".join(f"{md(s.model)} (`{s.expected_file.name if s.expected_file else '?'}`)" for s in pending)
        st.info(f"Default weights will be downloaded once before the run: {files}.")


def measure_again_ui() -> None:
    """After a Run that left out pairs already measured: say so, and offer "Measure again" (every pair, a new run)."""
    again = st.session_state.get("run_again")
    if not again:
        return
    skipped, settings, refs = again
    st.info(
        f"{skipped} (image, model) pair{'s were' if skipped != 1 else ' was'} measured already in this session "
        "with these settings, so not again. Measure again to start a new run of every chosen image."
    )
    st.button(
        "Measure again", key="run_measure_again", on_click=submit_all, args=(settings, refs),
        help="A new run of the same images and settings; the earlier one stays.",
    )  # fmt: skip


def submit_all(settings: RunSettings, refs: list[ImageSource]) -> None:
    """Submit every (image, model) pair of the form again as a new run (a callback)."""
    st.session_state.pop("run_again", None)
    state.add_images(refs)
    try:
        launch.submit_planned(launch.plan_all(settings, refs), user=state.reviewer() or current_user())
    except (WeightsError, DeviceError, UnknownModelError, RuntimeRefusedError, StoreError, OSError) as exc:
        st.session_state["run_refused"] = str(exc)


def use_untrained(models: list[str]) -> None:
    """Switch the given models to untrained weights (a callback: widget state may change only before drawing)."""
    for m in models:
        choices.set_choice(f"run_weights_{m}", WEIGHTS_UNTRAINED)
    st.session_state.pop("run_weights_problem", None)
