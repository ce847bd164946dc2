"""The Run form through AppTest: choices that stay across page changes, the offline refusal in the browser's words."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.factories import finish_jobs
from tests.test_pages import open_page, texts

SSD, FRCNN = "ssdlite320_mobilenet_v3_large", "fasterrcnn_resnet50_fpn"


def visit_and_return(at: AppTest, page: str = "pages/gallery.py") -> AppTest:
    at.switch_page(f"../{page}").run()
    assert not at.exception
    return at.switch_page("../pages/run.py").run()


def test_every_choice_of_the_run_form_survives_a_page_change():
    at = open_page("pages/run.py")
    at.multiselect(key="run_models").set_value([FRCNN, SSD]).run()
    at.selectbox(key=f"run_weights_{FRCNN}").set_value("untrained")
    at.selectbox(key=f"run_weights_{SSD}").set_value("untrained")
    at.multiselect(key=f"run_runtimes_{SSD}").set_value(["eager", "onnxruntime"])
    at.selectbox(key="run_device").set_value("cpu")
    at.number_input(key="run_warmup").set_value(3)
    at.number_input(key="run_batch").set_value(2)
    at.checkbox(key="run_oom_cpu_retry").uncheck()
    at.multiselect(key="run_gallery").set_value(["cat.jpg"])
    at.run()
    for _ in range(2):  # twice: a restored choice is kept again
        at = visit_and_return(at)
        assert at.multiselect(key="run_models").value == [FRCNN, SSD]
        assert at.selectbox(key=f"run_weights_{FRCNN}").value == "untrained"
        assert at.selectbox(key=f"run_weights_{SSD}").value == "untrained"
        assert at.multiselect(key=f"run_runtimes_{SSD}").value == ["eager", "onnxruntime"]
        assert at.selectbox(key="run_device").value == "cpu"
        assert (at.number_input(key="run_warmup").value, at.number_input(key="run_batch").value) == (3, 2)
        assert at.checkbox(key="run_oom_cpu_retry").value is False
        assert at.multiselect(key="run_gallery").value == ["cat.jpg"]
        assert any("1 image(s) chosen" in c.value for c in at.caption)
    assert not at.get("warning") or all("Session State API" not in w.value for w in at.warning)


def test_the_image_source_and_folder_survive_a_page_change(monkeypatch, tmp_path):
    monkeypatch.setenv("DETLENS_FOLDER_ROOTS", str(tmp_path))
    at = open_page("pages/run.py")
    at.radio(key="run_source").set_value("Server folder").run()
    at.text_input(key="run_folder").set_value(str(tmp_path)).run()
    at = visit_and_return(at, "pages/data.py")
    assert at.radio(key="run_source").value == "Server folder"
    assert at.text_input(key="run_folder").value == str(tmp_path)


def _files() -> dict[str, str]:
    """The default weights' file names, from torchvision's own enums."""
    from torchvision.models import detection

    enums = {
        FRCNN: detection.FasterRCNN_ResNet50_FPN_Weights.DEFAULT,
        SSD: detection.SSDLite320_MobileNet_V3_Large_Weights.DEFAULT,
    }
    return {m: w.url.rsplit("/", 1)[-1] for m, w in enums.items()}


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty hub cache and no way to download."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("DETLENS_OFFLINE", "1")


def _offline_form() -> AppTest:
    at = open_page("pages/run.py")
    at.multiselect(key="run_models").set_value([FRCNN, SSD]).run()
    at.multiselect(key="run_gallery").set_value(["cat.jpg"]).run()
    return at


def test_offline_one_message_names_every_missing_file_instead_of_the_download_notes(offline):
    at = _offline_form()
    assert not at.exception
    assert "will be downloaded" not in texts(at)
    errors = [e.value.replace("\\", "") for e in at.error]
    assert len(errors) == 1 and all(f in errors[0] for f in _files().values())
    assert "--weights" not in errors[0] and "TORCH_HOME" not in errors[0]
    assert at.button(key="run_go").disabled
    labels = {b.key: b.label for b in at.button}
    assert labels["run_use_untrained"] == "Use untrained for these models"
    assert labels[f"run_use_file_{SSD}"] == f"Upload the checkpoint for {SSD}"


def test_offline_use_untrained_switches_every_missing_model_and_the_run_can_start(offline):
    at = _offline_form()
    at.button(key="run_use_untrained").click().run()
    assert [at.selectbox(key=f"run_weights_{m}").value for m in (FRCNN, SSD)] == ["untrained", "untrained"]
    assert not at.error and not at.button(key="run_go").disabled
    at = visit_and_return(at)  # and the way out stays chosen
    assert at.selectbox(key=f"run_weights_{FRCNN}").value == "untrained"


def test_offline_upload_button_opens_that_models_checkpoint_uploader(offline):
    at = _offline_form()
    at.button(key=f"run_use_file_{SSD}").click().run()
    assert at.selectbox(key=f"run_weights_{SSD}").value == "file"
    assert at.selectbox(key=f"run_weights_{FRCNN}").value == "default"
    assert any(f"Checkpoint for {SSD}" == u.label for u in at.get("file_uploader"))


def test_online_the_download_is_one_note(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))
    monkeypatch.setattr("dashboard.launch.check_weights", lambda *a, **k: None)  # the host answers
    at = _offline_form()
    notes = [i.value.replace("\\", "") for i in at.info if "will be downloaded" in i.value]
    assert len(notes) == 1 and all(f in notes[0] for f in _files().values())
    assert not at.error and not at.button(key="run_go").disabled


@pytest.mark.slow  # runs SSDLite twice
def test_a_stored_run_is_named_renamed_and_measured_again_from_the_runs_page(private_run_store):
    from core.store import Store
    from tests.test_store_pages import run_in_ui

    at = run_in_ui(["cat.jpg"])
    (run_id,) = Store(private_run_store).list_runs()["run_id"]
    at.switch_page("../pages/runs.py").run()
    listed = at.dataframe[1].value
    assert listed["name"].iloc[0].startswith(f"{SSD}, 1 image, ")
    at.session_state["runs_table"] = {"selection": {"rows": [0], "columns": []}}
    at.run()
    at.text_input(key=f"runs_name_{run_id}").set_value("cat, before the fp16 change")
    at.button[[b.label for b in at.button].index("Rename")].click().run()
    assert not at.exception
    assert Store(private_run_store).run_label(run_id) == "cat, before the fp16 change"
    at.switch_page("../pages/reviews.py").run()  # a run is chosen by its name
    assert at.selectbox(key="reviews_run").format_func(run_id) == "cat, before the fp16 change"
    at.switch_page("../pages/runs.py").run()
    at.session_state["runs_table"] = {"selection": {"rows": [0], "columns": []}}
    at.run()
    finish_jobs(at.button(key="runs_measure_again").click().run())
    assert not at.exception
    runs = Store(private_run_store).list_runs()
    assert len(runs) == 2 and set(runs["status"]) == {"finished"} and set(runs["n_inferences"]) == {1}


@pytest.mark.parametrize(
    ("device", "precision", "runtimes"),
    [
        ("cuda", "fp32", ["eager"]),  # no GPU here (on a GPU machine the case is skipped below)
        ("cpu", "fp16", ["eager"]),  # a precision a CPU without native fp16 refuses (such a CPU is simulated below)
        ("mps", "fp32", ["eager", "onnxruntime"]),  # no Apple GPU here
    ],
)
def test_the_run_form_refuses_bad_settings_with_the_message_every_path_gives(monkeypatch, device, precision, runtimes):
    """The page calls RunSettings.resolve (as detect, submit, the worker and Ray do): the same one-line message."""
    import torch

    from core.errors import DeviceError
    from core.execution.runner import RunSettings
    from core.inference import devices
    from core.inference.series import RuntimeRefusedError
    from dashboard.text import md

    # a CPU with fp32 only (AMX/AVX512-FP16 machines compute fp16 natively and rightly accept it)
    monkeypatch.setattr(devices, "cpu_native_precisions", lambda: frozenset({"fp32"}))
    if (device == "cuda" and torch.cuda.is_available()) or (device == "mps" and torch.backends.mps.is_available()):
        pytest.skip(f"{device} is a valid device here")
    settings = RunSettings(models=[SSD], weights={SSD: "untrained"}, device=device, precision=precision,
                           runtimes={SSD: runtimes})  # fmt: skip
    with pytest.raises((DeviceError, RuntimeRefusedError)) as refused:
        settings.resolve(check_files=False)
    at = open_page("pages/run.py")
    at.multiselect(key="run_models").set_value([SSD]).run()
    at.selectbox(key=f"run_weights_{SSD}").set_value("untrained")
    at.multiselect(key=f"run_runtimes_{SSD}").set_value(runtimes)
    at.selectbox(key="run_device").set_value(device)
    at.selectbox(key="run_precision").set_value(precision)
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [md(refused.value)]
    assert all(b.key != "run_go" for b in at.button)  # nothing to run
