"""Thumbnails: a small JPEG of each image, made once and kept on disk by content id (`<store>/thumbs/<id>.jpg`).

A thumbnail is made from the same decode as the full image (`core.images.load_image`: the same guards, EXIF
orientation and mode conversion), with JPEG DCT scaling so that a large photo is not decoded at full size. It is
written atomically (a temporary file renamed into place), so concurrent makers never leave half a file and the last
rename wins with identical bytes. An image whose bytes cannot be decoded gets a `<id>.err` file with the reason (the
same bytes always fail the same way), so it is not decoded again; an image whose file is gone gets no file at all (it
may come back). Nothing here raises for a bad image: the caller gets a `Thumbnail` with `error` and shows
`placeholder()`.
"""

from __future__ import annotations

import functools
import io
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from core.config import THUMB_QUALITY, THUMB_SIDE
from core.files import write_atomic
from core.images import ImageSource, LoadedImage, downscale_for_display, load_image
from core.text import one_line

_ID = re.compile(r"[0-9a-f]{16}")  # core.images.content_id: never a path of its own
_ERROR_MAX_CHARS = 200
GONE = "the image file is not available"
CHANGED = "the image file changed since it was kept"


@dataclass(frozen=True)
class Thumbnail:
    """An image's thumbnail file, or the one-line reason there is none (show `placeholder()` then)."""

    image_id: str
    path: Path | None
    error: str = ""

    def __post_init__(self) -> None:
        if (self.path is None) == (not self.error):
            raise ValueError("a Thumbnail has exactly one of `path` and `error`")

    @property
    def ok(self) -> bool:
        return not self.error


def thumbnail_path(thumbs_dir: Path, image_id: str) -> Path:
    """Where an image's thumbnail is kept; ValueError for anything that is not a content id."""
    if not _ID.fullmatch(image_id):
        raise ValueError(f"not an image id: {image_id!r}")
    return thumbs_dir / f"{image_id}.jpg"


def render(loaded: LoadedImage, side: int = THUMB_SIDE) -> bytes:
    """JPEG bytes of a decoded image shrunk so its longest side is at most `side`."""
    if not loaded.ok or loaded.image is None:
        raise ValueError(f"cannot make a thumbnail of a failed image: {loaded.error}")
    small, _ = downscale_for_display(loaded.image, side)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=THUMB_QUALITY, optimize=True)
    return buf.getvalue()


def ensure(thumbs_dir: Path, image_id: str, source: ImageSource | None, side: int = THUMB_SIDE) -> Thumbnail:
    """The kept thumbnail of `image_id`, made from `source` on first request (never raises for a bad image)."""
    if not _ID.fullmatch(image_id):
        return Thumbnail(image_id, None, "no image id")
    path = thumbnail_path(thumbs_dir, image_id)
    if path.is_file():
        return Thumbnail(image_id, path)
    failed = path.with_suffix(".err")
    if failed.is_file():
        try:
            return Thumbnail(image_id, None, failed.read_text(encoding="utf-8").strip() or "unreadable image")
        except OSError:
            pass
    if source is None:
        return Thumbnail(image_id, None, GONE)
    if source.data is not None or source.path is None:
        loaded = load_image(source.data or b"", source.name, draft_side=side)
    else:
        loaded = load_image(source.path, source.name, draft_side=side)
    if loaded.image_id != image_id:  # unreadable now ("" id), or other bytes than the ones this id names
        return Thumbnail(image_id, None, CHANGED if loaded.image_id else (loaded.error or GONE))
    try:
        thumbs_dir.mkdir(parents=True, exist_ok=True)
        if not loaded.ok:
            write_atomic(failed, (loaded.error + "\n").encode())
            return Thumbnail(image_id, None, loaded.error)
        write_atomic(path, render(loaded, side))
    except OSError as exc:  # a read-only or full store: the page still shows a placeholder
        return Thumbnail(image_id, None, one_line(f"thumbnail not written: {exc}", _ERROR_MAX_CHARS))
    return Thumbnail(image_id, path)


@functools.lru_cache(maxsize=4)
def placeholder(side: int = THUMB_SIDE) -> bytes:
    """A grey JPEG with a cross: what the grid shows for an image that cannot be shown."""
    im = Image.new("RGB", (side, side * 3 // 4), (225, 225, 225))
    draw = ImageDraw.Draw(im)
    w, h = im.size
    draw.line((w // 3, h // 3, 2 * w // 3, 2 * h // 3), fill=(150, 150, 150), width=3)
    draw.line((w // 3, 2 * h // 3, 2 * w // 3, h // 3), fill=(150, 150, 150), width=3)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=THUMB_QUALITY)
    return buf.getvalue()
