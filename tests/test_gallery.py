"""The Gallery page as a paginated thumbnail grid (AppTest): pages of PAGE_SIZE thumbnails kept in the store, filters
that change the grid, failed images marked, an image opened into the detail view and back."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.images import ImageSource
from dashboard.gallery import FAILED_MARK, PAGE_SIZE
from tests import factories

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
TIMEOUT = 120
A, B = "fasterrcnn_resnet50_fpn", "ssdlite320_mobilenet_v3_large"
N_IMAGES = PAGE_SIZE + 6  # two grid pages
FAILED = 7  # B failed on this image
CORRUPT = 9  # this image's bytes are not an image


# --- factories -----------------------------------------------------------------------------------------------------


def png(i: int) -> bytes:
    """A small image of its own (distinct bytes, so a distinct content id)."""
    rng = np.random.default_rng(i)
    buf = io.BytesIO()
    Image.fromarray((rng.random((30, 40, 3)) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def session(n: int = N_IMAGES) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, ImageSource]]:
    """`n` images named img_000.., A sees i cats at 0.9 on image i (so sorting by detections reverses the names), B
    one dog at 0.6 on every image but FAILED; image CORRUPT's bytes are a PDF header."""
    refs = [
        ImageSource.from_bytes(f"img_{i:03d}.png", b"%PDF-1.7 not an image" if i == CORRUPT else png(i))
        for i in range(n)
    ]
    inf, det = [], []
    for i, ref in enumerate(refs):
        inf.append(factories.inference(ref, A, n=i))
        det += [factories.box(ref, A, "cat", 0.9, (1, 1, 20, 20), 17) for _ in range(i)]
        if i == FAILED:
            inf.append(factories.inference(ref, B, error="out of memory"))
        else:
            inf.append(factories.inference(ref, B, n=1))
            det.append(factories.box(ref, B, "dog", 0.6, (2, 2, 30, 25), 18))
    inf_df, det_df = factories.tables(inf, det)
    return inf_df, det_df, {r.image_id: r for r in refs}


def open_gallery(seed=None, threshold: float = 0.5) -> AppTest:
    inf, det, refs = seed or session()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["detlens_inferences"] = inf
    at.session_state["detlens_detections"] = det
    at.session_state["detlens_images"] = refs
    at.session_state["detlens_runs"] = []
    at.session_state["detlens_threshold"] = threshold
    at.session_state["gallery_sort"] = "name"
    at.session_state["gallery_desc"] = False
    at.run()
    at.switch_page("../pages/gallery.py").run()
    assert not at.exception
    return at


def captions(at: AppTest) -> list[str]:
    """The thumbnails' captions in grid order (each starts with the bold image name), markdown escapes removed."""
    shown = [c.value.replace("\\", "") for c in at.caption]
    return [c for c in shown if c.startswith("**img_")]


def names(at: AppTest) -> list[str]:
    return [c.split("**")[1] for c in captions(at)]


def thumbnails(at: AppTest) -> int:
    return len(at.get("image"))


# --- the grid ------------------------------------------------------------------------------------------------------


def test_page_one_shows_page_size_thumbnails_kept_in_the_store(private_run_store: Path):
    at = open_gallery()
    assert thumbnails(at) == PAGE_SIZE and names(at) == [f"img_{i:03d}.png" for i in range(PAGE_SIZE)]
    assert not at.get("plotly_chart"), "no image is open: the grid only"
    kept = sorted((private_run_store / "thumbs").glob("*.jpg"))
    assert len(kept) == PAGE_SIZE - 1, "only this page's thumbnails are made (the corrupt one has none)"
    mtimes = [p.stat().st_mtime_ns for p in kept]
    at.run()
    assert [p.stat().st_mtime_ns for p in kept] == mtimes, "a rerun reuses them"


def test_page_two_shows_the_other_images():
    at = open_gallery()
    first = names(at)
    at.number_input(key="gallery_page").set_value(2).run()
    assert not at.exception
    assert thumbnails(at) == N_IMAGES - PAGE_SIZE
    assert names(at) == [f"img_{i:03d}.png" for i in range(PAGE_SIZE, N_IMAGES)] and not set(names(at)) & set(first)


@pytest.mark.parametrize(
    ("widget", "value", "expected_first", "expected_count"),
    [
        ("gallery_name", "img_02", ["img_020.png", "img_021.png"], 10),  # names containing "img_02": 020..029
        ("gallery_sort", "detections", [f"img_{N_IMAGES - 1:03d}.png", f"img_{N_IMAGES - 2:03d}.png"], PAGE_SIZE),
    ],
)
def test_filters_and_sorting_change_the_grid(widget, value, expected_first, expected_count):
    at = open_gallery()
    if widget == "gallery_name":
        at.text_input(key=widget).set_value(value).run()
    else:
        at.toggle(key="gallery_desc").set_value(True)
        at.selectbox(key=widget).set_value(value).run()
    assert not at.exception
    assert names(at)[:2] == expected_first and thumbnails(at) == expected_count


@pytest.mark.parametrize(("threshold", "classes", "b_count"), [(0.5, [], 1), (0.7, [], 0), (0.5, ["cat"], 0)])
def test_captions_count_boxes_per_model_at_the_threshold_and_classes(threshold, classes, b_count):
    at = open_gallery(threshold=threshold)
    if classes:
        at.multiselect(key="gallery_classes").set_value(classes).run()
    third = captions(at)[3]  # img_003: A has 3 cats at 0.9
    assert "Faster R-CNN R50-FPN: 3" in third and f"SSDLite320 MNv3-L: {b_count}" in third


def test_a_failed_image_shows_its_mark_and_an_unreadable_one_a_placeholder():
    at = open_gallery()
    shown = captions(at)
    assert FAILED_MARK in shown[FAILED] and "SSDLite320 MNv3-L" in shown[FAILED].split("failed:")[1]
    assert [i for i, c in enumerate(shown) if FAILED_MARK in c] == [FAILED]
    assert "PDF" in shown[CORRUPT], "the reason there is no thumbnail"
    assert thumbnails(at) == PAGE_SIZE, "a placeholder stands in for it"


# --- opening an image ----------------------------------------------------------------------------------------------


def test_open_shows_the_detail_view_with_next_and_back_to_its_grid_page():
    inf, det, refs = session()
    at = open_gallery((inf, det, refs))
    at.number_input(key="gallery_page").set_value(2).run()
    at.button(key="gallery_open_1").click().run()  # img_025 (second of page 2)
    assert not at.exception
    opened = at.session_state["gallery_image"]
    assert refs[opened].name == f"img_{PAGE_SIZE + 1:03d}.png" and at.query_params["image"] == opened
    assert at.get("plotly_chart") and thumbnails(at) == 0, "the overlay, not the grid"
    assert {m.label: m.value for m in at.metric} == {A: f"{PAGE_SIZE + 1} boxes", B: "1 boxes"}
    at.button(key="gallery_next").click().run()
    assert refs[at.session_state["gallery_image"]].name == f"img_{PAGE_SIZE + 2:03d}.png"
    at.button(key="gallery_back").click().run()
    assert not at.exception and "gallery_image" not in at.session_state
    assert at.number_input(key="gallery_page").value == 2 and thumbnails(at) == N_IMAGES - PAGE_SIZE
    assert "image" not in at.query_params


def test_an_open_image_the_filters_drop_goes_back_to_the_grid():
    at = open_gallery()
    at.button(key="gallery_open_0").click().run()
    assert at.get("plotly_chart")
    at.text_input(key="gallery_name").set_value("img_01").run()
    assert not at.exception and thumbnails(at) == 10 and not at.get("plotly_chart")
