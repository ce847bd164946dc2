"""Figure builders: what a user relies on in each chart, read from `fig.data` / `fig.layout`."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from PIL import Image

from core.compare.matching import compare_models
from core.config import (
    DETECTION_COLUMNS,
    DETECTION_DTYPES,
    INFERENCE_COLUMNS,
    INFERENCE_DTYPES,
    UNTRAINED_MARK,
)
from core.inference.models import short_name
from dashboard import figures as F
from dashboard import views

A, B = "fasterrcnn_resnet50_fpn", "ssdlite320_mobilenet_v3_large"
SA, SB = short_name(A), short_name(B)  # what legends show (the full name is in the hover)


# --- factories -----------------------------------------------------------------------------------------------------


def inf(image_id: str, model: str, total: float = 10.0, *, weights: str = "default", error: str = "", run_id="r1"):
    return {
        "run_id": run_id, "image_id": image_id, "image_name": f"{image_id}.jpg", "width": 200, "height": 100,
        "model": model, "weights": weights, "device": "cpu", "precision": "fp32", "batch_size": 1,
        "preprocess_ms": total * 0.1, "inference_ms": total * 0.7, "postprocess_ms": total * 0.2, "total_ms": total,
        "n_detections": 0, "threshold": 0.5, "error": error, "created_at": "2026-01-01T00:00:00+00:00",
    }  # fmt: skip


def det(image_id: str, model: str, label: str, score: float, xyxy=(10, 10, 50, 40), run_id="r1"):
    x1, y1, x2, y2 = xyxy
    return {"run_id": run_id, "image_id": image_id, "model": model, "label_id": 1, "label": label, "score": score,
            "x1": x1, "y1": y1, "x2": x2, "y2": y2}  # fmt: skip


def inferences(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(INFERENCE_COLUMNS)).astype(INFERENCE_DTYPES)


def detections(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(DETECTION_COLUMNS)).astype(DETECTION_DTYPES)


def meta(*models: str) -> pd.DataFrame:
    published = {
        A: ("Faster R-CNN ResNet50-FPN", 37.0, 134.38, 41755286, 159.7),
        B: ("SSDLite", 21.3, 0.58, 3440060, 13.4),
    }
    rows = [{"model": m, "title": published[m][0], "box_map": published[m][1], "gflops": published[m][2],
             "params": published[m][3], "file_size_mb": published[m][4]} for m in models]  # fmt: skip
    return pd.DataFrame(rows, columns=["model", "title", "box_map", "gflops", "params", "file_size_mb"])


def session(weights: str = "default") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two models on three images; one failed row for B (excluded from latency)."""
    infs = inferences(
        inf("i1", A, 900, weights=weights),
        inf("i2", A, 1000, weights=weights),
        inf("i3", A, 1300, weights=weights),
        inf("i1", B, 30),
        inf("i2", B, 40),
        inf("i3", B, 9999, error="decode failed"),
    )
    dets = detections(
        det("i1", A, "cat", 0.95),
        det("i1", A, "dog", 0.6),
        det("i1", A, "cup", 0.2),
        det("i2", A, "cat", 0.7),
        det("i1", B, "cat", 0.8),
        det("i2", B, "cat", 0.4),
        det("i2", B, "cat", 0.55),
    )
    return infs, dets


def untrained_texts(fig: go.Figure) -> list[str]:
    return [a.text for a in fig.layout.annotations if a.text and UNTRAINED_MARK in a.text]


def empty_inferences() -> pd.DataFrame:
    return inferences()


def empty_detections() -> pd.DataFrame:
    return detections()


# --- colours -------------------------------------------------------------------------------------------------------


def _line_colours(fig: go.Figure) -> dict[str, set[str]]:
    """Each trace name's line colours in a figure (a class drawn in several panels has one entry per panel)."""
    colours: dict[str, set[str]] = {}
    for trace in fig.data:
        colours.setdefault(trace.name, set()).add(trace.line.color)
    return colours


def test_a_class_has_one_colour_in_every_panel_and_figure():
    boxes = detections(
        det("i1", A, "cat", 0.9, (10, 10, 60, 40)),
        det("i1", A, "dog", 0.8, (70, 10, 120, 60)),
        det("i1", B, "cat", 0.7, (12, 12, 58, 42)),
    )
    image = Image.new("RGB", (200, 100))
    grid = _line_colours(F.overlay_grid(image, boxes, [A, B], threshold=0.5))
    assert len(grid["cat"]) == 1  # the cat of both models' panels in one colour
    assert grid["cat"] != grid["dog"]
    alone = _line_colours(F.overlay_figure(image, boxes[boxes["model"] == B], title="t", threshold=0.5))
    assert alone["cat"] == grid["cat"]  # and the same in another figure
    # stable across processes and sessions (a colour picked with Python's salted hash() would move): recorded value
    assert grid["cat"] == {"#FF0092"}
    assert len({F.class_color(c) for c in ["person", "car", "dog", "cat", "cup", "chair", "bottle"]}) > 3


def test_each_model_keeps_its_colour_across_figures_and_the_headline_pair_leads_the_palette():
    other = "retinanet_resnet50_fpn"
    infs = inferences(inf("i1", A, 900), inf("i1", B, 30), inf("i1", other, 400))
    dets = detections(det("i1", A, "cat", 0.9), det("i1", B, "cat", 0.8), det("i1", other, "cat", 0.7))
    boxes = {b.x[0]: b.marker.color for b in F.latency_box(infs).data if isinstance(b, go.Box)}
    bars = {t.hovertemplate.split("<extra>")[1].split("</extra>")[0]: t.marker.color
            for t in F.score_histograms(dets, threshold=0.5).data}  # fmt: skip
    assert boxes == bars  # one colour per model in both charts
    assert len(set(boxes.values())) == 3  # three models, three colours
    assert (boxes[A], boxes[B]) == ("#636EFA", "#EF553B")  # Plotly's first two colours, in HEADLINE_MODELS order


# --- overlay -------------------------------------------------------------------------------------------------------


def overlay_dets() -> pd.DataFrame:
    return detections(
        det("i1", A, "cat", 0.9, (100, 100, 300, 200)),
        det("i1", A, "cat", 0.6, (400, 100, 500, 300)),
        det("i1", A, "dog", 0.7, (0, 0, 50, 50)),
        det("i1", A, "cup", 0.3, (10, 10, 20, 20)),  # below threshold
    )


def decode_background(fig: go.Figure) -> Image.Image:
    source = fig.layout.images[0].source
    assert source.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))


@pytest.mark.parametrize(
    ("size", "max_side", "scale"),
    [
        pytest.param((800, 400), 1024, 1.0, id="small-kept"),
        pytest.param((2000, 1000), 1000, 0.5, id="downscaled-half"),
        pytest.param((1000, 2000), 500, 0.25, id="portrait-quarter"),
    ],
)
def test_overlay_background_and_scaled_boxes(size, max_side, scale):
    image = Image.new("RGB", size, "gray")
    fig = F.overlay_figure(image, overlay_dets(), title="i1 / A", threshold=0.5, max_side=max_side)
    dw, dh = round(size[0] * scale), round(size[1] * scale)

    background = decode_background(fig)
    assert background.size == (dw, dh)
    img = fig.layout.images[0]
    assert (img.x, img.y, img.sizex, img.sizey, img.xref, img.yref) == (0, 0, dw, dh, "x", "y")
    assert not any(isinstance(t, go.Image) for t in fig.data)

    assert tuple(fig.layout.xaxis.range) == (0, dw)
    assert tuple(fig.layout.yaxis.range) == (dh, 0)  # y reversed
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.yaxis.scaleratio == 1
    assert fig.layout.xaxis.showgrid is False and fig.layout.yaxis.showgrid is False
    plot_h = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    plot_w = fig.layout.width - fig.layout.margin.l - fig.layout.margin.r
    assert plot_w / plot_h == pytest.approx(dw / dh, rel=0.01)

    dog = next(t for t in fig.data if t.name == "dog")
    xs = [x for x in dog.x if x is not None]
    ys = [y for y in dog.y if y is not None]
    assert (min(xs), max(xs), min(ys), max(ys)) == pytest.approx((0, 50 * scale, 0, 50 * scale))
    assert "50 × 50 px" in dog.hovertext[0]  # size in original pixels


def test_overlay_one_trace_per_class_above_threshold():
    fig = F.overlay_figure(Image.new("RGB", (600, 400)), overlay_dets(), title="t", threshold=0.5)
    assert sorted(t.name for t in fig.data) == ["cat", "dog"]
    for trace in fig.data:
        assert trace.legendgroup == trace.name
        assert trace.line.color == F.class_color(trace.name)
    cat = next(t for t in fig.data if t.name == "cat")
    assert list(cat.x).count(None) == 2  # two closed outlines in one trace
    first = cat.x[: cat.x.index(None)], cat.y[: cat.y.index(None)]
    assert (first[0][0], first[1][0]) == (first[0][-1], first[1][-1])  # closed
    assert any("score 0.900" in h for h in cat.hovertext)
    assert fig.layout.uirevision


@pytest.mark.parametrize(
    ("threshold", "classes", "names"),
    [
        pytest.param(0.0, None, ["cat", "cup", "dog"], id="all"),
        pytest.param(0.65, None, ["cat", "dog"], id="threshold"),
        pytest.param(0.5, ["dog", "cup"], ["dog"], id="class-filter"),
        pytest.param(0.99, None, [], id="nothing"),
    ],
)
def test_overlay_filters(threshold, classes, names):
    fig = F.overlay_figure(
        Image.new("RGB", (600, 400)), overlay_dets(), title="t", threshold=threshold, classes=classes
    )
    assert sorted(t.name for t in fig.data) == names
    if threshold == 0.65:
        cat = next(t for t in fig.data if t.name == "cat")
        assert list(cat.x).count(None) == 1


def test_overlay_untrained_and_empty():
    image = Image.new("RGBA", (64, 48))
    fig = F.overlay_figure(image, empty_detections(), title="t", threshold=0.5, untrained=True)
    assert len(fig.data) == 0
    assert len(fig.layout.images) == 1
    assert untrained_texts(fig)
    assert not untrained_texts(F.overlay_figure(image, empty_detections(), title="t", threshold=0.5))


# --- latency -------------------------------------------------------------------------------------------------------


def test_latency_box_marks_p50_p95_and_skips_errors():
    infs, _ = session()
    fig = F.latency_box(infs)
    boxes = [t for t in fig.data if isinstance(t, go.Box)]
    assert [b.x[0] for b in boxes] == [A, B] and [b.name for b in boxes] == [SA, SB]
    assert list(fig.layout.xaxis.ticktext) == [SA, SB]  # compact names on the axis, full names in the hover
    assert boxes[1].median[0] == pytest.approx(35) and boxes[1].upperfence[0] == 40  # the failed 9999 ms is not there
    for name, q in (("p50", 50), ("p95", 95)):
        marks = next(t for t in fig.data if t.name == name)
        assert list(marks.x) == [A, B]
        expected = [np.percentile([900, 1000, 1300], q), np.percentile([30, 40], q)]
        assert list(marks.y) == pytest.approx(expected)
    positions = {t.name: t.textposition for t in fig.data if t.name in ("p50", "p95")}
    assert positions["p50"] != positions["p95"]  # labels on opposite sides: close values never overlap


def latency_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """n images per model, log-normal latencies with a few slow outliers, one failed row per model."""
    rng = np.random.default_rng(seed)
    rows = []
    for model, scale in ((A, 900.0), (B, 30.0)):
        totals = rng.lognormal(np.log(scale), 0.25, n)
        totals[: max(1, n // 100)] *= 8  # slow outliers
        rows += [inf(f"i{k}", model, float(t)) for k, t in enumerate(totals)]
        rows.append(inf("bad", model, 1e6, error="boom"))
    return inferences(*rows)


@pytest.mark.parametrize("n", [1, 2, 7, 500])
def test_latency_stats_equal_numpy_percentiles(n):
    frame = latency_frame(n)
    stats = F.latency_stats(frame).set_index("model")
    for model in (A, B):
        values = frame.loc[(frame["model"] == model) & (frame["error"] == ""), "total_ms"].to_numpy()
        q1, median, q3, p95 = np.percentile(values, [25, 50, 75, 95])
        row = stats.loc[model]
        assert (row["q1"], row["median"], row["q3"], row["p95"]) == pytest.approx((q1, median, q3, p95))
        assert row["n"] == n and row["mean"] == pytest.approx(values.mean())
        inside = values[(values >= q1 - 1.5 * (q3 - q1)) & (values <= q3 + 1.5 * (q3 - q1))]
        assert (row["lowerfence"], row["upperfence"]) == (inside.min(), inside.max())


def test_latency_box_sends_quantiles_and_a_bounded_number_of_outliers():
    frame = latency_frame(5000)
    fig = F.latency_box(frame)
    stats = F.latency_stats(frame)
    boxes = [t for t in fig.data if isinstance(t, go.Box)]
    assert all(b.y is None and b.boxpoints is False for b in boxes)  # no raw latencies in the box traces
    assert [b.median[0] for b in boxes] == pytest.approx(stats["median"].tolist())
    points = next(t for t in fig.data if t.name == "outlying images")
    assert 0 < len(points.y) <= 2 * F.OUTLIERS_PER_MODEL
    fences = stats.set_index("model")
    for model, y in zip(points.x, points.y):
        assert not fences.at[model, "lowerfence"] <= y <= fences.at[model, "upperfence"]
    assert len(fig.to_json()) < 40_000  # 10,000 latencies, a few kB to the browser
    same = F.latency_box(stats=stats)  # a precomputed table (a store query) draws the same boxes
    assert [b.median[0] for b in same.data if isinstance(b, go.Box)] == [b.median[0] for b in boxes]


@pytest.mark.parametrize(("low", "high"), [(30.0, 900.0), (3.0, 40.0), (0.5, 20000.0), (12.0, 13.0)])
def test_log_ticks_label_only_1_2_5_per_decade(low, high):
    ticks = F.log_ticks(low, high)
    assert ticks and ticks[0] <= low * 1.5 and ticks[-1] >= high / 1.5
    mantissas = {round(t / 10 ** math.floor(math.log10(t)), 6) for t in ticks}
    assert mantissas <= {1.0, 2.0, 5.0} and len(ticks) <= 12


def test_latency_breakdown_stacks_median_stages():
    infs, _ = session()
    fig = F.latency_breakdown(infs)
    assert fig.layout.barmode == "stack"
    assert [t.name for t in fig.data] == ["preprocess", "inference", "postprocess"]
    factors = {"preprocess": 0.1, "inference": 0.7, "postprocess": 0.2}
    for trace in fig.data:
        assert list(trace.x) == [A, B]
        expected = [np.median([900, 1000, 1300]) * factors[trace.name], np.median([30, 40]) * factors[trace.name]]
        assert list(trace.y) == pytest.approx(expected)


# --- detections ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0.25, 0.5, 0.8])
def test_score_histograms_threshold_line(threshold):
    _, dets = session()
    fig = F.score_histograms(dets, threshold)
    assert [t.name for t in fig.data] == [SA, SB]
    assert sorted(fig.data[1].x) == pytest.approx([0.4, 0.55, 0.8])
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(lines) == 1
    assert lines[0].x0 == lines[0].x1 == threshold


@pytest.mark.parametrize(
    ("threshold", "counts_a", "counts_b"),
    [
        pytest.param(0.5, [2, 1, 0], [1, 1], id="t0.5"),
        pytest.param(0.1, [3, 1, 0], [1, 2], id="t0.1"),
        pytest.param(0.9, [1, 0, 0], [0, 0], id="t0.9"),
    ],
)
def test_speed_vs_count_points(threshold, counts_a, counts_b):
    infs, dets = session()
    fig = F.speed_vs_count(infs, dets, threshold)
    by_model = {t.name: t for t in fig.data}
    assert list(by_model) == [SA, SB]
    assert list(by_model[SA].x) == counts_a
    assert list(by_model[SA].y) == [900, 1000, 1300]
    assert list(by_model[SB].x) == counts_b  # i3 failed for B: no point
    assert [row[0] for row in by_model[SA].customdata] == ["i1", "i2", "i3"]
    assert [row[1] for row in by_model[SA].customdata] == ["i1.jpg", "i2.jpg", "i3.jpg"]
    assert "customdata[1]" in by_model[SA].hovertemplate


def test_class_counts_grouped_per_model():
    _, dets = session()
    fig = F.class_counts_chart(dets, 0.5)
    assert fig.layout.barmode == "group"
    by_model = {t.name: dict(zip(t.x, t.y)) for t in fig.data}
    assert by_model == {SA: {"cat": 2, "dog": 1}, SB: {"cat": 2, "dog": 0}}
    assert list(fig.data[0].x) == ["cat", "dog"]  # by decreasing total


def test_count_vs_threshold_divides_by_successful_images():
    infs, dets = session()
    fig = F.count_vs_threshold(dets, infs, threshold=0.5)
    by_model = {t.name: t for t in fig.data}
    assert by_model[SA].x[0] == 0 and by_model[SA].x[-1] == 1
    at = {t: int(np.argmin(np.abs(np.asarray(by_model[SA].x) - t))) for t in (0.0, 0.5, 0.9)}
    assert by_model[SA].y[at[0.0]] == pytest.approx(4 / 3)  # 4 boxes over 3 images
    assert by_model[SA].y[at[0.5]] == pytest.approx(3 / 3)
    assert by_model[SA].y[at[0.9]] == pytest.approx(1 / 3)
    assert by_model[SB].y[at[0.0]] == pytest.approx(3 / 2)  # B's failed image does not count
    assert by_model[SB].y[at[0.5]] == pytest.approx(2 / 2)
    assert [s.x0 for s in fig.layout.shapes] == [0.5]


def test_agreement_figure_stacks_per_image():
    _, dets = session()
    dets = pd.concat([dets, detections(det("i3", B, "cup", 0.9))], ignore_index=True)
    agreement = compare_models(dets, A, B, threshold=0.5, image_ids=["i1", "i2", "i3"])
    fig = F.agreement_figure(agreement, names={"i1": "cat.jpg"})
    assert fig.layout.barmode == "stack"
    assert [t.name for t in fig.data] == ["both", f"only {SA}", f"only {SB}"]
    assert [list(t.y) for t in fig.data] == [[1, 1, 0], [1, 0, 0], [0, 0, 1]]
    assert list(fig.data[0].x) == ["i1", "i2", "i3"]
    assert list(fig.layout.xaxis.ticktext)[0] == "cat.jpg"
    assert fig.data[0].customdata[0][0] == "i1"


# --- models --------------------------------------------------------------------------------------------------------


def test_model_card_joins_measured_and_published():
    infs, _ = session()
    card = F.model_card(infs, meta(A, B)).set_index("model")
    assert card.loc[A, "median_total_ms"] == pytest.approx(1000)
    assert card.loc[A, "p95_total_ms"] == pytest.approx(np.percentile([900, 1000, 1300], 95))
    assert card.loc[A, "median_inference_ms"] == pytest.approx(700)
    assert card.loc[B, "p95_inference_ms"] == pytest.approx(np.percentile([21, 28], 95))
    assert (card.loc[A, "n_images"], card.loc[B, "n_images"], card.loc[B, "n_errors"]) == (3, 2, 1)
    assert card.loc[A, "box_map"] == 37.0 and card.loc[B, "title"] == "SSDLite"
    assert (card.loc[A, "device"], card.loc[A, "precision"], card.loc[A, "weights"]) == ("cpu", "fp32", "default")


def test_model_card_without_meta_keeps_measured_models():
    infs, _ = session()
    card = F.model_card(infs, meta(A))
    assert list(card["model"]) == [A, B]
    assert math.isnan(card.set_index("model").loc[B, "box_map"])
    assert list(card.columns) == list(F.MODEL_CARD_COLUMNS)


def test_accuracy_vs_speed_one_labelled_point_per_model():
    infs, _ = session()
    fig = F.accuracy_vs_speed(F.model_card(infs, meta(A, B)))
    assert [t.name for t in fig.data] == [SA, SB]
    assert (fig.data[0].x[0], fig.data[0].y[0]) == (pytest.approx(1000), 37.0)
    assert (fig.data[1].x[0], fig.data[1].y[0]) == (pytest.approx(35), 21.3)
    assert fig.data[0].text[0] == SA  # the compact name on the chart; title and full name in the hover
    assert "Faster R-CNN ResNet50-FPN" in fig.data[0].hovertemplate and A in fig.data[0].hovertemplate


# --- untrained mark and empty inputs -------------------------------------------------------------------------------


def builders(infs: pd.DataFrame, dets: pd.DataFrame, untrained: bool):
    agreement = compare_models(dets, A, B, threshold=0.5)
    card = F.model_card(infs, meta(A, B))
    return {
        "latency_box": lambda: F.latency_box(infs),
        "latency_breakdown": lambda: F.latency_breakdown(infs),
        "speed_vs_count": lambda: F.speed_vs_count(infs, dets, 0.5),
        "count_vs_threshold": lambda: F.count_vs_threshold(dets, infs),
        "accuracy_vs_speed": lambda: F.accuracy_vs_speed(card),
        "score_histograms": lambda: F.score_histograms(dets, 0.5, untrained=untrained),
        "class_counts": lambda: F.class_counts_chart(dets, 0.5, untrained=untrained),
        "agreement_figure": lambda: F.agreement_figure(agreement, untrained=untrained),
    }


BUILDER_NAMES = list(builders(empty_inferences(), empty_detections(), False))


LATENCY_ONLY = {"latency_box", "latency_breakdown"}  # timings of untrained weights are real: said in the caption


@pytest.mark.parametrize("name", BUILDER_NAMES)
@pytest.mark.parametrize("weights", ["default", "untrained"])
def test_untrained_annotation_on_detection_charts_iff_any_untrained_row(name, weights):
    infs, dets = session(weights=weights)
    untrained = bool(F.untrained_models(infs))
    assert untrained == (weights == "untrained")
    fig = builders(infs, dets, untrained)[name]()
    assert len(untrained_texts(fig)) == (1 if untrained and name not in LATENCY_ONLY else 0)


@pytest.mark.parametrize("weights", ["default", "untrained"])
def test_latency_caption_names_untrained_models(weights):
    infs, _ = session(weights=weights)
    caption = views.latency_caption(infs)
    assert (caption is not None and A in caption and B not in caption) == (weights == "untrained")
    assert (caption is None) == (weights == "default")


@pytest.mark.parametrize(("n", "webgl"), [(10, False), (F.WEBGL_MIN_POINTS, True)])
def test_speed_vs_count_uses_webgl_for_many_points(n, webgl):
    frame = latency_frame(n // 2)
    fig = F.speed_vs_count(frame, empty_detections(), 0.5)
    assert all(isinstance(t, go.Scattergl) == webgl for t in fig.data)
    assert sum(len(t.x) for t in fig.data) == 2 * (n // 2)


def speed_table(n: int, seed: int = 0) -> pd.DataFrame:
    """The speed chart's points (core.analytics.queries.counts_above's columns) for n images per model: 0-59 boxes,
    log-normal latencies 30x apart (a log axis)."""
    rng = np.random.default_rng(seed)
    parts = [
        pd.DataFrame(
            {
                "model": model,
                "image_id": [f"i{k}" for k in range(n)],
                "image_name": [f"img {k}.jpg" for k in range(n)],
                "count": rng.integers(0, 60, n),
                "total_ms": rng.lognormal(np.log(scale), 0.25, n),
            }
        )  # fmt: skip
        for model, scale in ((A, 900.0), (B, 30.0))
    ]
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize(("n", "merged"), [(F.MERGE_MIN_POINTS // 2, False), (F.MERGE_MIN_POINTS // 2 + 1, True),
                                           (10_000, True)])  # fmt: skip
def test_speed_vs_count_draws_every_image_or_one_point_per_cell_that_stands_for_them(n, merged):
    from scipy.spatial import cKDTree

    table = speed_table(n)
    fig = F.speed_vs_count(latency_frame(10), None, 0.5, table=table)
    drawn = sum(len(t.x) for t in fig.data)
    assert (drawn < len(table)) == merged and (f"{len(table):,} points" in fig.layout.xaxis.title.text) == merged
    # a cell of the grid, on the axes as drawn: detections linear, latency log (the models are 30x apart)
    cell = np.array([np.ptp(table["count"]) / F.MERGE_X_CELLS, np.ptp(np.log10(table["total_ms"])) / F.MERGE_Y_CELLS])
    for trace, model in zip(fig.data, (A, B), strict=True):
        part = table[table["model"] == model].set_index("image_id")
        ids = trace.customdata[:, 0]
        assert len(set(ids)) == len(ids)
        assert np.array_equal(trace.x, part.loc[ids, "count"].to_numpy())  # each point is its own image's point
        assert np.allclose(trace.y, part.loc[ids, "total_ms"].to_numpy())
        if not merged:
            assert len(ids) == len(part) and trace.customdata.shape[1] == 2
            continue
        images = [int(text.split()[0].replace(",", "")) for text in trace.customdata[:, 2]]
        assert sum(images) == len(part), "every image is counted by exactly one point"
        # every image lies within one cell of a drawn point of its model: nothing the eye would see is lost
        scaled = lambda t: np.column_stack([t["count"], np.log10(t["total_ms"])]) / cell  # noqa: E731
        distance, _ = cKDTree(scaled(part.loc[ids])).query(scaled(part), p=np.inf)
        assert distance.max() <= 1.0 + 1e-9
    if n == 10_000:
        assert drawn < len(table) / 2, "a 10,000-image run draws far fewer points"


def test_untrained_models_lists_only_untrained():
    infs, _ = session(weights="untrained")
    assert F.untrained_models(infs) == [A]
    assert F.untrained_models(empty_inferences()) == []


def test_mark_untrained_is_idempotent():
    fig = F.mark_untrained(F.mark_untrained(go.Figure(), True), True)
    assert len(untrained_texts(fig)) == 1
    assert len(untrained_texts(F.mark_untrained(go.Figure(), False))) == 0


@pytest.mark.parametrize("name", BUILDER_NAMES)
def test_builders_accept_empty_tables(name):
    fig = builders(empty_inferences(), empty_detections(), False)[name]()
    assert isinstance(fig, go.Figure)
    assert not untrained_texts(fig)


def test_only_failed_rows_give_empty_latency_figures():
    infs = inferences(inf("i1", A, error="boom"))
    for fig in (F.latency_box(infs), F.latency_breakdown(infs), F.speed_vs_count(infs, empty_detections(), 0.5)):
        assert len(fig.data) == 0
        assert fig.layout.annotations


def test_model_card_of_empty_tables():
    card = F.model_card(empty_inferences(), meta())
    assert card.empty
    assert list(card.columns) == list(F.MODEL_CARD_COLUMNS)


def test_empty_figure_says_why():
    fig = F.empty_figure("Nothing here")
    assert [a.text for a in fig.layout.annotations] == ["Nothing here"]


@pytest.mark.parametrize(("totals", "axis_type"), [((30.0, 35.0, 900.0), "log"), ((30.0, 35.0, 50.0), None)])
def test_latency_axes_turn_logarithmic_when_models_differ_by_orders_of_magnitude(totals, axis_type):
    rows = inferences(*(inf(f"i{k}", f"m{k % 2}", t) for k, t in enumerate(totals)))
    for fig in (F.latency_box(rows), F.speed_vs_count(rows, empty_detections(), 0.5)):
        assert fig.layout.yaxis.type == axis_type


def test_overlay_grid_links_the_panels_and_shares_one_legend_entry_per_class():
    image = Image.new("RGB", (200, 100), "white")
    dets = detections(det("a", "m1", "cat", 0.9), det("a", "m2", "cat", 0.8), det("a", "m2", "dog", 0.7))
    fig = F.overlay_grid(image, dets, ["m1", "m2"], threshold=0.5, untrained_models=["m2"])
    assert [(t.name, t.xaxis, t.showlegend) for t in fig.data] == [
        ("cat", "x", True),
        ("cat", "x2", False),
        ("dog", "x2", True),
    ]
    assert fig.layout.xaxis2.matches == "x" and fig.layout.yaxis2.matches == "y"
    assert [im.xref for im in fig.layout.images] == ["x", "x2"]
    assert any("m2" in a.text and "untrained" in a.text for a in fig.layout.annotations)
    assert not any("untrained" in a.text for a in F.overlay_grid(image, dets, ["m1"], threshold=0.5).layout.annotations)


def many_images_detections(n: int) -> pd.DataFrame:
    """n images; image k: A finds k % 4 cups B does not, B one it shares with A, and image 7 also one only B finds."""
    rows = []
    for k in range(n):
        rows.append(det(f"i{k:03d}", A, "cup", 0.9, (0, 0, 10, 10)))
        rows.append(det(f"i{k:03d}", B, "cup", 0.9, (0, 0, 10, 10)))
        rows += [det(f"i{k:03d}", A, "cup", 0.9, (20 * j + 20, 0, 20 * j + 30, 10)) for j in range(k % 4)]
    rows.append(det("i007", B, "dog", 0.9))
    return detections(*rows)


@pytest.mark.parametrize("n", [5, F.AGREEMENT_MAX_BARS, F.AGREEMENT_MAX_BARS + 1, 200])
def test_agreement_figure_bars_are_the_most_disagreeing_images_with_their_exact_counts(n):
    ids = [f"i{k:03d}" for k in range(n)]
    agreement = compare_models(many_images_detections(n), A, B, threshold=0.5, image_ids=ids)
    fig = F.agreement_figure(agreement)
    per_image = agreement.per_image.set_index("image_id")
    shown = list(fig.data[0].x)
    assert len(shown) == min(n, F.AGREEMENT_MAX_BARS)
    if n <= F.AGREEMENT_MAX_BARS:
        assert shown == ids  # every image, in order
        assert "images with the most" not in fig.layout.title.text
    else:
        diff = per_image["only_a"] + per_image["only_b"]
        assert diff[shown].min() >= diff.drop(shown).max()  # no left-out image disagrees more than a shown one
        assert shown[0] == "i007"  # 3 only A + 1 only B
        assert f"the {F.AGREEMENT_MAX_BARS} of {n} images" in fig.layout.title.text
    for trace, column in zip(fig.data, ("both", "only_a", "only_b"), strict=True):
        assert list(trace.y) == per_image.loc[shown, column].tolist()  # the exact per-image counts
