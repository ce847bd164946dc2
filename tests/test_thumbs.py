"""Thumbnails kept in the store: made once, oriented as the full decode, safe under concurrent makers, placeholders for
gone or corrupt images."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.config import THUMB_SIDE
from core.images import ImageSource, downscale_for_display, load_image, thumbs
from core.store import Store

# --- factories -----------------------------------------------------------------------------------------------------


def halves(w: int, h: int) -> Image.Image:
    """Left half red, right half blue, top rows green: any rotation or flip moves the colours."""
    a = np.zeros((h, w, 3), dtype=np.uint8)
    a[:, : w // 2] = (220, 20, 20)
    a[:, w // 2 :] = (20, 20, 220)
    a[: h // 8] = (20, 200, 20)
    return Image.fromarray(a)


def jpeg(im: Image.Image, orientation: int = 1) -> bytes:
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def source(data: bytes, name: str = "x.jpg") -> ImageSource:
    return ImageSource.from_bytes(name, data)


def counting_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = thumbs.load_image

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(thumbs, "load_image", counted)
    return calls


# --- made once -----------------------------------------------------------------------------------------------------


def test_a_thumbnail_is_made_once_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    decodes = counting_decodes(monkeypatch)
    src = source(jpeg(halves(640, 480)))
    first = thumbs.ensure(tmp_path, src.image_id, src)
    assert first.ok and first.path == tmp_path / f"{src.image_id}.jpg" and len(decodes) == 1
    mtime = first.path.stat().st_mtime_ns
    again = thumbs.ensure(tmp_path, src.image_id, None)  # no source needed once kept
    assert again == first and len(decodes) == 1 and first.path.stat().st_mtime_ns == mtime
    with Image.open(first.path) as im:
        assert im.format == "JPEG" and max(im.size) == THUMB_SIDE and im.size == (THUMB_SIDE, THUMB_SIDE * 3 // 4)


@pytest.mark.parametrize("size", [(100, 60), (THUMB_SIDE, 90)])
def test_a_small_image_is_not_enlarged(tmp_path: Path, size: tuple[int, int]):
    src = source(jpeg(halves(*size)))
    with Image.open(thumbs.ensure(tmp_path, src.image_id, src).path) as im:
        assert im.size == size


# --- orientation ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "size"),
    [(1, (480, 240)), (3, (480, 240)), (6, (480, 240)), (8, (480, 240)), (2, (480, 240)), (6, (2400, 1200))],
)  # the last one is decoded at a reduced DCT scale (draft)
def test_thumbnail_is_oriented_as_the_full_decode(tmp_path: Path, orientation: int, size: tuple[int, int]):
    data = jpeg(halves(*size), orientation)
    full = load_image(data)
    expected, _ = downscale_for_display(full.image, THUMB_SIDE)
    src = source(data)
    with Image.open(thumbs.ensure(tmp_path, src.image_id, src).path) as im:
        got = np.asarray(im.convert("RGB"), dtype=float)
    assert got.shape[:2] == (expected.height, expected.width)
    assert (full.width < full.height) == (orientation in (6, 8))
    assert np.abs(got - np.asarray(expected, dtype=float)).mean() < 6  # JPEG noise, not a flipped half (~130)


# --- concurrent makers ---------------------------------------------------------------------------------------------


def test_concurrent_makers_leave_one_whole_file(tmp_path: Path):
    src = source(jpeg(halves(1200, 900)))
    results: list[thumbs.Thumbnail] = []
    barrier = threading.Barrier(8)

    def make() -> None:
        barrier.wait()
        results.append(thumbs.ensure(tmp_path, src.image_id, src))

    workers = [threading.Thread(target=make) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(results) == 8 and all(r.ok and r.path == results[0].path for r in results)
    assert [p.name for p in tmp_path.iterdir()] == [f"{src.image_id}.jpg"], "no temporary file is left behind"
    with Image.open(results[0].path) as im:
        im.load()  # a half-written JPEG would raise here
        assert max(im.size) == THUMB_SIDE


# --- images that cannot be shown -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (jpeg(halves(64, 48))[:200], "truncated or corrupt"),
        (b"%PDF-1.7 not an image", "PDF"),
    ],
)
def test_a_corrupt_image_gets_its_reason_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes, reason: str
):
    decodes = counting_decodes(monkeypatch)
    src = source(data)
    first = thumbs.ensure(tmp_path, src.image_id, src)
    assert not first.ok and first.path is None and reason in first.error
    again = thumbs.ensure(tmp_path, src.image_id, src)
    assert again == first and len(decodes) == 1, "the same bytes fail the same way: not decoded again"
    assert not (tmp_path / f"{src.image_id}.jpg").exists()


def test_a_gone_or_changed_file_gets_a_placeholder_and_no_file(tmp_path: Path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg(halves(64, 48)))
    src = ImageSource.from_path(photo).hashed()
    thumbs_dir = tmp_path / "thumbs"
    photo.write_bytes(jpeg(halves(80, 48)))  # other bytes under the same name
    assert thumbs.ensure(thumbs_dir, src.image_id, src).error == thumbs.CHANGED
    photo.unlink()
    gone = thumbs.ensure(thumbs_dir, src.image_id, src)
    assert not gone.ok and "not found" in gone.error
    assert thumbs.ensure(thumbs_dir, src.image_id, None).error == thumbs.GONE
    assert not thumbs_dir.exists() or not any(thumbs_dir.iterdir()), "nothing kept: the file may come back"
    with Image.open(io.BytesIO(thumbs.placeholder())) as im:
        assert im.format == "JPEG" and max(im.size) == THUMB_SIDE


@pytest.mark.parametrize("image_id", ["../../etc/passwd", "", "ABCDEF0123456789"])
def test_only_content_ids_name_a_thumbnail(tmp_path: Path, image_id: str):
    assert not thumbs.ensure(tmp_path, image_id, None).ok
    with pytest.raises(ValueError):
        thumbs.thumbnail_path(tmp_path, image_id)


# --- in the store --------------------------------------------------------------------------------------------------


def test_the_store_makes_the_thumbnail_when_it_keeps_an_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    store = Store(tmp_path / "store")
    image_id = store.put_image(source(jpeg(halves(640, 480), 6)))
    kept = store.thumbs_dir / f"{image_id}.jpg"
    assert kept.is_file()
    decodes = counting_decodes(monkeypatch)
    assert store.thumbnail(image_id).path == kept and not decodes
    kept.unlink()
    assert store.thumbnail(image_id).path == kept and len(decodes) == 1, "remade from the stored copy"
    with Image.open(kept) as im:
        assert im.size == (THUMB_SIDE * 3 // 4, THUMB_SIDE)  # portrait: EXIF orientation 6
    assert store.thumbnail("0123456789abcdef").error == thumbs.GONE
