"""Gallery tiles: one size for every image, boxes drawn where they are, each class of an image in its own colour."""

from __future__ import annotations

import pandas as pd
import pytest
from PIL import Image, ImageColor

from dashboard.figures import class_colors
from dashboard.gallery import short_text
from dashboard.tiles import TILE_BACKGROUND, TILE_SIZE, draw_tile, tile_boxes


@pytest.mark.parametrize("shape", [(160, 40), (40, 160), (160, 120), (90, 90)], ids=str)
def test_every_tile_has_one_size_whatever_the_image_shape(shape):
    assert draw_tile(Image.new("RGB", shape, "white"), None, ()).size == TILE_SIZE == (160, 120)


def test_boxes_are_drawn_scaled_from_original_pixels_in_their_class_colours():
    # a 1600 x 1200 photo kept as a 160 x 120 thumbnail: scale 0.1, no letterbox
    thumb = Image.new("RGB", (160, 120), "white")
    boxes = (
        (100.0, 100.0, 600.0, 500.0, "N/A"),  # -> (10, 10)-(60, 50)
        (800.0, 600.0, 1500.0, 1100.0, "baseball glove"),  # -> (80, 60)-(150, 110)
    )
    tile = draw_tile(thumb, (1600, 1200), boxes)
    colors = {k: ImageColor.getrgb(v) for k, v in class_colors(["N/A", "baseball glove"]).items()}
    assert colors["N/A"] != colors["baseball glove"]
    assert tile.getpixel((10, 30)) == colors["N/A"]  # left edge of the first box
    assert tile.getpixel((115, 110)) == colors["baseball glove"]  # bottom edge of the second
    assert tile.getpixel((35, 30)) == (255, 255, 255)  # inside a box: the image, not filled


def test_a_tall_image_is_letterboxed_in_the_middle():
    tile = draw_tile(Image.new("RGB", (60, 120), "white"), (600, 1200), ((0.0, 0.0, 600.0, 1200.0, "cat"),))
    assert tile.getpixel((5, 60)) == TILE_BACKGROUND  # left band
    assert tile.getpixel((50, 0)) != TILE_BACKGROUND  # the image (its box outline) starts at x = (160 - 60) / 2


def test_tile_boxes_keep_the_model_the_threshold_and_the_classes():
    boxes = pd.DataFrame({
        "model": ["a", "a", "a", "b"], "label": ["cat", "dog", "cat", "cat"], "score": [0.9, 0.8, 0.1, 0.9],
        "x1": [1.0, 2.0, 3.0, 4.0], "y1": [1.0] * 4, "x2": [5.0] * 4, "y2": [5.0] * 4,
    })  # fmt: skip
    assert tile_boxes(boxes, "a", 0.5) == ((1.0, 1.0, 5.0, 5.0, "cat"), (2.0, 1.0, 5.0, 5.0, "dog"))
    assert tile_boxes(boxes, "a", 0.5, ["dog"]) == ((2.0, 1.0, 5.0, 5.0, "dog"),)


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [("cat.jpg", 16, "cat.jpg"), ("a_very_long_photo_name_0001.jpg", 16, "a_very_lon…1.jpg")],
)
def test_long_names_keep_their_start_and_end(text, limit, expected):
    assert short_text(text, limit) == expected and len(short_text(text, limit)) <= limit
