"""The Run form through AppTest: choices that stay across page changes, the offline refusal in the browser's words."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.test_pages import open_page

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
