"""Image decoding and guards: modes to RGB, hostile inputs, the pixel guard, EXIF, frames, paths, display scaling."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from core import images
from core.config import REPO_ROOT
from core.images import LoadedImage, downscale_for_display, expand_paths, load_image
from core.images.rgb import to_rgb

HAS_HEIF = importlib.util.find_spec("pillow_heif") is not None


# --- factories -----------------------------------------------------------------------------------------------------


def encode(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def png_bytes(size: tuple[int, int] = (8, 6), color=(10, 200, 30)) -> bytes:
    return encode(Image.new("RGB", size, color))


def jpeg_bytes(size: tuple[int, int] = (64, 48), color=(10, 200, 30)) -> bytes:
    return encode(Image.new("RGB", size, color), "JPEG", quality=95)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bomb_png(w: int, h: int) -> bytes:
    """A genuine 1-bit grey PNG of w x h zero pixels: a few hundred KB that would decode to w*h bytes."""
    row = bytes(1 + (w + 7) // 8)
    comp = zlib.compressobj(9)
    block = row * 1000
    idat = b"".join(comp.compress(block if y + 1000 <= h else row * (h - y)) for y in range(0, h, 1000)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def rgb_array(result: LoadedImage) -> np.ndarray:
    assert result.ok, result.error
    assert result.image is not None
    return np.asarray(result.image)


# --- modes to RGB --------------------------------------------------------------------------------------------------


def _palette(mode: str) -> Image.Image:
    im = Image.new(mode, (4, 3), 1 if mode == "P" else (1, 255))
    im.putpalette([0, 0, 0, 12, 34, 56] + [0] * (256 * 3 - 6))
    return im


def _p_transparent() -> Image.Image:
    im = _palette("P")
    im.info["transparency"] = 1
    return im


MODE_CASES = [
    # (id, image factory, file format, expected RGB of pixel (0, 0), tolerance, note expected)
    ("1", lambda: Image.new("1", (4, 3), 1), "PNG", (255, 255, 255), 0, None),
    ("L", lambda: Image.new("L", (4, 3), 77), "PNG", (77, 77, 77), 0, None),
    ("LA-half", lambda: Image.new("LA", (4, 3), (0, 128)), "PNG", (127, 127, 127), 1, "alpha composited on white"),
    ("LA-opaque", lambda: Image.new("LA", (4, 3), (50, 255)), "PNG", (50, 50, 50), 0, None),
    ("P", lambda: _palette("P"), "PNG", (12, 34, 56), 0, None),
    ("P-transparency", _p_transparent, "PNG", (255, 255, 255), 0, "alpha composited on white"),
    ("PA", lambda: _palette("PA"), "TIFF", (12, 34, 56), 0, None),
    ("RGBA-half-red", lambda: Image.new("RGBA", (4, 3), (255, 0, 0, 128)), "PNG", (255, 127, 127), 1, "alpha"),
    ("CMYK-cyan", lambda: Image.new("CMYK", (4, 3), (255, 0, 0, 0)), "TIFF", (0, 255, 255), 2, "CMYK converted"),
    ("CMYK-jpeg", lambda: Image.new("CMYK", (4, 3), (255, 0, 0, 0)), "JPEG", (0, 255, 255), 3, "CMYK converted"),
    ("YCbCr-red", lambda: Image.new("YCbCr", (4, 3), (76, 85, 255)), "TIFF", (255, 0, 0), 3, None),
    ("LAB-red", lambda: Image.new("LAB", (4, 3), (136, 208, 195)), "TIFF", (250, 3, 11), 6, None),
    ("I;16", lambda: Image.new("I;16", (4, 3), 65535), "PNG", (255, 255, 255), 0, "16-bit scaled to 8-bit"),
    ("I;16-mid", lambda: Image.new("I;16", (4, 3), 257 * 100), "TIFF", (100, 100, 100), 0, "16-bit"),
    ("I;16B", lambda: Image.new("I;16B", (4, 3), 257 * 200), "TIFF", (200, 200, 200), 0, "16-bit"),
    ("I;16L", lambda: Image.new("I;16L", (4, 3), 257 * 30), "TIFF", (30, 30, 30), 0, "16-bit"),
    ("I-16bit-values", lambda: Image.new("I", (4, 3), 257 * 40), "TIFF", (40, 40, 40), 0, "16-bit"),
    ("F-unit", lambda: Image.new("F", (4, 3), 0.5), "TIFF", (128, 128, 128), 0, "float"),
    ("RGB", lambda: Image.new("RGB", (4, 3), (1, 2, 3)), "PNG", (1, 2, 3), 0, None),
    ("RGB-webp", lambda: Image.new("RGB", (4, 3), (200, 10, 10)), "WEBP", (200, 10, 10), 8, None),
]


@pytest.mark.parametrize(
    ("factory", "fmt", "expected", "tol", "note"), [c[1:] for c in MODE_CASES], ids=[c[0] for c in MODE_CASES]
)
def test_modes_convert_to_rgb(factory, fmt, expected, tol, note):
    kw = {"lossless": True} if fmt == "WEBP" else {}
    result = load_image(encode(factory(), fmt, **kw), f"x.{fmt.lower()}")
    px = rgb_array(result)
    assert result.image.mode == "RGB" and (result.width, result.height) == (4, 3)
    assert np.abs(px[0, 0].astype(int) - np.array(expected)).max() <= tol, px[0, 0]
    if note is None:
        assert not any(("alpha" in n or "scaled" in n or "CMYK" in n) for n in result.notes), result.notes
    else:
        assert any(note in n for n in result.notes), result.notes


def test_16bit_matches_its_8bit_twin():
    rng = np.random.default_rng(0)
    a8 = np.tile(np.arange(256, dtype=np.uint16), (16, 1))
    a16 = np.clip(a8 * 257 + rng.integers(-128, 129, a8.shape), 0, 65535).astype(np.uint16)
    eight = rgb_array(load_image(encode(Image.fromarray(a8.astype(np.uint8))), "eight.png"))
    sixteen = load_image(encode(Image.fromarray(a16)), "sixteen.png")
    assert "16-bit scaled to 8-bit" in sixteen.notes
    assert np.abs(rgb_array(sixteen).astype(int) - eight.astype(int)).max() <= 1


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (np.array([[0, 500_000, 1_000_000]], np.int32), [0, 128, 255]),  # wider than 16 bits: scaled by its max
        (np.array([[-100, 0, 100]], np.int32), [0, 128, 255]),  # negative: scaled by its range
    ],
)
def test_32bit_integer_scaled_by_range(values, expected):
    result = load_image(encode(Image.fromarray(values), "TIFF"), "wide.tif")
    assert rgb_array(result)[0, :, 0].tolist() == expected
    assert "32-bit integer scaled to 8-bit" in result.notes


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.0, 0.5, 1.0], [0, 128, 255]),  # unit range
        ([0.0, 100.0, 255.0], [0, 100, 255]),  # already 8-bit range
        ([-5.0, 0.0, 5.0], [0, 128, 255]),  # anything else: min-max
        ([np.nan, 0.0, 1.0], [0, 0, 255]),  # NaN becomes 0
    ],
)
def test_float_scaled_sensibly(values, expected):
    result = load_image(encode(Image.fromarray(np.array([values], np.float32)), "TIFF"), "float.tif")
    assert rgb_array(result)[0, :, 0].tolist() == expected


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [("La", (64, 128), (191, 191, 191)), ("RGBa", (128, 0, 0, 128), (255, 127, 127))],
)
def test_premultiplied_alpha_over_white(mode, value, expected):
    notes: list[str] = []
    rgb = to_rgb(Image.new(mode, (2, 2), value), notes)
    assert rgb.mode == "RGB"
    assert np.abs(np.asarray(rgb)[0, 0].astype(int) - np.array(expected)).max() <= 1
    assert "alpha composited on white" in notes


# --- hostile inputs ------------------------------------------------------------------------------------------------


def _truncated_jpeg() -> bytes:
    data = encode(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")
    return data[: len(data) // 2]


def _truncated_png() -> bytes:
    data = encode(Image.effect_noise((64, 64), 50))
    return data[: len(data) // 2]


HOSTILE_CASES = [
    # (id, name, data factory, phrase in the error)
    ("empty", "a.jpg", lambda: b"", "empty file"),
    ("truncated-jpeg", "a.jpg", _truncated_jpeg, "truncated or corrupt image data"),
    ("truncated-png", "a.png", _truncated_png, "truncated or corrupt image data"),
    ("png-header-only", "a.png", lambda: png_bytes()[:20], "PNG header unreadable"),
    (
        "html",
        "a.jpg",
        lambda: b"\n  <!DOCTYPE html><html><body>Not found</body></html>",
        "not an image: looks like HTML",
    ),
    ("html-lower", "a.png", lambda: b"<html><head><title>x</title></head></html>", "looks like HTML"),
    ("text", "a.png", lambda: b"just some notes\nsecond line\n", "not an image: looks like text"),
    ("random", "a.jpg", lambda: np.random.default_rng(1).bytes(4096), "not an image: unrecognised format"),
    ("pdf", "a.jpg", lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "PDF"),
    ("eps", "a.eps", lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "EPS is not supported"),
    ("svg", "a.png", lambda: b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
    ("avif-garbage", "a.avif", lambda: b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00mif1avif" + bytes(64), "AVIF"),
]


@pytest.mark.parametrize(
    ("name", "factory", "phrase"), [c[1:] for c in HOSTILE_CASES], ids=[c[0] for c in HOSTILE_CASES]
)
def test_hostile_bytes_give_one_line_error(name, factory, phrase):
    result = load_image(factory(), name)
    assert not result.ok and result.image is None
    assert phrase in result.error
    assert "\n" not in result.error and "Traceback" not in result.error
    assert result.name == name


@pytest.mark.skipif(HAS_HEIF, reason="pillow_heif is installed: HEIC decodes")
@pytest.mark.parametrize("brand", [b"heic", b"heix", b"mif1"])
def test_heic_without_plugin_names_the_plugin(brand):
    data = b"\x00\x00\x00\x18ftyp" + brand + b"\x00\x00\x00\x00mif1heic" + bytes(64)
    result = load_image(data, "photo.heic")
    assert "HEIC/HEIF" in result.error and "pillow-heif" in result.error
    assert result.format == "HEIF"


def test_avif_decodes_when_pillow_has_it():
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF")
    result = load_image(encode(Image.new("RGB", (30, 20), (0, 0, 255)), "AVIF"), "a.avif")
    assert result.ok and result.format == "AVIF" and (result.width, result.height) == (30, 20)


def test_over_max_bytes():
    result = load_image(png_bytes(), "a.png", max_bytes=10)
    assert "above the" in result.error and "limit" in result.error and "MB" in result.error


def test_over_max_bytes_from_file(tmp_path):
    result = load_image(write(tmp_path, "a.png", png_bytes()), max_bytes=10)
    assert "above the" in result.error and "limit" in result.error


def test_pixel_limit_checked_before_decoding(monkeypatch):
    def no_decoding(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    result = load_image(bomb_png(3000, 3000), "big.png", max_pixels=1_000_000)
    assert result.error == "image is 3000x3000 (9.0 MP), above the 1.0 MP limit"
    assert result.format == "PNG"


def test_decompression_bomb_rejected_with_its_size():
    data = bomb_png(20000, 20000)
    assert len(data) < 200_000
    result = load_image(data, "bomb.png")
    assert result.error == "image is 20000x20000 (400.0 MP), above the 80.0 MP limit"


@pytest.mark.slow
def test_decompression_bomb_peak_memory_stays_low(tmp_path):
    """In a fresh process: the peak RSS barely moves (decoding would allocate 400 MB)."""
    bomb = write(tmp_path, "bomb.png", bomb_png(20000, 20000))
    script = (
        "import json, resource, sys\n"
        "from core.images import load_image\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "load_image(b'')\n"  # warm any lazy imports
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "r = load_image(data, 'bomb.png')\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'error': r.error, 'delta_kb': after - before}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(bomb)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "above the 80.0 MP limit" in out["error"]
    assert out["delta_kb"] < 100 * 1024


def test_pillow_bomb_limit_worded_when_ours_is_higher():
    result = load_image(bomb_png(20000, 20000), "bomb.png", max_pixels=10**9)
    assert "20000x20000" in result.error and "decompression-bomb" in result.error
    assert Image.MAX_IMAGE_PIXELS is not None  # Pillow's own guard left in place


@pytest.mark.parametrize("error", [RuntimeError("boom\nsecond line"), ValueError("x" * 1000)])
def test_unexpected_exception_becomes_one_line(monkeypatch, error):
    def explode(im, notes):
        raise error

    monkeypatch.setattr(images, "to_rgb", explode)
    result = load_image(png_bytes(), "a.png")
    assert result.error.startswith(type(error).__name__ + ": ")
    assert "\n" not in result.error and len(result.error) <= 200


def test_missing_file(tmp_path):
    result = load_image(tmp_path / "nope.jpg")
    assert result.error == "file not found: nope.jpg"
    assert result.image_id == "" and result.source == tmp_path / "nope.jpg"


@pytest.mark.parametrize(
    ("make", "phrase"),
    [
        (lambda d: d, "is a folder, not a file"),
        (lambda d: write(d, "empty.jpg", b""), "empty file"),
        (lambda d: (os.mkfifo(d / "pipe.jpg"), d / "pipe.jpg")[1], "not a regular file"),
    ],
    ids=["folder", "empty-file", "fifo"],
)
def test_unusable_paths(tmp_path, make, phrase):
    result = load_image(make(tmp_path))
    assert phrase in result.error and "\n" not in result.error


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path):
    path = write(tmp_path, "secret.png", png_bytes())
    path.chmod(0)
    try:
        assert "permission denied" in load_image(path).error
    finally:
        path.chmod(0o644)


# --- content, not extension ----------------------------------------------------------------------------------------


def test_png_named_jpg_decodes_as_png(tmp_path):
    result = load_image(write(tmp_path, "photo.jpg", png_bytes(color=(1, 2, 3))))
    assert result.ok and result.format == "PNG" and result.name == "photo.jpg"
    assert rgb_array(result)[0, 0].tolist() == [1, 2, 3]


def test_image_id_is_the_content_hash(tmp_path):
    data = png_bytes()
    a, b = load_image(data, "a.png"), load_image(data, "b.png")
    c = load_image(write(tmp_path, "c.jpg", data))
    d = load_image(png_bytes(color=(0, 0, 0)), "a.png")
    assert a.image_id == b.image_id == c.image_id != d.image_id
    assert len(a.image_id) == 16 and int(a.image_id, 16) >= 0


@pytest.mark.parametrize("size", [(1, 1), (4, 3000), (3000, 4)])
def test_extreme_shapes(size):
    result = load_image(png_bytes(size), "x.png")
    assert result.ok and (result.width, result.height) == size and result.image.size == size


def test_36_megapixel_photo():
    data = jpeg_bytes((7360, 4912))
    result = load_image(data, "big.jpg")
    assert result.ok and (result.width, result.height) == (7360, 4912) and result.format == "JPEG"


# --- EXIF and frames -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "size", "marker_at"),
    [
        (1, (40, 20), (3, 3)),  # as stored: top-left
        (3, (40, 20), (36, 16)),  # rotated 180: bottom-right
        (6, (20, 40), (16, 3)),  # rotate 90 clockwise to display: top-right
        (8, (20, 40), (3, 36)),  # rotate 90 counter-clockwise: bottom-left
    ],
)
def test_exif_orientation_applied(orientation, size, marker_at):
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 8, 8))  # red marker in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    result = load_image(encode(im, "JPEG", quality=95, exif=exif), "rotated.jpg")
    px = rgb_array(result)
    assert (result.width, result.height) == size
    r, g, b = px[marker_at[1], marker_at[0]].astype(int)
    assert r > 200 and g < 60 and b < 60, (r, g, b)
    assert px[:, :, 0].astype(int).sum() < 8 * 8 * 255 * 1.3  # the marker is only in one corner
    assert ("EXIF orientation applied" in result.notes) == (orientation != 1)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "TIFF", "PNG"])
def test_animation_first_frame(fmt):
    frames = [Image.new("RGB", (16, 12), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    kw = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **kw)
    result = load_image(data, f"anim.{fmt.lower()}")
    assert rgb_array(result)[5, 5].tolist() == [255, 0, 0]
    assert "first of 3 frames" in result.notes


# --- batches and paths ---------------------------------------------------------------------------------------------


def test_load_images_batch_goes_on(tmp_path):
    write(tmp_path, "a_good.png", png_bytes())
    write(tmp_path, "b_html.jpg", b"<html><body>404</body></html>")
    write(tmp_path, "c_empty.png", b"")
    write(tmp_path, "d_truncated.jpg", _truncated_jpeg())
    write(tmp_path, "sub/e_good.jpg", jpeg_bytes())
    write(tmp_path, "notes.txt", b"ignored: not an image extension")
    results = [load_image(p) for p in expand_paths([tmp_path])]
    assert [r.name for r in results] == ["a_good.png", "b_html.jpg", "c_empty.png", "d_truncated.jpg", "e_good.jpg"]
    assert [r.ok for r in results] == [True, False, False, False, True]
    assert all(r.source is not None for r in results)


def test_expand_paths(tmp_path):
    root = tmp_path / "imgs"
    for rel in ["b.png", "a.JPG", "sub/c.webp", "sub/deeper/d.tif", ".hidden.png", ".cache/e.png", "readme.md"]:
        write(root, rel, b"x")
    other = write(tmp_path, "data.bin", b"x")
    missing = tmp_path / "missing.png"
    got = expand_paths([root, str(other), missing])
    rel = [p.relative_to(root).as_posix() for p in got[:4]]
    assert rel == ["a.JPG", "b.png", "sub/c.webp", "sub/deeper/d.tif"]
    assert got[4:] == [other, missing]


def test_expand_paths_empty_folder(tmp_path):
    assert expand_paths([tmp_path]) == []


def test_gallery_paths_are_images(monkeypatch, tmp_path):
    assert all(p.suffix.lower() in images.IMAGE_EXTENSIONS for p in images.gallery_paths())
    monkeypatch.setattr(images, "GALLERY_DIR", tmp_path / "absent")
    assert images.gallery_paths() == []


@pytest.mark.parametrize(
    ("size", "max_side", "new_size", "scale"),
    [
        ((400, 100), 200, (200, 50), 0.5),
        ((100, 400), 100, (25, 100), 0.25),
        ((100, 50), 200, (100, 50), 1.0),
        ((200, 200), 200, (200, 200), 1.0),
        ((1000, 3), 100, (100, 1), 0.1),
    ],
)
def test_downscale_for_display(size, max_side, new_size, scale):
    im = Image.new("RGB", size)
    out, got = downscale_for_display(im, max_side)
    assert out.size == new_size and got == pytest.approx(scale)
    assert (out is im) == (scale == 1.0)
    assert im.size == size


def test_downscale_rejects_nonpositive():
    with pytest.raises(ValueError):
        downscale_for_display(Image.new("RGB", (4, 4)), 0)


# --- the record ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"image": None, "error": ""},  # neither
        {"image": Image.new("RGB", (2, 2)), "error": "bad"},  # both
        {"image": None, "error": "two\nlines"},
        {"image": Image.new("L", (2, 2)), "error": ""},  # not RGB
        {"image": Image.new("RGB", (3, 2)), "error": ""},  # size mismatch
    ],
)
def test_loaded_image_invariants(kwargs):
    with pytest.raises(ValueError):
        LoadedImage(name="x", image_id="", width=2, height=2, format="", decode_ms=0.0, **kwargs)


def test_loaded_image_ok_record():
    result = load_image(png_bytes((5, 7)), "x.png")
    assert result.ok and result.error == "" and result.format == "PNG"
    assert result.decode_ms > 0 and result.notes == ()
    assert result.image.getpixel((0, 0)) == (10, 200, 30)
