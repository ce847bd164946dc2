"""Every page through Streamlit's AppTest: empty and seeded sessions, a real run, live filters, agreement numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.config import UNTRAINED_MARK
from dashboard.pagelist import PAGES
from dashboard.views import COMPARE_TAB_KEY
from tests import factories
from tests.factories import finish_jobs

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
TIMEOUT = 120


def open_page(page: str, seed: tuple | None = None, threshold: float | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if seed is not None:
        inf, det, refs = seed
        at.session_state["detlens_inferences"] = inf
        at.session_state["detlens_detections"] = det
        at.session_state["detlens_images"] = refs
        at.session_state["detlens_runs"] = []
    if threshold is not None:
        at.session_state["detlens_threshold"] = threshold
    at.run()
    if page != "pages/home.py":
        at.switch_page(f"../{page}").run()
    return at


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "warning", "info", "error", "success") for e in at.get(kind)]
    return "\n".join(str(p) for p in parts)


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


@pytest.mark.parametrize("page", [p.path for p in PAGES])
def test_every_page_runs_on_an_empty_session(page):
    at = open_page(page)
    assert not at.exception
    assert at.title


@pytest.mark.parametrize("page", [p.path for p in PAGES])
def test_every_page_runs_on_a_seeded_session(page):
    at = open_page(page, factories.seeded())
    assert not at.exception
    assert UNTRAINED_MARK not in texts(at)


@pytest.mark.parametrize("page", ["pages/gallery.py", "pages/compare.py", "pages/data.py"])
def test_untrained_results_are_marked(page):
    at = open_page(page, factories.seeded(weights="untrained"))
    assert not at.exception
    assert UNTRAINED_MARK in texts(at)


def test_home_shows_the_gallery_and_every_model():
    at = open_page("pages/home.py")
    models = at.dataframe[0].value
    assert len(models) == 12 and models["model"].iloc[0] == "fasterrcnn_resnet50_fpn"
    assert len(at.get("image")) == len(list((Path(__file__).resolve().parent.parent / "gallery").glob("*.jpg")))


@pytest.mark.slow
def test_run_page_runs_untrained_models_and_rows_appear():
    at = open_page("pages/run.py")
    at.multiselect(key="run_gallery").set_value(["cat.jpg", "coffee.jpg"])
    for model in ("fasterrcnn_resnet50_fpn", "ssdlite320_mobilenet_v3_large"):
        at.selectbox(key=f"run_weights_{model}").set_value("untrained")
    at.run()
    finish_jobs(at.button(key="run_go").click().run(timeout=600))
    assert not at.exception
    inf = at.session_state["detlens_inferences"]
    assert len(inf) == 4 and set(inf["weights"]) == {"untrained"} and (inf["error"] == "").all()
    assert any("4 inference(s) added" in s.value for s in at.success)
    # the same images and settings again: nothing is recomputed (no second job is even queued)
    at.button(key="run_go").click().run(timeout=600)
    assert any("4 (image, model) pairs were measured already" in c.value for c in at.info)
    finish_jobs(at)
    assert len(at.session_state["detlens_inferences"]) == 4
    from core.store import Store, default_store_dir

    assert len(Store(default_store_dir()).jobs()) == 1
    # "Measure again": a new run of the same images and settings, on purpose
    finish_jobs(at.button(key="run_measure_again").click().run(timeout=600))
    assert not at.exception
    inf = at.session_state["detlens_inferences"]
    assert len(inf) == 8 and inf["run_id"].nunique() == 2
    assert len(Store(default_store_dir()).jobs()) == 2


def test_run_page_says_why_default_weights_are_missing_and_offers_untrained(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("DETLENS_OFFLINE", "1")
    at = open_page("pages/run.py")
    at.multiselect(key="run_models").set_value(["ssdlite320_mobilenet_v3_large"]).run()
    at.multiselect(key="run_gallery").set_value(["cat.jpg"]).run()
    assert "will be downloaded" not in texts(at) and at.button(key="run_go").disabled
    assert any("ssdlite320_mobilenet_v3_large_coco-a79551df.pth" in e.value.replace("\\", "") for e in at.error)
    at.button(key="run_use_untrained").click().run()
    assert at.selectbox(key="run_weights_ssdlite320_mobilenet_v3_large").value == "untrained"


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [(0.5, ["2 boxes", "1 boxes"]), (0.2, ["2 boxes", "2 boxes"]), (0.92, ["1 boxes", "0 boxes"])],
)
def test_gallery_threshold_changes_the_counts_without_running_a_model(threshold, expected):
    at = open_page("pages/gallery.py", factories.seeded(), threshold=threshold)
    at.selectbox(key="gallery_sort").set_value("name").run()
    at.button(key="gallery_open_0").click().run()  # the grid first; its first thumbnail opens the overlay
    assert not at.exception
    shown = metrics(at)
    assert [shown["fasterrcnn_resnet50_fpn"], shown["ssdlite320_mobilenet_v3_large"]] == expected
    assert at.get("plotly_chart")


def test_gallery_next_and_previous():
    at = open_page("pages/gallery.py", factories.seeded())
    at.selectbox(key="gallery_sort").set_value("name").run()
    at.toggle(key="gallery_desc").set_value(False).run()
    at.button(key="gallery_open_0").click().run()
    first = at.session_state["gallery_image"]
    at.button(key="gallery_next").click().run()
    second = at.session_state["gallery_image"]
    assert second != first
    at.button(key="gallery_prev").click().run()
    assert at.session_state["gallery_image"] == first


@pytest.mark.parametrize(
    ("threshold", "both", "only_a", "only_b"),
    [(0.5, "2", "1", "1"), (0.2, "2", "1", "2"), (0.9, "0", "2", "0")],
)
def test_compare_agreement_numbers_on_known_boxes(threshold, both, only_a, only_b):
    at = compare_tab(open_page("pages/compare.py", factories.seeded(), threshold=threshold), "Agreement")
    assert not at.exception
    shown = metrics(at)
    assert (shown["Both"], shown["Only in A"], shown["Only in B"]) == (
        both,
        only_a,
        only_b,
    )


def compare_tab(at: AppTest, label: str) -> AppTest:
    """Open one of Compare's tabs (only the open tab's content runs), as a click on it does."""
    at.session_state[COMPARE_TAB_KEY] = label
    return at.run()


@pytest.mark.parametrize(
    ("tab", "keys"),
    [
        ("Speed", {"cmp_latency", "cmp_breakdown", "cmp_speed", "cmp_accuracy"}),
        ("Scores and classes", {"cmp_scores", "cmp_threshold", "cmp_classes"}),
        ("Agreement", {"cmp_agreement"}),
    ],
)
def test_compare_draws_the_charts_of_the_open_tab_only(tab, keys):
    at = compare_tab(open_page("pages/compare.py", factories.seeded()), tab)
    assert not at.exception
    assert {c.key for c in at.get("plotly_chart")} == keys
    assert len(at.dataframe) == 1, "the model cards, above the tabs"


def test_compare_keeps_its_tab_when_the_page_is_left_and_opened_again():
    at = compare_tab(open_page("pages/compare.py", factories.seeded()), "Agreement")
    at.switch_page("../pages/data.py").run()
    at.switch_page("../pages/compare.py").run()
    assert not at.exception
    assert {c.key for c in at.get("plotly_chart")} == {"cmp_agreement"}


@pytest.mark.parametrize("position", [0, -1])
def test_selecting_a_point_in_compare_opens_its_image_in_the_gallery(position):
    seed = factories.seeded()
    inf = seed[0]
    image_id = sorted(inf["image_id"].unique())[position]
    name = inf.loc[inf["image_id"] == image_id, "image_name"].iloc[0]
    at = open_page("pages/compare.py", seed)
    # the selection as the browser sends it for a point of the speed chart (its customdata: image id, name)
    at.session_state["cmp_speed"] = {"selection": {"points": [{"customdata": [image_id, name]}], "point_indices": [0],
                                                   "box": [], "lasso": []}}  # fmt: skip
    at.run()
    assert not at.exception
    assert at.title[0].value == "Gallery"
    assert at.session_state["gallery_image"] == image_id
    assert name in [h.value.replace("\\", "") for h in at.subheader]


def test_data_page_offers_downloads_and_clears_the_session():
    at = open_page("pages/data.py", factories.seeded())
    labels = [b.label for b in at.get("download_button")]
    assert {"inferences.csv", "detections.csv", "inferences.parquet", "detections.parquet"} <= set(labels)
    assert "fasterrcnn_resnet50_fpn.json" in labels
    at.button(key="data_clear").click().run()
    assert at.session_state["detlens_inferences"].empty


def _checkpoint_bytes(num_classes: int) -> bytes:
    import io

    import torch

    from core.inference.models import get_model

    spec = get_model("ssdlite320_mobilenet_v3_large")
    torch.manual_seed(1)
    model = spec.builder(weights=None, weights_backbone=None, num_classes=num_classes)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


def _run_with_checkpoint(files: dict[str, tuple[str, bytes, str]]) -> AppTest:
    model = "ssdlite320_mobilenet_v3_large"
    at = open_page("pages/run.py")
    at.multiselect(key="run_models").set_value([model]).run()
    at.selectbox(key=f"run_weights_{model}").set_value("file").run()
    for key, upload in files.items():
        at.file_uploader(key=f"{key}_{model}").set_value(upload).run()
    at.multiselect(key="run_gallery").set_value(["cat.jpg"]).run()
    finish_jobs(at.button(key="run_go").click().run(timeout=600))
    assert not at.exception
    return at


def test_run_page_takes_a_fine_tuned_checkpoint_with_its_class_names():
    import json

    names = json.dumps(["duck", "goose"]).encode()
    at = _run_with_checkpoint(
        {
            "run_ckpt": ("ducks.pth", _checkpoint_bytes(3), "application/octet-stream"),
            "run_names": ("ducks.json", names, "application/json"),
        }
    )
    inf, det = at.session_state["detlens_inferences"], at.session_state["detlens_detections"]
    assert inf["weights"].tolist() == ["ducks.pth"] and inf["error"].tolist() == [""]
    assert set(det["label"]) <= {"duck", "goose"} and len(det) > 0


def test_run_page_refuses_a_checkpoint_that_would_run_code(tmp_path):
    import io

    import torch

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    buf = io.BytesIO()
    torch.save({"weight": Exploit()}, buf)
    at = _run_with_checkpoint({"run_ckpt": ("evil.pth", buf.getvalue(), "application/octet-stream")})
    assert any("refused" in e.value for e in at.error)
    assert not marker.exists() and at.session_state["detlens_inferences"].empty


def _choose_untrained_ssdlite(at: AppTest) -> None:
    model = "ssdlite320_mobilenet_v3_large"
    at.multiselect(key="run_models").set_value([model]).run()
    at.selectbox(key=f"run_weights_{model}").set_value("untrained").run()


def test_run_page_reads_a_server_folder_under_an_allowed_root(monkeypatch, tmp_path):
    import shutil

    root = tmp_path / "shared"
    (root / "shots").mkdir(parents=True)
    for name in ("cat.jpg", "coffee.jpg"):
        shutil.copy(Path(APP).parent.parent / "gallery" / name, root / "shots" / name)
    monkeypatch.setenv("DETLENS_FOLDER_ROOTS", str(root))
    at = open_page("pages/run.py")
    _choose_untrained_ssdlite(at)
    at.radio(key="run_source").set_value("Server folder").run()
    at.text_input(key="run_folder").set_value(str(tmp_path)).run()  # the parent of the root: refused
    assert any("outside the folders" in e.value.replace("\\", "") for e in at.error)
    at.text_input(key="run_folder").set_value(str(root / "shots")).run()
    assert any("2 image(s) chosen" in c.value for c in at.caption)
    finish_jobs(at.button(key="run_go").click().run())
    assert sorted(at.session_state["detlens_inferences"]["image_name"]) == ["cat.jpg", "coffee.jpg"]


def test_run_page_runs_a_camera_snapshot():
    at = open_page("pages/run.py")
    _choose_untrained_ssdlite(at)
    at.radio(key="run_source").set_value("Camera").run()
    shot = (Path(APP).parent.parent / "gallery" / "astronaut.jpg").read_bytes()
    at.camera_input(key="run_camera").set_value(("snapshot.jpg", shot, "image/jpeg")).run()
    finish_jobs(at.button(key="run_go").click().run())
    assert not at.exception
    inf = at.session_state["detlens_inferences"]
    assert inf["image_name"].tolist() == ["camera_1.jpg"] and inf["error"].tolist() == [""]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"selection": {"points": [{"customdata": ["abc123", "cat.jpg", "m", "r"]}]}}, "abc123"),
        ({"selection": {"points": []}}, None),
        ({"selection": {"points": [{"x": 1}]}}, None),
        (None, None),
    ],
)
def test_a_selected_speed_point_names_its_image(event, expected):
    from dashboard.views import selected_image

    assert selected_image(event) == expected


def test_a_job_that_ends_between_the_sidebar_and_its_panel_still_joins_the_session(monkeypatch):
    """The race two browser sessions met under load: the sidebar's adoption saw the job running, the job ended, then
    the Run page's panel saw it ended (no polling left): it must still join the session, not say 'to the store'."""
    from dashboard import state

    at = open_page("pages/run.py")
    at.multiselect(key="run_models").set_value(["ssdlite320_mobilenet_v3_large"]).run()
    at.selectbox(key="run_weights_ssdlite320_mobilenet_v3_large").set_value("untrained")
    at.multiselect(key="run_gallery").set_value(["cat.jpg"])
    at.run()
    at.button(key="run_go").click().run(timeout=600)
    from core.store import Store, default_store_dir
    from tests.factories import run_pending

    with Store(default_store_dir()) as store:
        run_pending(store)  # the job ends
    real, calls = state.adopt_ended_jobs, []

    def late(*args):  # the sidebar's call of the next run still saw the job running
        calls.append(1)
        return [] if len(calls) == 1 else real(*args)

    monkeypatch.setattr(state, "adopt_ended_jobs", late)
    at.run(timeout=600)
    assert not at.exception
    assert len(at.session_state["detlens_inferences"]) == 1
    assert any("1 inference(s) added to the session" in s.value for s in at.success), [s.value for s in at.success]
