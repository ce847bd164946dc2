"""Run: choose models, weights, device and images; submit them as a job (a worker runs it) and follow its progress
live; the ended job's results join the session."""

from __future__ import annotations

from dataclasses import replace

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
from core.errors import DeviceError, UnknownModelError
from core.execution.runner import RunSettings
from core.inference.models import model_names
from core.inference.series import RuntimeRefusedError
from core.inference.weights import WeightsError, WeightsUnavailableError
from core.store import StoreError, current_user
from dashboard import cache, choices, launch, live, run_widgets, state
from dashboard.text import md

state.init()
st.title("Run detectors")


def settings_ui() -> tuple[RunSettings, str] | None:
    """Model, weights and device widgets; returns the settings and the resolved device, or None when unusable."""
    models = choices.kept(
        st.multiselect, "Models", key="run_models", default=list(HEADLINE_MODELS), options=model_names(), many=True
    )
    weights: dict[str, str] = {}
    runtimes: dict[str, list[str]] = {}
    if models:
        cols = st.columns(min(len(models), 3))
        for i, m in enumerate(models):
            col = cols[i % len(cols)]
            choice = choices.kept(
                col.selectbox, f"Weights: {m}", key=f"run_weights_{m}", default=WEIGHTS_DEFAULT,
                options=[WEIGHTS_DEFAULT, WEIGHTS_UNTRAINED, run_widgets.WEIGHTS_FILE],
                help="default: torchvision's COCO weights (downloaded once). untrained: random, for latency only. "
                "file: your checkpoint (.pth state dict or .safetensors); a fine-tuned one with its class names (JSON), "
                "else its classes are numbered (class 1, class 2, ...).",
            )  # fmt: skip
            weights[m] = run_widgets.weights_file_ui(col, m) if choice == run_widgets.WEIGHTS_FILE else choice
            runtimes[m] = choices.kept(
                col.multiselect, f"Runtimes: {m}", key=f"run_runtimes_{m}", default=[RUNTIME_EAGER],
                options=RUNTIME_TOKENS, many=True,
                help="Each runtime is its own series, compared with eager (same weights) in Compare. ONNX Runtime and "
                "OpenVINO run on the CPU; their export is cached in the store folder. bf16: on GPUs and CPUs that have it.",
            )  # fmt: skip
        if any(not w for w in weights.values()):
            st.info("Upload the checkpoint for each model set to 'file'.")
            return None
    c1, c2, c3, c4 = st.columns(4)
    device_choice = choices.kept(c1.selectbox, "Device", key="run_device", default=DEVICES[0], options=DEVICES)
    precision = choices.kept(c2.selectbox, "Precision", key="run_precision", default=PRECISIONS[0], options=PRECISIONS)
    warmup = choices.kept(c3.number_input, "Warm-up calls", 0, 10, key="run_warmup", default=1)
    batch = choices.kept(c4.number_input, "Batch size", 1, 16, key="run_batch", default=1)
    cpu_retry = choices.kept(
        st.checkbox, "Retry on CPU after GPU out of memory", key="run_oom_cpu_retry", default=True,
        help="A batch that runs out of GPU memory runs again on the CPU (recorded as device cpu); off, it fails.",
    )  # fmt: skip
    if not models:
        st.info("Choose at least one model.")
        return None
    settings = RunSettings(
        models=models, weights=weights, device=device_choice, precision=precision, threshold=state.threshold(),
        warmup=int(warmup), batch_size=int(batch), oom_cpu_retry=bool(cpu_retry),
        runtimes={m: r or [RUNTIME_EAGER] for m, r in runtimes.items()},
    )  # fmt: skip
    try:  # the one check every path makes (weights files: launch.weights_status, below)
        device = str(settings.resolve(check_files=False).device)
    except (DeviceError, RuntimeRefusedError, UnknownModelError, WeightsError) as exc:
        st.error(md(exc))
        return None
    return replace(settings, device=device), device


chosen = settings_ui()
refs = run_widgets.images_ui()
st.caption(f"{len(refs)} image(s) chosen.")

if chosen:
    settings, device = chosen
    statuses = [launch.weights_status(m, settings.weights_for(m)) for m in settings.models]
    offline = launch.missing_offline(statuses)
    if offline:
        run_widgets.offline_ui(offline)
    else:
        run_widgets.download_notes(statuses)
    if any(settings.weights_for(m) == WEIGHTS_UNTRAINED for m in settings.models):
        st.warning(f"Untrained models selected: {UNTRAINED_MARK}. Use them for smoke tests and latency only.")

    if st.button("Run", type="primary", disabled=not refs or bool(offline), key="run_go"):
        st.session_state.pop("run_refused", None)
        st.session_state.pop("run_weights_problem", None)
        state.add_images(refs)
        planned = launch.plan_session(settings, refs, device)
        st.session_state.pop("run_again", None)
        if planned.skipped:  # kept so that "Measure again" can run every pair on purpose
            st.session_state["run_again"] = (planned.skipped, settings, refs)
        if planned.todo:
            try:
                launch.submit_planned(planned, user=state.reviewer() or current_user())
            except WeightsUnavailableError as exc:
                st.session_state["run_weights_problem"] = (list(settings.models), str(exc))
            except (WeightsError, DeviceError, UnknownModelError, RuntimeRefusedError, StoreError, OSError) as exc:
                st.session_state["run_refused"] = str(exc)

    run_widgets.measure_again_ui()

    refused = st.session_state.get("run_refused")
    if refused:
        st.error(f"The run was not started: {md(refused)}")

    problem = st.session_state.get("run_weights_problem")
    if problem and not offline:  # the download failed after the page's check: the same message, every model named
        models, message = problem
        failed = [s for s in statuses if s.needs_download and s.model in models]
        if failed:
            run_widgets.offline_ui(failed)
        else:
            st.error(f"The run was not started: {md(message)}")

live.worker_caption()
shown = st.session_state.get(state.LAST_JOB_KEY) or state.viewed_run()
if shown and cache.store().has_run(shown) and cache.store().is_job(shown):
    st.subheader("Job")
    live.job_panel(shown, key="run_job")
