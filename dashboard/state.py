"""Session state behind small helpers: what the pages show, the session's own results, shared settings, the URL.

Pages show one *view*: this browser session's results (the default), or a stored run named by `?run=RUN_ID`. Every run
started here is also written to the run store, so a refresh or a colleague's link finds it as a stored run. The view,
the threshold (`t`) and the Gallery's image and models live in the URL's query parameters as well as in session state:
a refresh restores them, and a copied link opens the same view.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import streamlit as st

from core.analytics import RunFrame
from core.config import DEFAULT_THRESHOLD
from core.images import ImageSource
from core.records import RunInfo, empty_detections, empty_inferences
from core.store import StoreError
from dashboard.text import md

_INF, _DET, _IMAGES, _RUNS = "detlens_inferences", "detlens_detections", "detlens_images", "detlens_runs"
_FRAME = "detlens_frame"  # (key of the session tables, their RunFrame)
THRESHOLD_KEY = "detlens_threshold"
RUN_KEY = "detlens_run"  # the stored run being viewed; absent: this session
REVIEWER_KEY = "detlens_reviewer"
RUN_PARAM, THRESHOLD_PARAM = "run", "t"
_JOBS, _ADOPTED = "detlens_jobs", "detlens_adopted_jobs"  # jobs this session submitted: pending, and joined
LAST_JOB_KEY = "detlens_last_job"  # the job the Run page shows
_ENDED = ("finished", "failed", "cancelled")


def init() -> None:
    """Create the session's tables once and adopt the URL's view and threshold (idempotent: every page calls it)."""
    ss = st.session_state
    if _INF not in ss:
        ss[_INF] = empty_inferences()
        ss[_DET] = empty_detections()
        ss[_IMAGES] = {}
        ss[_RUNS] = []
        params = st.query_params
        if params.get(RUN_PARAM):
            ss[RUN_KEY] = params[RUN_PARAM]
        with contextlib.suppress(ValueError):  # a malformed ?t= keeps the default
            ss.setdefault(THRESHOLD_KEY, min(1.0, max(0.0, float(params.get(THRESHOLD_PARAM, "")))))
    ss.setdefault(THRESHOLD_KEY, DEFAULT_THRESHOLD)


def sync_url() -> None:
    """Write the view and threshold into the URL (navigating between pages drops query parameters)."""
    run_id = st.session_state.get(RUN_KEY)
    if run_id:
        st.query_params[RUN_PARAM] = run_id
    else:
        st.query_params.pop(RUN_PARAM, None)
    st.query_params[THRESHOLD_PARAM] = f"{threshold():g}"


def viewed_run() -> str | None:
    """The stored run the pages show, or None for this session's results."""
    init()
    return st.session_state.get(RUN_KEY) or None


def view_run(run_id: str | None) -> None:
    """Show a stored run (None: back to this session)."""
    if run_id:
        st.session_state[RUN_KEY] = run_id
    else:
        st.session_state.pop(RUN_KEY, None)


def _stored() -> str | None:
    """The viewed stored run if it can be read (else a warning, and back to this session)."""
    run_id = viewed_run()
    if run_id:
        from dashboard import cache  # cache imports the store; state stays importable without a server

        try:
            cache.store().run_version(run_id)
        except StoreError as exc:
            st.warning(f"Stored run unavailable ({exc}); showing this session instead.")
            view_run(None)
            return None
    return run_id


def frame() -> RunFrame:
    """The viewed records as a RunFrame (core.analytics): the stored run's, loaded once per server and version, or
    this session's (latest run per image and model), rebuilt only when the session's tables change. Pages aggregate
    through it instead of holding the whole detections table."""
    run_id = _stored()
    if run_id:
        from dashboard import cache

        return cache.run_frame(run_id)
    ss = st.session_state
    key = (id(ss[_INF]), id(ss[_DET]), len(ss[_INF]), len(ss[_DET]))
    memo = ss.get(_FRAME)
    if memo is None or memo[0] != key:
        memo = ss[_FRAME] = (key, RunFrame.from_frames(ss[_INF], ss[_DET]))
    return memo[1]


def inferences() -> pd.DataFrame:
    """The viewed inferences table (this session's, or the stored run's)."""
    return frame().inferences if _stored() else st.session_state[_INF]


def images() -> dict[str, ImageSource]:
    run_id = _stored()
    if run_id:
        from dashboard import cache

        return cache.run_images(run_id)
    return st.session_state[_IMAGES]


def session_inferences() -> pd.DataFrame:
    """This session's own inferences, whatever is viewed (the Run page's "already done" check)."""
    init()
    return st.session_state[_INF]


def runs() -> list[RunInfo]:
    init()
    return st.session_state[_RUNS]


def reviewer() -> str:
    """The reviewer name this browser session gave (remembered for the session)."""
    return str(st.session_state.get(REVIEWER_KEY, "") or "").strip()


def threshold() -> float:
    init()
    return float(st.session_state[THRESHOLD_KEY])


def add_images(refs: list[ImageSource]) -> None:
    init()
    store = st.session_state[_IMAGES]
    for ref in refs:
        store.setdefault(ref.image_id, ref)


def add_run(info: RunInfo, inferences_df: pd.DataFrame, detections_df: pd.DataFrame) -> None:
    """Append a run's rows to the session tables."""
    init()
    ss = st.session_state
    ss[_INF] = pd.concat([ss[_INF], inferences_df], ignore_index=True) if len(ss[_INF]) else inferences_df
    if len(detections_df):
        ss[_DET] = pd.concat([ss[_DET], detections_df], ignore_index=True) if len(ss[_DET]) else detections_df
    ss[_RUNS].append(info)


def track_job(run_id: str) -> None:
    """A job this session submitted (or resumed): its records join the session tables when it ends."""
    init()
    pending = st.session_state.setdefault(_JOBS, [])
    if run_id not in pending:
        pending.append(run_id)
    st.session_state[LAST_JOB_KEY] = run_id
    st.session_state.setdefault(_ADOPTED, set()).discard(run_id)


def adopted_jobs() -> set[str]:
    return set(st.session_state.get(_ADOPTED, set()))


def adopt_ended_jobs() -> list[str]:
    """Join the records of this session's jobs that ended (finished, failed, cancelled) to the session tables, once
    each; returns their run ids. One cheap status query per pending job, nothing when there is none."""
    pending = st.session_state.get(_JOBS) or []
    if not pending:
        return []
    from dashboard import cache

    store = cache.store()
    adopted = []
    for run_id in list(pending):
        try:
            status, _ = store.run_version(run_id)
            if status not in _ENDED:
                continue
            inf, det, info = store.load_run(run_id)
            images = store.run_images(run_id)
        except StoreError:
            pending.remove(run_id)
            continue
        session = st.session_state[_INF]
        if len(session):  # a resumed job joins again: only the pairs the session does not have from it
            seen = set(
                zip(
                    session.loc[session["run_id"] == run_id, "image_id"],
                    session.loc[session["run_id"] == run_id, "model"],
                    strict=True,
                )
            )
            # boolean arrays, not lists: an empty list selects no columns instead of no rows
            inf = inf.loc[np.fromiter(((i, m) not in seen for i, m in zip(inf["image_id"], inf["model"], strict=True)),
                                      dtype=bool, count=len(inf))]  # fmt: skip
            det = det.loc[np.fromiter(((i, m) not in seen for i, m in zip(det["image_id"], det["model"], strict=True)),
                                      dtype=bool, count=len(det))]  # fmt: skip
        add_images([ref for image_id, ref in images.items() if image_id not in st.session_state[_IMAGES]])
        add_run(info, inf.reset_index(drop=True), det.reset_index(drop=True))
        pending.remove(run_id)
        if viewed_run() == run_id:  # its records are now in the session's own tables: show the whole session
            view_run(None)
        st.session_state.setdefault(_ADOPTED, set()).add(run_id)
        adopted.append(run_id)
    return adopted


def done_keys() -> set[tuple[str, str, str, str, str]]:
    """(image_id, model, weights, device, precision) already processed without error in this session."""
    inf = session_inferences()
    ok = inf[inf["error"] == ""]
    cols = ["image_id", "model", "weights", "device", "precision"]
    return set(ok[cols].itertuples(index=False, name=None))


def clear() -> None:
    """Forget the session's results and images (stored runs stay in the store)."""
    for key in (_INF, _DET, _IMAGES, _RUNS, RUN_KEY, _FRAME, _JOBS, _ADOPTED, LAST_JOB_KEY):
        st.session_state.pop(key, None)
    init()


def sidebar_settings() -> None:
    """Settings every page shares, drawn once by the frame; the URL follows them. Jobs of this session that ended
    join the session tables here, whatever page is open."""
    init()
    adopt_ended_jobs()
    st.sidebar.slider(
        "Confidence threshold",
        min_value=0.0,
        max_value=1.0,
        step=0.05,
        key=THRESHOLD_KEY,
        help="Boxes below it are hidden and not counted. Changing it never runs a model again.",
    )
    run_id = viewed_run()
    if run_id:
        from dashboard import cache

        try:
            label = cache.store().run_label(run_id)
        except StoreError:
            label = run_id
        st.sidebar.info(f"Viewing stored run **{md(label)}**  \n`{run_id}`")
        st.sidebar.button("Back to this session", key="view_session", on_click=view_run, args=(None,))
    if _stored():  # counted in the store: a page that needs no records (Home) never loads the run
        from dashboard import cache

        n_images, n_records, n_boxes = cache.run_counts(run_id)
    else:
        rf = frame()
        n_images, n_records, n_boxes = rf.inferences["image_id"].nunique(), len(rf.inferences), rf.n_boxes
    st.sidebar.caption(f"{'Run' if run_id else 'Session'}: {n_images} images, {n_records} inferences, {n_boxes} boxes")
    sync_url()
