"""Gallery tiles: a kept thumbnail (core.images.thumbs) with one model's boxes drawn on it, letterboxed into a tile of one
size, so the grid's tiles, captions and Open buttons line up whatever the images' shapes. Drawn server-side with
Pillow on the 160 px thumbnail (a few kilobytes per tile), cached per (thumbnail, boxes)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image, ImageDraw, ImageOps

from core.config import THUMB_QUALITY, THUMB_SIDE
from dashboard.figures import class_colors

TILE_SIZE = (THUMB_SIDE, THUMB_SIDE * 3 // 4)  # every tile 4:3, the image fitted inside
TILE_BACKGROUND = (243, 245, 249)  # the theme's secondary background
BOX_WIDTH = 2

Box = tuple[float, float, float, float, str]  # x1, y1, x2, y2 in original pixels, label


def draw_tile(thumbnail: Image.Image, original_size: tuple[int, int] | None, boxes: Sequence[Box]) -> Image.Image:
    """The thumbnail fitted into TILE_SIZE (letterboxed on the theme's background) with `boxes` (original-image
    pixels, scaled with the image) outlined, each class in its own colour (`class_colors`: no two alike)."""
    small = ImageOps.contain(thumbnail.convert("RGB"), TILE_SIZE)
    tile = Image.new("RGB", TILE_SIZE, TILE_BACKGROUND)
    ox, oy = (TILE_SIZE[0] - small.width) // 2, (TILE_SIZE[1] - small.height) // 2
    tile.paste(small, (ox, oy))
    if boxes and original_size and original_size[0] > 0 and original_size[1] > 0:
        sx, sy = small.width / original_size[0], small.height / original_size[1]
        colors = class_colors(label for *_, label in boxes)
        draw = ImageDraw.Draw(tile)
        for x1, y1, x2, y2, label in boxes:
            rect = (ox + x1 * sx, oy + y1 * sy, ox + max(x2 * sx, x1 * sx + 1), oy + max(y2 * sy, y1 * sy + 1))
            draw.rectangle(rect, outline=colors[label], width=BOX_WIDTH)
    return tile


def tile_boxes(
    boxes: pd.DataFrame, model: str, threshold: float, classes: Sequence[str] | None = None
) -> tuple[Box, ...]:
    """One image's boxes of `model` at or above `threshold` (in `classes` when given), as hashable tuples."""
    keep = (boxes["model"] == model) & (boxes["score"] >= threshold)
    if classes:
        keep &= boxes["label"].isin(list(classes))
    part = boxes[keep]
    coords = part[["x1", "y1", "x2", "y2"]].to_numpy(dtype=np.float64)
    return tuple((*map(float, c), str(lab)) for c, lab in zip(coords, part["label"].astype(str), strict=True))


@st.cache_data(show_spinner=False, max_entries=4096)
def tile_jpeg(path: str, mtime: float, original_size: tuple[int, int] | None, boxes: tuple[Box, ...]) -> bytes:
    """JPEG bytes of the tile of the thumbnail at `path` (its mtime in the key: a remade thumbnail is drawn again)."""
    with Image.open(path) as im:
        tile = draw_tile(im, original_size, boxes)
    buf = io.BytesIO()
    tile.save(buf, format="JPEG", quality=THUMB_QUALITY)
    return buf.getvalue()


def placeholder_tile(data: bytes) -> bytes:
    """A placeholder thumbnail (bytes) fitted into a tile like the others."""
    with Image.open(io.BytesIO(data)) as im:
        tile = draw_tile(im, None, ())
    buf = io.BytesIO()
    tile.save(buf, format="JPEG", quality=THUMB_QUALITY)
    return buf.getvalue()
