"""Live jobs on the pages: a job's progress panel (Run and Runs pages), the "live" banner of Compare and Gallery, and
the worker's status. Every part polls the store from a fragment (`st.fragment(run_every=...)`) only while the job is
queued or running, so widgets elsewhere on the page stay usable, and polling stops when the run ends. Nothing here
runs a model: the worker process does (core.execution.jobs)."""

from __future__ import annotations

import streamlit as st

from core.config import LIVE_REFRESH_S
from core.execution.jobs import ensure_worker, is_stale, worker_alive
from core.records import failed_rows, succeeded
from core.store import JobRow, Store, StoreError
from dashboard import cache, state
from dashboard.text import md

LIVE_PAUSE_KEY = "live_paused"
_SEEN_KEY = "live_seen_version"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not known yet"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def _job(run_id: str) -> JobRow | None:
    store = cache.store()
    try:
        job = store.job(run_id)
    except StoreError:
        return None
    if is_stale(job):  # the worker died or the machine restarted: say so now, not when the next worker comes
        store.reap_stale()
        job = store.job(run_id)
    elif job.status == "queued" and not worker_alive(store):
        ensure_worker(store)
    return job


def worker_status(store: Store, jobs: list[JobRow]) -> str:
    """The worker's state in words: busy with which run, idle, starting, or none (the next run starts one)."""
    workers = store.worker_states()
    active = [j for j in jobs if j.active]
    busy = {job for _, _, _, job in workers if job}
    if workers:
        host, _, pid, _ = workers[0]
        who = f"process {pid} on {host}" + (f", and {len(workers) - 1} more" if len(workers) > 1 else "")
        running = [j for j in active if j.run_id in busy]
        if running:
            j = running[0]
            return f"Worker busy ({who}): running {label(j.run_id, store)}, {j.done:,} of {j.total:,} done."
        queued = [j for j in active if j.status == "queued"]
        if queued:
            return f"Worker ({who}) is taking the next queued run."
        return f"Worker ready ({who}): idle, waiting for the next run."
    if active:
        return "Starting a worker for the queued run..."
    return "No worker running yet: pressing Run starts one (or run python -m core worker)."


def label(run_id: str, store: Store | None = None) -> str:
    """The run's name (its id when it cannot be read)."""
    try:
        return (store or cache.store()).run_label(run_id)
    except StoreError:
        return run_id


def worker_caption() -> None:
    """The worker's state in words; redrawn while a job is queued or running, so it never says "no worker" while
    one works."""
    store = cache.store()
    active = any(j.active for j in store.jobs(recent=5))

    @st.fragment(run_every=LIVE_REFRESH_S if active else None)
    def caption() -> None:
        jobs = store.jobs(recent=5)
        st.caption(md(worker_status(store, jobs)))

    caption()


def time_left(job: JobRow) -> float | None:
    """Seconds left from the measured time per image of each series still to run (core.store.JobRow.time_left_s)."""
    try:
        ms = cache.store().measured_ms(job.run_id, list(job.models))
    except StoreError:
        ms = {}
    return job.time_left_s(ms)


def _cancel(run_id: str) -> None:
    try:
        cache.store().cancel_job(run_id)
    except StoreError as exc:
        st.session_state["job_action_error"] = str(exc)


def _resume(run_id: str) -> None:
    store = cache.store()
    try:
        store.resume_job(run_id)
    except StoreError as exc:
        st.session_state["job_action_error"] = str(exc)
        return
    state.track_job(run_id)
    ensure_worker(store)


def _progress(job: JobRow) -> None:
    labels = {
        "queued": "Queued: waiting for the worker",
        "running": "Running" + (" (stopping after the image in flight)" if job.cancel_requested else ""),
        "finished": "Finished",
        "failed": "Failed",
        "cancelled": "Cancelled",
        "interrupted": "Interrupted: the worker stopped before the end",
    }
    st.markdown(
        f"**{md(label(job.run_id))}: {labels.get(job.status, job.status)}** ({job.done:,} of {job.total:,} done)"
    )
    for model, p in job.models.items():
        frac = p.done / p.total if p.total else 1.0
        errors = f", {p.errors} error(s)" if p.errors else ""
        st.progress(min(frac, 1.0), text=f"{md(model)}: {p.done:,} of {p.total:,}{errors}")
    if job.status == "running":
        c1, c2, c3 = st.columns(3)
        c1.metric("Images per second", f"{job.rate():.2f}")
        left = time_left(job)
        c2.metric("Time left", "estimating" if left is None else _duration(left),
                  help="From each model's measured time per image in this run (or its latest runs), times the "
                  "images it has left.")  # fmt: skip
        c3.metric("Errors so far", job.errors)
    if job.message:
        (st.error if job.status == "failed" else st.info)(md(job.message))


def _summary(job: JobRow) -> None:
    """What an ended job added: the success line and the images that could not be used, with their reason."""
    try:
        inf = cache.run_tables(job.run_id)[0]
    except StoreError:
        return
    ok = succeeded(inf)
    where = "to the session" if job.run_id in state.adopted_jobs() else "to the store"
    st.success(f"{len(ok)} inference(s) added {where} (run {job.run_id}).")
    failed = failed_rows(inf).drop_duplicates("image_id")
    if len(failed):
        st.warning(f"{len(failed)} image(s) could not be used:")
        st.dataframe(failed[["image_name", "error"]], hide_index=True)


def job_panel(run_id: str, *, key: str = "job") -> None:
    """A job's live progress, Cancel and Resume; refreshes itself while the job is queued or running."""
    first = _job(run_id)
    if first is None:
        return
    # The job may have ended after this script run's sidebar joined the session's ended jobs (state.sidebar_settings)
    # and before this line: then no fragment polls (it has ended) and the summary would say "added to the store".
    # Join it now and draw the page again with its records.
    if not first.active and state.adopt_ended_jobs():
        st.rerun()

    @st.fragment(run_every=LIVE_REFRESH_S if first.active else None)
    def panel() -> None:
        job = _job(run_id) or first
        if job.active != first.active:  # it ended (results; polling stops) or was resumed (polling starts)
            st.rerun()
        _progress(job)
        problem = st.session_state.pop("job_action_error", None)
        if problem:
            st.error(md(problem))
        if job.active:
            st.button("Cancel", key=f"{key}_cancel_{run_id}", on_click=_cancel, args=(run_id,),
                      disabled=job.cancel_requested, help="Stops after the image in flight; records are kept.")  # fmt: skip
        elif job.status in ("interrupted", "cancelled", "failed"):
            st.button("Resume", key=f"{key}_resume_{run_id}", on_click=_resume, args=(run_id,),
                      help="Runs only the (image, model) pairs that have no record yet, into the same run.")  # fmt: skip
        if not job.active:
            _summary(job)

    panel()


def banner(run_id: str | None) -> None:
    """On Compare and Gallery: while the viewed run is queued or running, a "live" mark with a pause, and the page
    reruns by itself when new records land (checked every LIVE_REFRESH_S from a fragment)."""
    if not run_id:
        return
    job = _job(run_id)
    if job is None or not job.active:
        return
    c1, c2 = st.columns([5, 1])
    paused = c2.toggle("Pause", key=LIVE_PAUSE_KEY, help="Stop redrawing while you look at something.")
    st.session_state[_SEEN_KEY] = cache.store().run_version(run_id)

    @st.fragment(run_every=None if paused else LIVE_REFRESH_S)
    def live() -> None:
        now = _job(run_id)
        if now is None:
            return
        if not paused and (not now.active or cache.store().run_version(run_id) != st.session_state.get(_SEEN_KEY)):
            st.rerun()  # records landed (or the run ended): redraw the page's charts with them
        mark = "paused" if paused else "live"
        st.info(f"**{mark}**: {md(label(run_id))} is {now.status}, {now.done:,} of {now.total:,} done; "
                f"{now.rate():.2f} per second, {_duration(time_left(now))} left")  # fmt: skip

    with c1:
        live()
