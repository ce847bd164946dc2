"""Run: choose models, weights, device and images; run them with progress; results join the session."""

from __future__ import annotations

import streamlit as st

from core.config import (
    DEVICES,
    HEADLINE_MODELS,
    PRECISIONS,
    RUNTIME_EAGER,
    RUNTIME_TOKENS,
    UNTRAINED_MARK,
    WEIGHTS_DEFAULT,
    WEIGHTS_UNTRAINED,
)
from core.devices import DeviceError, check_precision, resolve_device
from core.images import ImageSource, gallery_paths
from core.models import model_names
from core.records import failed_rows, succeeded
from core.runner import RunSettings
from core.runtimes import RuntimeRefusedError, check_runtime
from core.store import current_user
from core.weights import WeightsError
from dashboard import launch, state
from dashboard.text import md

state.init()
st.title("Run detectors")


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


def settings_ui() -> tuple[RunSettings, str] | None:
    """Model, weights and device widgets; returns the settings and the resolved device, or None when unusable."""
    models = st.multiselect("Models", model_names(), default=list(HEADLINE_MODELS), key="run_models")
    weights: dict[str, str] = {}
    runtimes: dict[str, list[str]] = {}
    if models:
        cols = st.columns(min(len(models), 3))
        for i, m in enumerate(models):
            col = cols[i % len(cols)]
            choice = col.selectbox(
                f"Weights: {m}", [WEIGHTS_DEFAULT, WEIGHTS_UNTRAINED, WEIGHTS_FILE], key=f"run_weights_{m}",
                help="default: torchvision's COCO weights (downloaded once). untrained: random, for latency only. "
                "file: your checkpoint (.pth state dict or .safetensors), with its class names for a fine-tuned one.",
            )  # fmt: skip
            weights[m] = weights_file_ui(col, m) if choice == WEIGHTS_FILE else choice
            runtimes[m] = col.multiselect(
                f"Runtimes: {m}", RUNTIME_TOKENS, default=[RUNTIME_EAGER], key=f"run_runtimes_{m}",
                help="Each runtime is its own series, compared with eager (same weights) in Compare. ONNX Runtime and "
                "OpenVINO run on the CPU; their export is cached in the store folder. bf16: OpenVINO on CPUs with it.",
            )  # fmt: skip
        if any(not w for w in weights.values()):
            st.info("Upload the checkpoint for each model set to 'file'.")
            return None
    c1, c2, c3, c4 = st.columns(4)
    device_choice = c1.selectbox("Device", DEVICES, key="run_device")
    precision = c2.selectbox("Precision", PRECISIONS, key="run_precision")
    warmup = c3.number_input("Warm-up calls", 0, 10, 1, key="run_warmup")
    batch = c4.number_input("Batch size", 1, 16, 1, key="run_batch")
    cpu_retry = c4.checkbox(
        "Retry on CPU after GPU out of memory", value=True, key="run_oom_cpu_retry",
        help="A batch that runs out of GPU memory runs again on the CPU (recorded as device cpu); off, it fails.",
    )  # fmt: skip
    if not models:
        st.info("Choose at least one model.")
        return None
    try:
        device = resolve_device(device_choice)
        check_precision(precision, device)
    except DeviceError as exc:
        st.error(md(exc))
        return None
    settings = RunSettings(
        models=models, weights=weights, device=str(device), precision=precision, threshold=state.threshold(),
        warmup=int(warmup), batch_size=int(batch), oom_cpu_retry=bool(cpu_retry),
        runtimes={m: r or [RUNTIME_EAGER] for m, r in runtimes.items()},
    )  # fmt: skip
    try:
        for series in settings.series():
            check_runtime(series.runtime, series.precision, device)
    except RuntimeRefusedError as exc:
        st.error(md(exc))
        return None
    return settings, str(device)


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


chosen = settings_ui()
refs = images_ui()
st.caption(f"{len(refs)} image(s) chosen.")

if chosen:
    settings, device = chosen
    statuses = [launch.weights_status(m, settings.weights_for(m)) for m in settings.models]
    for s in statuses:
        if s.needs_download:
            st.info(f"{s.model}: default weights will be downloaded once to `{s.expected_file}`.")
    if any(settings.weights_for(m) == WEIGHTS_UNTRAINED for m in settings.models):
        st.warning(f"Untrained models selected: {UNTRAINED_MARK}. Use them for smoke tests and latency only.")

    if st.button("Run", type="primary", disabled=not refs, key="run_go"):
        state.add_images(refs)
        planned = launch.plan(settings, refs, device)
        if planned.skipped:
            st.caption(f"{planned.skipped} (image, model) pair(s) already done with these settings: not run again.")
        if not planned.todo:
            st.success("Everything chosen is already in the session.")
        else:
            with st.status("Running...", expanded=True) as status:
                bar = st.progress(0.0, text="starting")

                def on_result(result, done, total):
                    bar.progress(done / total, text=f"{done}/{total}: {result.model} on {md(result.image_name)}")

                def on_download(model):
                    dl = st.progress(0.0, text=f"downloading weights for {model}")

                    def update(done, total):
                        frac = done / total if total else 0.0
                        dl.progress(min(frac, 1.0), text=f"{model} weights: {done / 1e6:.1f} MB")

                    return update

                def on_export(series, step):
                    st.write(f"{md(series)}: {md(step)} ...")

                try:
                    output = launch.execute(
                        planned,
                        on_result=on_result,
                        on_download=on_download,
                        on_export=on_export,
                        user=state.reviewer() or current_user(),
                    )
                except WeightsError as exc:
                    status.update(label="Weights unavailable", state="error")
                    st.error(md(exc))
                    st.session_state["run_weights_problem"] = [m for m in settings.models]
                    output = None
                else:
                    status.update(label="Done", state="complete", expanded=False)
            if output is not None:
                inf = output.inferences
                failed = failed_rows(inf).drop_duplicates("image_id")
                st.success(f"{len(succeeded(inf))} inference(s) added to the session (run {output.info.run_id}).")
                if len(failed):
                    st.warning(f"{len(failed)} image(s) could not be used:")
                    st.dataframe(failed[["image_name", "error"]], hide_index=True)

    problem = st.session_state.get("run_weights_problem")
    if problem:
        st.caption("Default weights cannot be had here. Untrained weights are an explicit choice for latency studies.")
        st.button(
            "Use untrained weights for these models", key="run_use_untrained", on_click=use_untrained, args=(problem,)
        )
