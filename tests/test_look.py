"""One look for every chart: the pure figure builders' colours, marks, labels, formats and empty states."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import pytest

from core.config import HEADLINE_MODELS, UNTRAINED_MARK
from core.inference.models import model_names
from dashboard import figures as F
from dashboard.figures.common import CLASS_PALETTE, FONT_FAMILY, UNTRAINED_MARGIN_T


def test_every_registered_model_has_its_own_colour_from_its_name_alone():
    colours = {m: F.model_color(m) for m in model_names()}
    assert len(set(colours.values())) == len(colours) == 12
    assert [colours[m] for m in HEADLINE_MODELS] == ["#636EFA", "#EF553B"]  # Plotly's first two: the headline pair
    assert {m: F.model_color(m) for m in reversed(model_names())} == colours  # not the order they are asked in
    assert F.model_color("ssdlite320_mobilenet_v3_large@onnxruntime") == F.model_color(
        "ssdlite320_mobilenet_v3_large@onnxruntime"
    )


def test_two_classes_of_one_image_never_share_a_colour():
    assert F.class_color("N/A") == F.class_color("baseball glove")  # the case seen: both red by their hash
    colours = F.class_colors(["N/A", "baseball glove", "person"])
    assert len(set(colours.values())) == 3
    assert colours["N/A"] == F.class_color("N/A")  # the first in sorted order keeps its own colour
    many = F.class_colors([f"class {i}" for i in range(len(CLASS_PALETTE))])
    assert len(set(many.values())) == len(CLASS_PALETTE)


def overlay_boxes() -> pd.DataFrame:
    return pd.DataFrame({
        "model": ["m", "m"], "label": ["N/A", "baseball glove"], "score": [0.9, 0.8],
        "x1": [0.0, 10.0], "y1": [0.0, 10.0], "x2": [5.0, 20.0], "y2": [5.0, 20.0],
    })  # fmt: skip


def test_an_overlay_draws_two_colliding_classes_in_two_colours():
    from PIL import Image

    fig = F.overlay_figure(Image.new("RGB", (40, 40)), overlay_boxes(), title="t", threshold=0.5)
    assert len({t.line.color for t in fig.data}) == 2


def test_the_untrained_mark_is_a_subtitle_line_at_the_top_left_in_a_kept_margin():
    fig = F.mark_untrained(go.Figure().update_layout(title_text="Chart"), True)
    (mark,) = [a for a in fig.layout.annotations if UNTRAINED_MARK in a.text]
    assert (mark.x, mark.xanchor, mark.y, mark.yanchor) == (0, "left", 1, "bottom")  # the toolbar is at the right
    assert mark.bgcolor is None and not mark.borderwidth  # a line of text, not a box
    assert fig.layout.margin.t >= UNTRAINED_MARGIN_T


def session_inferences() -> pd.DataFrame:
    rows = [("fasterrcnn_resnet50_fpn", 5279.9227), ("fasterrcnn_resnet50_fpn", 5301.0),
            ("ssdlite320_mobilenet_v3_large", 52.1), ("ssdlite320_mobilenet_v3_large", 55.0)]  # fmt: skip
    return pd.DataFrame(
        {"model": [m for m, _ in rows], "total_ms": [t for _, t in rows], "error": [""] * 4,
         "image_id": ["a", "b", "a", "b"], "image_name": ["a.jpg", "b.jpg", "a.jpg", "b.jpg"],
         "preprocess_ms": [1.0] * 4, "inference_ms": [t - 2 for _, t in rows], "postprocess_ms": [1.0] * 4}
    )  # fmt: skip


def test_every_builder_figure_has_the_apps_look():
    fig = F.latency_box(session_inferences())
    assert fig.layout.font.family == FONT_FAMILY and fig.layout.title.x == 0 and fig.layout.title.xanchor == "left"
    assert fig.layout.xaxis.automargin and fig.layout.yaxis.automargin
    assert fig.layout.hoverlabel.bgcolor == "white" and fig.layout.separators == ".,"


def test_latency_percentiles_are_written_under_the_axis_not_on_the_boxes():
    fig = F.latency_box(session_inferences())
    for name in ("p50", "p95"):
        assert next(t for t in fig.data if t.name == name).mode == "markers"  # no text on the data
    notes = {a.x: a.text for a in fig.layout.annotations if a.name == "percentiles"}
    # hand-worked: the median of 5279.9227 and 5301.0 is 5290.46135; p95 = 5279.9227 + 0.95 * 21.0773 = 5299.946
    assert notes["fasterrcnn_resnet50_fpn"] == "p50 5,290.5 ms<br>p95 5,299.9 ms"
    assert all(
        a.yref == "paper" and a.y == 0 and a.yshift < 0 for a in fig.layout.annotations if a.name == "percentiles"
    )


def test_log_latency_axes_draw_no_minor_grid_bands():
    fig = F.latency_box(session_inferences())
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.minor.showgrid is False


def test_point_labels_at_the_edges_are_written_inwards():
    fig = go.Figure([go.Scatter(x=[x], y=[1], mode="markers+text", text=[n], textposition="top center")
                     for x, n in ((10.0, "left"), (50.0, "mid"), (900.0, "right"))])  # fmt: skip
    F.apply_look(fig)
    assert [t.textposition for t in fig.data] == ["top right", "top center", "top left"]
    assert all(t.cliponaxis is False for t in (fig.data[0], fig.data[2]))


@pytest.mark.parametrize(
    ("fig", "message"),
    [
        (F.empty_figure("No model with both a measured latency and a published mAP."),
         "No model with both a measured latency and a published mAP."),
        (F.empty_figure("Nothing to show", untrained=True), "Nothing to show"),
        (go.Figure([go.Bar(x=[1], y=[2])]), None),
    ],
)  # fmt: skip
def test_an_empty_figure_is_a_sentence_for_the_page(fig, message):
    assert F.empty_message(fig) == message
