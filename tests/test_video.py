"""core.images.video: frames of short videos generated here with PyAV, sampled by count or rate, and the errors of files that
are not videos, are cut short, or break part-way. PyAV's own decode of the same file is the reference."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from core.images import load_image
from core.images.video import Sampling, Video, VideoError, frame_name, is_video_path, parse_frame_name, read_frames
from tests import videos

N_FRAMES, RATE = 12, 10


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return videos.write_video(tmp_path_factory.mktemp("video") / "clip.mp4", N_FRAMES, rate=RATE)


def test_info_says_what_the_container_holds(clip):
    with Video(clip) as video:
        info = video.info
    assert (info.width, info.height, info.codec) == (96, 64, "h264")
    assert info.fps == pytest.approx(RATE)
    assert info.duration_s == pytest.approx(N_FRAMES / RATE, abs=0.11)


@pytest.mark.parametrize("every", [1, 2, 5, 12, 20])
def test_every_nth_frame_is_pyavs_frame_with_its_time(clip, every):
    reference = videos.decoded(clip)
    frames = list(read_frames(clip, every=every))
    expected = list(range(0, len(reference), every))
    assert [f.index for f in frames] == expected
    for f in frames:
        t, pixels = reference[f.index]
        assert f.time_s == pytest.approx(t)
        assert f.image.mode == "RGB" and np.array_equal(np.asarray(f.image), pixels)


@pytest.mark.parametrize(
    ("fps", "expected"),
    [
        (RATE, list(range(N_FRAMES))),  # every frame has a slot of its own
        (2.5, [0, 4, 8]),  # slots of 0.4 s: frames at 0.0, 0.4, 0.8 s open them
        (1.0, [0, 10]),  # one a second: 0.0 s and 1.0 s
        (100.0, list(range(N_FRAMES))),  # faster than the source: each frame once, none twice
    ],
)
def test_sampling_at_a_rate_takes_the_first_frame_of_each_slot(clip, fps, expected):
    assert [f.index for f in read_frames(clip, fps=fps)] == expected


def test_max_frames_stops_early_and_bytes_read_like_a_file(clip):
    from_bytes = [f.index for f in read_frames(clip.read_bytes(), name="clip.mp4", every=3, max_frames=2)]
    assert from_bytes == [0, 3]


def test_a_frame_becomes_a_lossless_named_image(clip):
    frame = next(read_frames(clip, every=4))
    source = frame.source("videos/clip.mp4")
    assert source.name == "clip.mp4#f000000@0.000s"
    loaded = load_image(source.read(), source.name)
    assert loaded.ok and np.array_equal(np.asarray(loaded.image), np.asarray(frame.image))


@pytest.mark.parametrize(
    ("video", "index", "time_s", "name"),
    [("clip.mp4", 0, 0.0, "clip.mp4#f000000@0.000s"), ("/a/b/walk.mkv", 120, 4.0, "walk.mkv#f000120@4.000s"),
     ("x.webm", 1234567, 41152.2333, "x.webm#f1234567@41152.233s")],
)  # fmt: skip
def test_frame_names_carry_number_and_time_and_parse_back(video, index, time_s, name):
    assert frame_name(video, index, time_s) == name
    assert parse_frame_name(name) == (name.split("#")[0], index, round(time_s, 3))


@pytest.mark.parametrize("name", ["cat.jpg", "clip.mp4", "a#f12.mp4", "clip.mp4#f000001"])
def test_other_names_do_not_parse(name):
    assert parse_frame_name(name) is None


@pytest.mark.parametrize(("path", "video"), [("a.MP4", True), ("b.mkv", True), ("c.y4m", True), ("d.jpg", False),
                                             ("e.gif", False), ("f", False)])  # fmt: skip
def test_video_paths_by_extension(path, video):
    assert is_video_path(path) is video


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "kind", "words"),
    [
        (b"hello, this is text, not a video " * 50, "not_video", "not a video"),
        (b"", "unreadable", "empty"),
        (_png(), "not_video", "still image"),
    ],
)
def test_what_is_not_a_video_is_refused_in_one_line(data, kind, words):
    with pytest.raises(VideoError) as err:
        Video(data, "thing.mp4")
    assert err.value.kind == kind and words in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith("thing.mp4: ")


def test_a_truncated_mp4_cannot_be_opened(clip, tmp_path):
    cut = videos.truncated(clip, tmp_path / "cut.mp4")
    with pytest.raises(VideoError) as err:
        Video(cut)
    assert err.value.kind == "not_video" and "truncated" in str(err.value)


def test_a_missing_or_too_big_file_says_so(clip, tmp_path):
    with pytest.raises(VideoError) as err:
        Video(tmp_path / "gone.mp4")
    assert err.value.kind == "unreadable"
    with pytest.raises(VideoError) as err:
        Video(clip, max_bytes=10)
    assert err.value.kind == "too_big"


def test_a_stream_that_breaks_gives_its_good_frames_first(clip, tmp_path):
    broken = videos.with_garbage(clip, tmp_path / "broken.mp4")
    reference = videos.decoded(clip)
    got = []
    with pytest.raises(VideoError) as err:
        for frame in read_frames(broken):
            got.append(frame)
    assert err.value.kind == "corrupt" and "corrupt after frame" in str(err.value)
    assert 0 < len(got) < N_FRAMES and err.value.frames_read == len(got)
    for frame in got[: len(got) // 2]:  # frames well before the damage decode as in the intact file
        assert np.array_equal(np.asarray(frame.image), reference[frame.index][1])


@pytest.mark.parametrize(("kwargs", "words"), [({"every": 0}, "--every"), ({"fps": 0.0}, "--fps"),
                                               ({"fps": -math.inf}, "--fps"), ({"max_frames": 0}, "--max-frames")])  # fmt: skip
def test_sampling_refuses_nonsense(kwargs, words):
    with pytest.raises(ValueError, match=words):
        Sampling(**kwargs)
