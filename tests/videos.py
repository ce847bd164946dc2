"""Short videos made in the test with PyAV: distinct synthetic frames, and broken copies of them."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def frame_pixels(i: int, width: int, height: int) -> np.ndarray:
    """Frame `i`: a grey level that moves with i and a bright bar at column 4*i (every frame differs)."""
    a = np.full((height, width, 3), (i * 23) % 200, np.uint8)
    x = (4 * i) % max(1, width - 6)
    a[:, x : x + 6, 1] = 255
    a[: height // 4, :, 2] = (i * 51) % 256
    return a


def write_video(
    path: Path, n: int = 12, *, size: tuple[int, int] = (96, 64), rate: int = 10, codec: str = "libx264"
) -> Path:
    """An n-frame video at `rate` frames per second (libx264 in MP4 by default; rawvideo for .y4m)."""
    width, height = size
    with av.open(str(path), "w") as container:
        options = {"threads": "1"} if codec == "libx264" else {}  # one thread: the same bytes on every machine
        stream = container.add_stream(codec, rate=rate, options=options)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frame_pixels(i, width, height), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def decoded(path: Path) -> list[tuple[float, np.ndarray]]:
    """Every frame of `path` as PyAV itself decodes it: (time in seconds, RGB array). The reference for tests."""
    with av.open(str(path)) as container:
        return [(float(f.time), f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]


def with_garbage(src: Path, dst: Path) -> Path:
    """`src` with an eighth of its bytes, from the middle on, overwritten: the stream breaks part-way."""
    data = bytearray(src.read_bytes())
    start, n = len(data) // 2, len(data) // 8
    data[start : start + n] = bytes((i * 37) % 256 for i in range(n))
    dst.write_bytes(bytes(data))
    return dst


def truncated(src: Path, dst: Path, share: float = 0.5) -> Path:
    """The first `share` of `src`'s bytes (an MP4 cut before its index: FFmpeg cannot open it)."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * share)])
    return dst
