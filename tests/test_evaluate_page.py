"""The Evaluate page, its figure builders and the Gallery's ground-truth overlay, on boxes whose metrics are known."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.config import GALLERY_ANNOTATIONS, UNTRAINED_MARK
from core.evaluate import evaluator_version, load_ground_truth, match_outcomes, with_images
from core.inference.models import short_name
from dashboard import figures as F
from tests import factories
from tests import test_pages as pages_test

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "dashboard" / "app.py")
A, B = "fasterrcnn_resnet50_fpn", "ssdlite320_mobilenet_v3_large"
GT = json.loads(GALLERY_ANNOTATIONS.read_text())
SIZES = {im["file_name"]: (im["width"], im["height"]) for im in GT["images"]}
CAT_GT = (0, 0, 398, 300)  # the gallery's one cat on cat.jpg (category 17), as x1, y1, x2, y2


# --- factories -------------------------------------------------------------------------------------------------------


def gt_boxes(name: str) -> list[tuple[int, tuple[float, float, float, float]]]:
    """(category id, xyxy) of the gallery's ground truth on one photo."""
    (image_id,) = [im["id"] for im in GT["images"] if im["file_name"] == name]
    return [
        (a["category_id"], (a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]))
        for a in GT["annotations"]
        if a["image_id"] == image_id
    ]


def session(rows: dict[str, list[tuple]], *, weights: str = "default", totals: dict[str, float] | None = None):
    """A seeded session on gallery photos, sized as the ground truth says: model -> [(photo, label, label id, score,
    xyxy)]; each model processes the photos of its boxes (cat.jpg when it has none)."""
    photos = sorted({r[0] for boxes in rows.values() for r in boxes} | {"cat.jpg"})
    refs = {name: factories.gallery_ref(name) for name in photos}
    inf, det = [], []
    for model, boxes in rows.items():
        for name in sorted({r[0] for r in boxes}) or ["cat.jpg"]:
            row = factories.inference(refs[name], model, total=(totals or {}).get(model, 10.0), weights=weights)
            row["width"], row["height"] = SIZES[name]
            inf.append(row)
        det += [
            factories.box(refs[n], model, label, score, xyxy, label_id) for n, label, label_id, score, xyxy in boxes
        ]
    inf_df, det_df = factories.tables(inf, det)
    return inf_df, det_df, {r.image_id: r for r in refs.values()}


def perfect(model: str = A, photos=("cat.jpg", "coffee.jpg", "motorcycle.jpg")) -> list[tuple]:
    """The ground-truth boxes themselves, as detections."""
    from core.inference.models import get_model

    names = get_model(A).categories
    return [(p, names[c], c, 0.9, xyxy) for p in photos for c, xyxy in gt_boxes(p)]


def with_fp() -> list[tuple]:
    """cat.jpg: the cat found (0.9) and a dog where there is nothing (0.6): at 0.5 precision 1/2, recall 1."""
    return [("cat.jpg", "cat", 17, 0.9, CAT_GT), ("cat.jpg", "dog", 18, 0.6, (400, 0, 450, 50))]


def open_page(seed=None, *, threshold: float | None = None, page: str = "pages/evaluate.py") -> AppTest:
    return pages_test.open_page(page, seed, threshold)


def frame(at: AppTest, column: str) -> pd.DataFrame:
    """The first dataframe on the page with this column."""
    found = [d.value for d in at.dataframe if column in d.value.columns]
    assert found, f"no table with {column!r}"
    return found[0]


def texts(at: AppTest) -> str:
    kinds = ("markdown", "caption", "warning", "info", "error", "success")
    return "\n".join(str(e.value) for kind in kinds for e in at.get(kind)).replace("\\", "")  # md() escapes


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


# --- the page --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [None, "seeded", "perfect"])
def test_the_page_runs(seed):
    data = {None: None, "seeded": factories.seeded(), "perfect": session({A: perfect()})}[seed]
    at = open_page(data)
    assert not at.exception
    assert at.title[0].value == "Evaluate"
    assert at.session_state["detlens_gt"]["source"] == "gallery", "the gallery's ground truth is loaded by default"


def test_ground_truth_boxes_as_detections_score_one():
    at = open_page(session({A: perfect(), B: with_fp()}))
    assert not at.exception
    table = frame(at, "AP50").set_index("model")
    assert table.loc[A, "AP"] == pytest.approx(1.0) and table.loc[A, "AR100"] == pytest.approx(1.0)
    assert table.loc[A, "images"] == 3 and table.loc[A, "GT boxes"] == 8
    assert table.loc[B, "AP"] == pytest.approx(1.0)  # a lower-scored false positive costs no AP here
    assert evaluator_version() in texts(at) and "maxDets [1, 10, 100]" in texts(at)
    assert {"eval_pr", "eval_per_class", "eval_frontier"} <= {c.key for c in at.get("plotly_chart")}


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [
        (0.5, (1, 1, 0, 0.5, 1.0, 2 / 3)),
        (0.7, (1, 0, 0, 1.0, 1.0, 1.0)),
        (0.95, (0, 0, 1, math.nan, 0.0, math.nan)),
    ],
)
def test_precision_recall_f1_at_the_threshold(threshold, expected):
    at = open_page(session({A: with_fp()}), threshold=threshold)
    assert not at.exception
    row = frame(at, "F1").set_index("model").loc[A]
    got = (row["TP"], row["FP"], row["FN"], row["precision"], row["recall"], row["F1"])
    assert got[:3] == expected[:3]
    np.testing.assert_allclose(np.array(got[3:], dtype=float), np.array(expected[3:], dtype=float))


def test_moving_the_threshold_updates_precision_live():
    at = open_page(session({A: with_fp()}), threshold=0.5)
    assert frame(at, "F1").set_index("model").loc[A, "precision"] == pytest.approx(0.5)
    at.session_state["detlens_threshold"] = 0.7
    at.run()
    assert not at.exception
    assert frame(at, "F1").set_index("model").loc[A, "precision"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "is not valid JSON"),
        (b'{"images": []}', "missing keys"),
        (json.dumps({**GT, "annotations": [{**GT["annotations"][0], "bbox": [0, 0, -5, 3]}]}).encode(), "no area"),
    ],
)
def test_an_invalid_ground_truth_shows_one_line(content, message):
    at = open_page(session({A: perfect()}))
    at.radio(key="eval_gt_source").set_value("upload").run()
    at.get("file_uploader")[0].set_value(("bad <b>gt</b>.json", content, "application/json")).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and message in errors[0] and "\n" not in errors[0]
    assert "<b>" not in errors[0], "the file name is escaped"
    assert "detlens_gt" not in at.session_state, "no ground truth is kept"
    assert not [d for d in at.dataframe if "AP50" in d.value.columns]


def test_an_uploaded_ground_truth_is_kept_for_the_session():
    doc = {**GT, "annotations": [a for a in GT["annotations"] if a["image_id"] == 3]}  # only the cat
    at = open_page(session({A: perfect()}))
    at.radio(key="eval_gt_source").set_value("upload").run()
    at.get("file_uploader")[0].set_value(("cats.json", json.dumps(doc).encode(), "application/json")).run()
    assert not at.exception
    assert at.session_state["detlens_gt"]["source"] == "upload"
    assert frame(at, "AP50").set_index("model").loc[A, "GT boxes"] == 1
    at.switch_page("../pages/gallery.py").run()
    at.switch_page("../pages/evaluate.py").run()
    assert at.radio(key="eval_gt_source").value == "upload" and "cats.json" in texts(at)
    assert frame(at, "AP50").set_index("model").loc[A, "GT boxes"] == 1


def test_untrained_results_are_marked_on_every_figure():
    at = open_page(session({A: perfect()}, weights="untrained"))
    assert not at.exception
    assert UNTRAINED_MARK in texts(at)
    specs = charts(at)
    assert specs and all(
        any(a.get("name") == F.UNTRAINED_ANNOTATION_NAME for a in s["layout"].get("annotations", [])) for s in specs
    )


def test_the_category_mapping_and_notes_are_shown():
    seed = session({A: perfect(photos=("cat.jpg",))})
    inf, det, refs = seed
    extra = factories.gallery_ref("rocket.jpg")
    row = factories.inference(extra, A)  # 100 x 80: not the ground truth's size
    inf = pd.concat([inf, factories.tables([row], [])[0]], ignore_index=True)
    at = open_page((inf, det, refs | {extra.image_id: extra}))
    assert not at.exception
    mapping = frame(at, "GT name").set_index("GT name")
    assert mapping.loc["cat", "label id"] == 17
    assert "rocket.jpg" in texts(at) and "size differs" in texts(at)


# --- the Gallery's ground-truth overlay -------------------------------------------------------------------------------


def test_gallery_ground_truth_toggle_colours_true_and_false_positives():
    at = open_page(session({A: with_fp()}), threshold=0.5)  # Evaluate loads the gallery's ground truth
    at.switch_page("../pages/gallery.py").run()
    at.button(key="gallery_open_0").click().run()
    assert not at.exception
    at.toggle(key="gallery_gt").set_value(True).run()
    assert not at.exception
    (spec,) = [s for s in charts(at)]
    traces = {t["name"]: t for t in spec["data"]}
    assert traces["true positive"]["line"]["color"] == F.OUTCOME_STYLES["tp"][1]
    assert traces["false positive"]["line"]["color"] == F.OUTCOME_STYLES["fp"][1]
    assert "low IoU" in traces["false positive"]["hovertext"][0]
    assert "missed ground truth" not in traces
    assert "1 true positives, 1 false positives, 0 missed" in texts(at)
    at.selectbox(key="gallery_sort").set_value("GT errors").run()
    assert not at.exception


def test_gallery_without_ground_truth_has_no_toggle():
    at = open_page(session({A: with_fp()}), page="pages/gallery.py")
    at.button(key="gallery_open_0").click().run()
    assert not at.exception and at.get("plotly_chart")
    assert not [t for t in at.toggle if t.key == "gallery_gt"]


# --- figure builders -------------------------------------------------------------------------------------------------


def points(*rows) -> pd.DataFrame:
    return pd.DataFrame(
        [{"label": n, "model": n, "weights": "default", "device": "cpu", "precision": "fp32", "AP": ap,
          "median_total_ms": ms} for n, ap, ms in rows]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "front"),
    [
        ([("fast", 0.2, 10), ("slow", 0.5, 100), ("bad", 0.1, 50)], ["fast", "slow"]),
        ([("a", 0.4, 10), ("b", 0.4, 20)], ["a"]),  # as accurate and slower: dominated
        ([("a", 0.4, 10), ("a2", 0.4, 10)], ["a", "a2"]),  # identical points dominate neither
        ([("a", 0.3, 10), ("b", 0.5, 5)], ["b"]),  # faster and better
        ([("a", 0.3, 10), ("nan", math.nan, 1)], ["a"]),  # no AP: never on the front
    ],
)
def test_pareto_front(rows, front):
    card = points(*rows)
    assert card.loc[F.pareto_front(card), "label"].tolist() == front
    fig = F.frontier(card)
    line = next(t for t in fig.data if t.name == F.PARETO_NAME)
    expected = card[card["label"].isin(front)].sort_values("median_total_ms", kind="stable")
    assert list(line.x) == expected["median_total_ms"].tolist() and list(line.y) == expected["AP"].tolist()
    assert {t.name for t in fig.data} == {F.PARETO_NAME, *card.dropna()["label"]}


def test_frontier_without_points_and_untrained_mark():
    fig = F.frontier(points(("a", math.nan, 10)), untrained=["a"])
    assert any(a.name == F.UNTRAINED_ANNOTATION_NAME for a in fig.layout.annotations)
    assert not fig.data


def test_pr_curves_one_line_per_model_with_gaps_for_no_gt():
    r = np.linspace(0, 1, 101)
    curves = {
        "m<1>": pd.DataFrame({"recall": r, "precision": np.where(r <= 0.5, 1.0, 0.0)}),
        "empty": pd.DataFrame({"recall": r, "precision": np.full(101, np.nan)}),
    }
    fig = F.pr_curves_chart(curves, untrained=True)
    assert [t.name for t in fig.data] == ["m&lt;1&gt;"]
    assert fig.data[0].y[50] == 1.0 and fig.data[0].y[51] == 0.0
    assert any(a.name == F.UNTRAINED_ANNOTATION_NAME for a in fig.layout.annotations)
    assert isinstance(F.pr_curves_chart({"empty": curves["empty"]}), go.Figure)


def test_per_class_ap_bars():
    fig = F.per_class_ap(
        {A: {"cat": 0.8, "dog": math.nan, "<cup>": 0.2}, B: {"cat": 0.4, "dog": math.nan, "<cup>": 0.6}}
    )
    assert [t.name for t in fig.data] == [short_name(A), short_name(B)]  # compact legend, full name in the hover
    assert A in fig.data[0].hovertemplate
    assert list(fig.data[0].x) == ["cat", "&lt;cup&gt;"]  # classes without GT are left out; by mean AP
    assert list(fig.data[0].y) == [0.8, 0.2] and list(fig.data[1].y) == [0.4, 0.6]
    assert not F.per_class_ap({A: {"dog": math.nan}}).data


def test_outcome_overlay_grid_from_match_outcomes():
    gt = load_ground_truth(GALLERY_ANNOTATIONS)
    cat = factories.gallery_ref("cat.jpg")
    matched = with_images(gt, {cat.image_id: "cat.jpg"}, image_sizes={cat.image_id: SIZES["cat.jpg"]})
    _, det = factories.tables(
        [],
        [
            factories.box(cat, A, "dog", 0.9, CAT_GT, 18),  # on the cat: wrong class
            factories.box(cat, B, "cat", 0.9, CAT_GT, 17),
            factories.box(cat, B, "cat", 0.8, (1, 1, 398, 300), 17),  # the same cat again: duplicate
        ],
    )
    outcomes = {m: match_outcomes(matched, det, 0.5, model=m) for m in (A, B)}
    image = Image.new("RGB", SIZES["cat.jpg"], "white")
    fig = F.outcome_overlay_grid(image, outcomes, [A, B], untrained_models=[B])
    by = {(t.meta["model"], t.meta["outcome"]): t for t in fig.data}
    assert set(by) == {(A, "fp"), (A, "fn"), (B, "tp"), (B, "fp")}
    assert "wrong class" in by[(A, "fp")].hovertext[0] and "duplicate" in by[(B, "fp")].hovertext[0]
    assert by[(A, "fn")].line.dash == "dash" and by[(A, "fn")].line.color == F.OUTCOME_STYLES["fn"][1]
    assert by[(B, "tp")].xaxis == "x2" and by[(B, "tp")].line.color == "#2CA02C"
    assert [t.showlegend for t in fig.data].count(True) == 3  # one legend entry per outcome
    assert len(fig.layout.images) == 2
    assert any(a.name == F.UNTRAINED_ANNOTATION_NAME for a in fig.layout.annotations)
