"""Runs: every stored run (from this dashboard and the CLI); open one, share it, export/import it, compare two."""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from core.store import StoreError, current_user
from dashboard import cache, launch, live, state, tables, views, widgets
from dashboard.pagelist import page
from dashboard.text import md

state.init()
st.title("Runs")
store = cache.store()
st.caption(f"Store: `{store.path}` (set `DETLENS_STORE` to share one folder between the dashboard and the CLI).")

st.subheader("Jobs")
live.worker_caption()
jobs = store.jobs(recent=10)
runs = store.list_runs()
names = widgets.run_labels(runs)
if not jobs:
    st.caption("No job yet: runs started on the Run page or with `python -m core submit` are jobs.")
else:
    st.dataframe(
        [{"run": names.get(j.run_id, j.run_id), "status": j.status, "done": j.done / max(1, j.total),
          "images x models": f"{j.done:,}/{j.total:,}", "errors": j.errors, "by": j.submitted_by,
          "submitted": j.submitted_at[:16].replace("T", " "), "run_id": j.run_id} for j in jobs],
        hide_index=True,
        column_config={
            "run": st.column_config.TextColumn("Run", width="large"),
            "done": st.column_config.ProgressColumn("Done", format="percent", min_value=0.0, max_value=1.0),
            "run_id": st.column_config.TextColumn("Run id", width="small"),
        },
    )  # fmt: skip
    watched = [j.run_id for j in jobs if j.active or j.status == "interrupted"]
    if watched:
        live.job_panel(watched[0], key="runs_job")

st.subheader("Stored runs")
if runs.empty:
    st.info("No stored run yet: runs started on the Run page or with `python -m core detect --store` appear here.")
else:
    event = st.dataframe(
        runs,
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key="runs_table",
        column_order=("name", "status", "n_images", "models", "n_inferences", "n_errors", "n_reviews", "untrained",
                      "user", "created_at", "device", "run_id"),
        column_config=tables.RUN_LIST_CONFIG,
    )  # fmt: skip
    rows = event.selection.rows if event and event.selection else []
    chosen = runs.iloc[rows[0]]["run_id"] if rows else None
    if not chosen:
        st.caption("Select a run (the box at the left of its row) to open, rename, export or measure it again.")
    if chosen:
        with st.form(f"runs_rename_{chosen}", border=False):
            n1, n2 = st.columns([4, 1], vertical_alignment="bottom")
            new_name = n1.text_input("Name", value=names[chosen], max_chars=120, key=f"runs_name_{chosen}")
            if n2.form_submit_button("Rename", width="stretch"):
                store.rename_run(chosen, new_name)
                st.rerun()
        c1, c2, c3, c4 = st.columns(4)
        if c1.button("Open in Gallery", key="runs_open_gallery", type="primary", width="stretch"):
            state.view_run(chosen)
            st.switch_page(page("pages/gallery.py"), query_params={"run": chosen})
        if c2.button("Open in Compare", key="runs_open_compare", width="stretch"):
            state.view_run(chosen)
            st.switch_page(page("pages/compare.py"), query_params={"run": chosen})
        if c3.button(
            "Measure again", key="runs_measure_again", width="stretch", disabled=not store.is_job(chosen),
            help="A new run of the same images and settings (this one stays as it is).",
        ):  # fmt: skip
            try:
                launch.measure_again(chosen, user=state.reviewer() or current_user())
            except (StoreError, OSError, ValueError) as exc:
                st.error(f"Not started: {md(exc)}")
            else:
                st.switch_page(page("pages/run.py"))
        prepared = st.session_state.get("runs_export_zip")
        if prepared and prepared[0] == chosen:
            c4.download_button("Download zip", prepared[1], f"detlens-run-{chosen}.zip", key="runs_download",
                               width="stretch")  # fmt: skip
        elif c4.button("Prepare export", key="runs_export", width="stretch"):
            with tempfile.TemporaryDirectory() as tmp:
                path = store.export_run(chosen, Path(tmp) / f"detlens-run-{chosen}.zip")
                st.session_state["runs_export_zip"] = (chosen, path.read_bytes())
            st.rerun()
        st.caption(f"Link to this run: add `?run={chosen}` to the dashboard's address (the Gallery adds the image).")

with st.expander("Import a run (a zip exported by DetLens)"):
    upload = st.file_uploader("Run zip", type=["zip"], key="runs_import_file")
    if upload is not None and st.button("Import", key="runs_import"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "run.zip"
            path.write_bytes(upload.getvalue())
            try:
                run_id = store.import_run(path)
            except StoreError as exc:
                st.error(md(exc))
            else:
                st.success(f"Imported run {run_id}.")
                st.rerun()

st.subheader("Run against run")
st.caption(
    "The same models before and after a change (fp32 vs fp16, CPU vs GPU, two checkpoints): per image and model."
)
if len(runs) < 2:
    st.info("Two stored runs are needed.")
else:
    pair = widgets.pick_two(runs["run_id"].tolist(), ("Run A", "Run B"), "runs", index=(1, 0), noun="runs", names=names)
    if pair:
        run_a, run_b = pair
        inf_a, det_a, _ = cache.run_tables(run_a)
        inf_b, det_b, _ = cache.run_tables(run_b)
        per_image, per_model = views.run_delta(inf_a, det_a, inf_b, det_b, state.threshold())
        if per_model.empty:
            st.info("The two runs share no (image, model) pair.")
        else:
            st.dataframe(
                per_model,
                hide_index=True,
                column_config={
                    "median_ms_a": st.column_config.NumberColumn("median ms A", format="%.1f"),
                    "median_ms_b": st.column_config.NumberColumn("median ms B", format="%.1f"),
                    "median_delta_pct": st.column_config.NumberColumn("B vs A", format="%+.1f%%"),
                },
            )
            st.dataframe(per_image, hide_index=True)
