"""Hostile and odd images through whole runs and the Run page: one clear line each, the rest goes on."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.config import GALLERY_DIR
from core.execution.runner import RunSettings, run
from core.images import ImageSource
from tests.factories import finish_jobs

SMALL = "ssdlite320_mobilenet_v3_large"
APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def bomb_png(side: int = 20_000) -> bytes:
    """A valid 1-bit PNG of side x side pixels in a few KB: the IDAT inflates to side * (side/8 + 1) zero bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = side.to_bytes(4, "big") * 2 + bytes([1, 0, 0, 0, 0])
    raw = zlib.compressobj(9)
    row = b"\x00" * (side // 8 + 1)
    idat = b"".join(raw.compress(row) for _ in range(side)) + raw.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


CAT = (GALLERY_DIR / "cat.jpg").read_bytes()
PHOTO = Image.open(io.BytesIO(CAT)).convert("RGB")

HOSTILE: list[tuple[str, bytes, str]] = [
    ("empty.jpg", b"", "empty file"),
    ("truncated.jpg", CAT[: len(CAT) // 3], "truncated"),
    ("page.jpg", b"<!DOCTYPE html><html><body>404</body></html>", "HTML"),
    ("notes.png", b"just some text, not pixels\n" * 20, "text"),
    ("noise.jpg", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "not an image"),
    ("bomb.png", bomb_png(), "limit"),
    ("phone.heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64, "HEI"),
]
ODD: list[tuple[str, bytes, tuple[int, int]]] = [
    ("cmyk.jpg", encode(PHOTO.convert("CMYK"), "JPEG"), PHOTO.size),
    ("palette.png", encode(PHOTO.convert("P"), "PNG"), PHOTO.size),
    ("rgba.png", encode(PHOTO.convert("RGBA"), "PNG"), PHOTO.size),
    ("grey.png", encode(PHOTO.convert("L"), "PNG"), PHOTO.size),
    (
        "anim.gif",
        encode(
            PHOTO.convert("P"), "GIF", save_all=True, append_images=[PHOTO.rotate(a).convert("P") for a in (90, 180)]
        ),
        PHOTO.size,
    ),
    ("one.png", encode(Image.new("RGB", (1, 1), "red"), "PNG"), (1, 1)),
    ("png-named.jpg", encode(PHOTO, "PNG"), PHOTO.size),
]


@pytest.fixture(scope="module")
def results():
    sources = [ImageSource.from_bytes(n, d) for n, d, _ in HOSTILE] + [ImageSource.from_bytes(n, d) for n, d, _ in ODD]
    sources.insert(3, ImageSource.from_bytes("cat.jpg", CAT))  # a good photo in the middle of the bad ones
    output = run(sources, RunSettings([SMALL], default_weights="untrained", device="cpu", warmup=0))
    return {r.image_name: r for r in output.results}, output


@pytest.mark.parametrize(("name", "phrase"), [(n, p) for n, _, p in HOSTILE])
def test_hostile_inputs_get_one_clear_line(results, name, phrase):
    by_name, _ = results
    error = by_name[name].error
    assert phrase.lower() in error.lower() and "\n" not in error and len(error) < 300


@pytest.mark.parametrize(("name", "size"), [(n, s) for n, _, s in ODD])
def test_odd_inputs_are_processed(results, name, size):
    by_name, _ = results
    r = by_name[name]
    assert r.ok, r.error
    assert (r.width, r.height) == size


def test_the_good_photo_in_the_middle_is_processed_and_every_input_has_one_record(results):
    by_name, output = results
    assert by_name["cat.jpg"].ok and len(by_name["cat.jpg"].scores) > 0
    assert len(output.inferences) == len(HOSTILE) + len(ODD) + 1
    assert set(output.inferences.loc[output.inferences["error"] != "", "image_name"]) == {n for n, _, _ in HOSTILE}


def test_animated_gif_says_it_used_the_first_frame(results):
    by_name, _ = results
    assert any("first of 3 frames" in note for note in by_name["anim.gif"].notes)


def test_16_bit_grey_gives_the_detections_of_its_8_bit_twin():
    grey8 = np.asarray(PHOTO.convert("L"))
    grey16 = Image.fromarray(grey8.astype(np.uint16) * 257)
    sources = [
        ImageSource.from_bytes("grey8.png", encode(Image.fromarray(grey8), "PNG")),
        ImageSource.from_bytes("grey16.png", encode(grey16, "PNG")),
    ]
    a, b = run(sources, RunSettings([SMALL], default_weights="untrained", device="cpu", warmup=0)).results
    assert a.ok and b.ok
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)


def test_exif_rotated_photo_is_detected_in_its_displayed_orientation():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    data = encode(PHOTO, "JPEG", exif=exif.tobytes())
    (r,) = run([ImageSource.from_bytes("phone.jpg", data)], RunSettings([SMALL], "untrained", device="cpu")).results
    assert (r.width, r.height) == (PHOTO.height, PHOTO.width)
    assert len(r.boxes) and r.boxes[:, 2].max() <= PHOTO.height + 1e-3 and r.boxes[:, 3].max() <= PHOTO.width + 1e-3


def test_run_page_lists_bad_uploads_with_their_reason_and_keeps_the_good_ones():
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("../pages/run.py").run()
    at.multiselect(key="run_models").set_value([SMALL]).run()
    at.selectbox(key=f"run_weights_{SMALL}").set_value("untrained").run()
    at.radio(key="run_source").set_value("Upload").run()
    files = [("cat.jpg", CAT, "image/jpeg")] + [(n, d, "image/png") for n, d, _ in HOSTILE[:4]]
    at.file_uploader(key="run_upload").set_value(files).run()
    finish_jobs(at.button(key="run_go").click().run())
    assert not at.exception
    inf = at.session_state["detlens_inferences"]
    assert len(inf) == 5 and (inf.set_index("image_name").loc["cat.jpg", "error"] == "")
    shown = at.dataframe[-1].value
    assert set(shown["image_name"]) == {n for n, _, _ in HOSTILE[:4]}
    assert all(shown["error"].str.len() > 0)
    # a second run with one more good file keeps what was done and adds the new one
    at.file_uploader(key="run_upload").set_value(
        files + [("coffee.jpg", (GALLERY_DIR / "coffee.jpg").read_bytes(), "image/jpeg")]
    ).run()
    finish_jobs(at.button(key="run_go").click().run())
    inf = at.session_state["detlens_inferences"]
    assert (inf["image_name"] == "cat.jpg").sum() == 1 and (inf["image_name"] == "coffee.jpg").sum() == 1


def test_run_page_counts_inferences_when_one_image_fails_on_several_models():
    """One bad image x two models is two failed rows of one image: the page counts the good rows, not rows minus
    distinct failed images."""
    models = [SMALL, "fasterrcnn_mobilenet_v3_large_320_fpn"]
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("../pages/run.py").run()
    at.multiselect(key="run_models").set_value(models).run()
    for m in models:
        at.selectbox(key=f"run_weights_{m}").set_value("untrained").run()
    at.radio(key="run_source").set_value("Upload").run()
    bad_name, bad, _ = HOSTILE[0]
    at.file_uploader(key="run_upload").set_value([("cat.jpg", CAT, "image/jpeg"), (bad_name, bad, "image/jpeg")]).run()
    finish_jobs(at.button(key="run_go").click().run())
    assert not at.exception
    inf = at.session_state["detlens_inferences"]
    assert len(inf) == 4 and (inf["error"] != "").sum() == 2
    assert any("2 inference(s) added" in s.value for s in at.success), [s.value for s in at.success]
    assert any("1 image(s) could not be used" in w.value for w in at.warning)


@pytest.mark.slow  # a 36 MP photo decoded, run and drawn: the slowest test of the quick loop otherwise
def test_a_36_megapixel_photo_runs_and_is_downscaled_for_display():
    from dashboard.figures import overlay_grid

    big = PHOTO.resize((7360, 4912))
    source = ImageSource.from_bytes("big.jpg", encode(big, "JPEG", quality=80))
    output = run([source], RunSettings([SMALL], "untrained", device="cpu", warmup=0))
    (r,) = output.results
    assert r.ok and (r.width, r.height) == (7360, 4912) and r.boxes[:, 2].max() > 1024
    fig = overlay_grid(source.load().image, output.detections, [SMALL], threshold=0.0, max_side=1024)
    background = fig.layout.images[0]
    assert (background.sizex, background.sizey) == (1024, round(4912 * 1024 / 7360))
    assert len(background.source) < 2_000_000  # a JPEG data URI of the display size, not 36 MP
    xs = [x for t in fig.data for x in t.x if x is not None]
    assert max(xs) <= 1024 + 1e-6  # boxes scaled with the background
