"""The dashboard over the run store: runs are stored as they finish, links reopen them, reviews, run against run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.config import GALLERY_DIR
from core.execution.runner import RunSettings, run
from core.images import ImageSource
from core.store import Store, record_into
from dashboard import views
from tests.factories import finish_jobs

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
ROOT = Path(APP).parent.parent
SMALL = "ssdlite320_mobilenet_v3_large"


def app(**params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params.update(params)
    return at.run()


def run_in_ui(images: list[str]) -> AppTest:
    at = app()
    at.switch_page("../pages/run.py").run()
    at.multiselect(key="run_models").set_value([SMALL]).run()
    at.selectbox(key=f"run_weights_{SMALL}").set_value("untrained").run()
    at.multiselect(key="run_gallery").set_value(images).run()
    finish_jobs(at.button(key="run_go").click().run())  # the dashboard's worker, in this process
    assert not at.exception
    return at


def stored_run(store_dir: Path, names: list[str], **settings) -> str:
    """A run written straight into the store (as the CLI does)."""
    store = Store(store_dir)
    sources = [ImageSource.from_path(GALLERY_DIR / n).hashed() for n in names]
    from core.records import RunInfo, new_run_id, now_iso

    run_id = new_run_id()
    rs = RunSettings([SMALL], "untrained", device="cpu", warmup=0, **settings)
    store.start_run(RunInfo(run_id, now_iso(), {"models": [SMALL]}))
    output = run(sources, rs, run_id=run_id, on_result=record_into(store, run_id, rs.threshold, sources=sources))
    store.finish_run(run_id, info=output.info)
    return run_id


def test_a_ui_run_is_stored_record_by_record(private_run_store):
    at = run_in_ui(["cat.jpg", "coffee.jpg"])
    session = at.session_state["detlens_inferences"]
    store = Store(private_run_store)
    (run_id,) = store.list_runs()["run_id"]
    inf, det, info = store.load_run(run_id)
    assert set(inf["image_id"]) == set(session["image_id"]) and len(inf) == len(session) == 2
    assert len(det) == len(at.session_state["detlens_detections"])
    assert store.list_runs()["status"].iloc[0] == "finished" and info.settings["models"] == [SMALL]
    assert set(store.run_images(run_id)) == set(session["image_id"])


def test_a_link_reopens_the_run_image_and_threshold_after_a_refresh(private_run_store):
    run_id = stored_run(private_run_store, ["cat.jpg", "coffee.jpg"])
    coffee = ImageSource.from_path(GALLERY_DIR / "coffee.jpg").hashed().image_id
    at = app(run=run_id, image=coffee, t="0.05")  # a new browser session: nothing in session state
    at.switch_page("../pages/gallery.py")
    at.query_params.update(run=run_id, image=coffee, t="0.05")
    at.run()
    assert not at.exception
    assert at.session_state["gallery_image"] == coffee and at.session_state["detlens_threshold"] == 0.05
    assert at.get("plotly_chart"), "the stored run's overlays are drawn"
    assert any(run_id in i.value for i in at.sidebar.info)
    assert at.query_params["run"] == run_id and at.query_params["image"] == coffee


@pytest.mark.slow
def test_runs_page_lists_runs_from_the_cli(private_run_store):
    env = {**os.environ, "DETLENS_STORE": str(private_run_store), "DETLENS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "core", "detect", str(GALLERY_DIR / "cat.jpg"), "--models", SMALL, "--weights",
           "untrained", "--store", str(private_run_store), "--out", str(private_run_store / "csv"), "-q"]  # fmt: skip
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    at = app()
    at.switch_page("../pages/runs.py").run()
    assert not at.exception
    jobs_table, listed = (d.value for d in at.dataframe)  # a `detect --store` run is a job too: both tables list it
    assert jobs_table["status"].tolist() == ["finished"]
    assert len(listed) == 1 and listed["n_inferences"].iloc[0] == 1 and listed["status"].iloc[0] == "finished"


def test_stored_reviews_filter_the_gallery(private_run_store):
    """Verdicts are given on the Review page (tests/test_review_pages.py); the Gallery filters by them."""
    run_id = stored_run(private_run_store, ["cat.jpg", "coffee.jpg"])
    at = app(run=run_id)
    at.switch_page("../pages/gallery.py")
    at.query_params.update(run=run_id)
    at.run()
    at.selectbox(key="gallery_sort").set_value("name").run()
    at.toggle(key="gallery_desc").set_value(False).run()
    at.button(key="gallery_open_0").click().run()
    image = at.session_state["gallery_image"]
    Store(private_run_store).add_review(run_id, image, "ana", "both wrong", "missed the <b>cup</b>")
    at.run()
    assert not at.exception
    at.multiselect(key="gallery_verdicts").set_value(["both wrong"]).run()
    assert at.selectbox(key="gallery_pick").options == [at.selectbox(key="gallery_pick").format_func(image)]
    at.multiselect(key="gallery_verdicts").set_value([views.NOT_REVIEWED]).run()
    assert "gallery_image" not in at.session_state, "the open image is filtered out: back to the grid"
    assert len(at.get("image")) == 1 and any("**coffee.jpg**" in c.value.replace("\\", "") for c in at.caption)


def test_run_against_run_on_the_runs_page(private_run_store):
    first = stored_run(private_run_store, ["cat.jpg", "coffee.jpg"])
    second = stored_run(private_run_store, ["cat.jpg"], batch_size=1)
    at = app()
    at.switch_page("../pages/runs.py").run()
    at.selectbox(key="runs_a").set_value(first).run()
    at.selectbox(key="runs_b").set_value(second).run()
    assert not at.exception
    per_model = at.dataframe[1].value
    assert per_model["images"].tolist() == [1]  # only cat.jpg is in both
    assert per_model["only_a"].iloc[0] == per_model["only_b"].iloc[0] == 0  # seeded untrained models: same boxes


def test_run_delta_counts_on_known_tables():
    from tests import factories

    inf, det, _ = factories.seeded()
    inf_b = inf.assign(total_ms=inf["total_ms"] * 2)
    det_b = det[det["label"] != "dog"]
    per_image, per_model = views.run_delta(inf, det, inf_b, det_b, 0.5)
    frcnn = per_model.set_index("model").loc["fasterrcnn_resnet50_fpn"]
    assert (frcnn["images"], frcnn["only_a"], frcnn["only_b"], frcnn["matched"]) == (2, 1, 0, 2)
    assert frcnn["median_delta_pct"] == pytest.approx(100.0)
    assert (per_image["delta_ms"] == per_image["total_ms_a"]).all()


def test_the_session_view_is_back_after_leaving_a_stored_run(private_run_store):
    run_id = stored_run(private_run_store, ["cat.jpg"])
    at = app(run=run_id)
    assert at.session_state["detlens_run"] == run_id
    at.sidebar.button(key="view_session").click().run()
    assert "detlens_run" not in at.session_state and "run" not in at.query_params
    assert isinstance(at.session_state["detlens_inferences"], pd.DataFrame)
