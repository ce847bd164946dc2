"""The Evaluate page's "Errors and decisions" section (AppTest) and the Gallery's `?images=` link target."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.errors_ui import VIEWS
from dashboard.figures import errors as F
from tests import test_gallery as gallery_test
from tests.test_evaluate_page import SIZES, A, B, open_page, perfect, session, texts, with_fp


def numbers(v) -> list[float]:
    """A Plotly JSON array (a list, or numpy's base64 'bdata')."""
    if isinstance(v, dict):
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return list(v)


def two_series():
    """A: the ground truth itself on three photos; B, on the same photos: the cat, boxes on nothing, the rest missed."""
    b = [*with_fp(), ("coffee.jpg", "cup", 47, 0.8, (0, 0, 5, 5)), ("motorcycle.jpg", "cup", 47, 0.2, (0, 0, 5, 5))]
    return session({A: perfect(), B: b})


def pick(at: AppTest, view: str) -> AppTest:
    at.segmented_control(key="eval_more_view").set_value(view).run()
    assert not at.exception, at.exception
    return at


def test_tide_view_draws_the_bars_and_links_each_error_bin_to_the_gallery():
    data = two_series()
    by_name = {ref.name: i for i, ref in data[2].items()}
    at = open_page(data)
    assert not at.exception
    (chart,) = [c for c in at.get("plotly_chart") if c.key == "eval_tide"]
    spec = json.loads(chart.proto.spec)
    bars = {t["name"]: dict(zip(t["x"], numbers(t["y"]), strict=True)) for t in spec["data"]}
    assert set(bars) == {"Faster R-CNN R50-FPN", "SSDLite320 MNv3-L"}
    assert all(v == 0 for v in bars["Faster R-CNN R50-FPN"].values()), "the ground truth itself has no error"
    assert bars["SSDLite320 MNv3-L"]["Miss"] > 0
    assert "Bkg errors: no image of this view to open." in texts(at), "A (the first picked) has none"
    at.selectbox(key="eval_tide_one").set_value(B).run()
    links = list(at.get("page_link"))
    bkg = [p for p in links if "Bkg errors" in p.proto.label]
    assert bkg, [p.proto.label for p in links]
    assert "(3 images)" in bkg[0].proto.label  # the dog on cat.jpg's background, the tiny cups on the others
    want = "%2C".join(by_name[n] for n in ("cat.jpg", "coffee.jpg", "motorcycle.jpg"))
    assert bkg[0].proto.query_string == f"images={want}&error=bkg&series={B}"
    assert len([p for p in links if "Miss errors" in p.proto.label]) == 1, "B's; A misses nothing"


def test_a_tide_bin_opens_its_images_in_the_gallery_with_its_boxes_outlined():
    data = two_series()
    by_name = {ref.name: i for i, ref in data[2].items()}
    at = open_page(data)  # Evaluate loads the gallery's ground truth
    at.switch_page("../pages/gallery.py")
    at.query_params.update({"images": ",".join(by_name[n] for n in ("cat.jpg", "coffee.jpg", "motorcycle.jpg")),
                            "error": "bkg", "series": B})  # fmt: skip
    at.run()
    assert not at.exception
    assert "Showing only the 3 images with Bkg errors of ssdlite320_mobilenet_v3_large (TIDE)" in texts(at).replace(
        "\\", ""
    )
    at.selectbox(key="gallery_sort").set_value("name").run()
    at.toggle(key="gallery_desc").set_value(False).run()
    at.button(key="gallery_open_0").click().run()  # cat.jpg: B's dog on the background at (400, 0, 450, 50)
    assert not at.exception
    assert "1 Bkg error of ssdlite320_mobilenet_v3_large on this image" in texts(at).replace("\\", "")
    (chart,) = [c for c in at.get("plotly_chart") if c.key == "gallery_overlay"]
    (trace,) = [t for t in json.loads(chart.proto.spec)["data"] if t.get("name") == "Bkg errors"]
    assert trace["xaxis"] == "x2", "B's panel (the second model)"
    width, height = SIZES["cat.jpg"]
    scale = min(1.0, 1024 / max(width, height))
    xs = [x for x in numbers(trace["x"]) if x is not None]
    assert min(xs) == pytest.approx(400 * scale, abs=1) and max(xs) == pytest.approx(450 * scale, abs=1)


def test_every_view_renders_its_figures():
    at = open_page(two_series())
    pick(at, VIEWS[1])
    assert "eval_confusion" in {c.key for c in at.get("plotly_chart")}
    assert at.selectbox(key="eval_conf_cell").options
    pick(at, VIEWS[2])
    assert any("recall50" in d.value.columns for d in at.dataframe)
    assert any("f1" in d.value.columns for d in at.dataframe)
    pick(at, VIEWS[3])
    at.selectbox(key="eval_sig_a").set_value(B).run()
    at.selectbox(key="eval_sig_b").set_value(A).run()
    at.number_input(key="eval_sig_n").set_value(200).run()
    assert not at.exception
    assert "Verdict:" in texts(at)
    assert "eval_sig_chart" in {c.key for c in at.get("plotly_chart")}
    pick(at, VIEWS[4])
    assert "eval_reliability" in {c.key for c in at.get("plotly_chart")}
    assert any("ECE" in d.value.columns for d in at.dataframe)
    pick(at, VIEWS[5])
    assert at.get("download_button"), "the per-class thresholds JSON"
    at.button(key="eval_op_keep").click().run()
    assert not at.exception
    kept = at.session_state["per_class_thresholds"]
    assert set(kept) == {A} and kept[A]["cat"] == pytest.approx(0.9)


def test_gallery_lists_only_the_linked_images_until_show_all():
    inf, det, refs = gallery_test.session()
    wanted = list(refs)[3:5]
    at = AppTest.from_file(gallery_test.APP, default_timeout=gallery_test.TIMEOUT)
    for k, v in {"detlens_inferences": inf, "detlens_detections": det, "detlens_images": refs, "detlens_runs": [],
                 "detlens_threshold": 0.5, "gallery_sort": "name", "gallery_desc": False}.items():  # fmt: skip
        at.session_state[k] = v
    at.run()
    at.switch_page("../pages/gallery.py")
    at.query_params["images"] = ",".join(wanted)
    at.run()
    assert not at.exception
    assert gallery_test.names(at) == [refs[i].name for i in wanted]
    assert any("Showing only the 2 images" in c.value for c in at.caption)
    at.button(key="gallery_all").click().run()
    assert "images" not in at.query_params and len(gallery_test.names(at)) == gallery_test.PAGE_SIZE


@pytest.mark.parametrize("untrained", [False, True])
def test_figure_builders_on_small_frames(untrained):
    import pandas as pd

    bars = F.tide_bars(pd.DataFrame({"series": ["a", "a"], "error": ["Loc", "Cls"], "dAP": [2.0, 1.0],
                                     "count": [3, 1]}), untrained=["a"] if untrained else [])  # fmt: skip
    assert list(bars.data[0].x) == ["Cls", "Loc"], "tidecv's order"
    heat = F.confusion_heatmap(pd.DataFrame([[2, 1], [1, 0]], index=["cat", "background"],
                                            columns=["cat", "background"]), untrained=untrained)  # fmt: skip
    assert heat.data[0].z[0] == pytest.approx([2 / 3, 1 / 3])
    assert F.interval_chart(pd.DataFrame({"name": ["AP"], "diff": [0.1], "low": [0.05], "high": [0.2]})).data
    rel = F.reliability_diagram({"a": pd.DataFrame({"confidence": [0.5], "accuracy": [0.4], "count": [3]})},
                                untrained=["a"] if untrained else [])  # fmt: skip
    assert len(rel.data) == 2
    marked = any(a.name == "untrained" for a in rel.layout.annotations)
    assert marked == untrained
    assert json.loads(F.tide_bars(pd.DataFrame(columns=["series", "error", "dAP", "count"])).to_json())


@pytest.mark.parametrize(("limit", "computed"), [(10_000, True), (2, False)])
def test_a_large_run_waits_for_the_user_to_pick_an_analysis(monkeypatch, limit, computed):
    """Above AUTO_ANALYSIS_MAX_BOXES the section computes nothing until an analysis is picked (TIDE takes about a
    minute at 2 million boxes); then the picked one is drawn as usual."""
    from dashboard import errors_ui

    calls = []
    real = errors_ui.E.reports
    monkeypatch.setattr(errors_ui, "AUTO_ANALYSIS_MAX_BOXES", limit)
    monkeypatch.setattr(errors_ui.E, "reports", lambda *a: calls.append(a) or real(*a))
    at = open_page(two_series())
    assert not at.exception
    drawn = [c.key for c in at.get("plotly_chart")]
    assert ("eval_tide" in drawn) is computed and bool(calls) is computed
    if not computed:
        assert any("Pick an analysis" in i.value for i in at.info)
        pick(at, VIEWS[0])
        assert "eval_tide" in [c.key for c in at.get("plotly_chart")] and calls
