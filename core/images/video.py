"""Video sources (no torch): open a file or uploaded bytes with PyAV, sample frames, hand them out as RGB images
with their frame number and timestamp, and as stored images named `clip.mp4#f000120@4.000s`.

Every problem is a `VideoError` carrying one line a user understands and a `kind`: `not_video` (FFmpeg cannot read
it, or it is a still image), `no_stream` (no video stream, e.g. audio only), `too_big`, `unreadable` (the file cannot
be read), `corrupt` (the stream breaks after some frames: the frames before it were handed out, `frames_read` says
how many). A source that simply ends is not an error: the iterator stops.
"""

from __future__ import annotations

import argparse
import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from PIL import Image

from core.config import DEFAULT_FRAME_EVERY, FRAME_NAME_SEP, VIDEO_EXTENSIONS, VIDEO_MAX_BYTES, VIDEO_MAX_FRAMES
from core.images import ImageSource
from core.text import basename, megabytes, one_line

PNG_COMPRESS_LEVEL = 1  # lossless either way; level 1 encodes a 640x480 frame in a few ms
_STILL_FORMATS = ("image2", "_pipe", "gif", "apng", "webp")  # FFmpeg demuxers of still images (and image pipes)
_FRAME_NAME = re.compile(r"^(?P<video>.+)#f(?P<index>\d+)@(?P<time>-?\d+(?:\.\d+)?)s$")


class VideoError(ValueError):
    """A video that cannot be used (or stops being usable): one line, a `kind`, and the frames read before it."""

    def __init__(self, message: str, kind: str, frames_read: int = 0) -> None:
        super().__init__(message)
        self.kind = kind
        self.frames_read = frames_read


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about its first video stream (fps 0 and frames 0 when it does not say)."""

    name: str
    width: int
    height: int
    fps: float
    frames: int
    duration_s: float
    codec: str
    container: str


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame: its 0-based number in the stream, its presentation time in seconds, RGB pixels."""

    index: int
    time_s: float
    image: Image.Image

    def name(self, video: str) -> str:
        """The frame's image name: `clip.mp4#f000120@4.000s`."""
        return frame_name(video, self.index, self.time_s)

    def png(self) -> bytes:
        """The frame as PNG bytes (lossless: the stored image is the pixels the model saw)."""
        buffer = io.BytesIO()
        self.image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        return buffer.getvalue()

    def source(self, video: str) -> ImageSource:
        """The frame as an image source named `frame_name(...)`, its id the content hash of its PNG."""
        return ImageSource.from_bytes(self.name(video), self.png())


def frame_name(video: str, index: int, time_s: float) -> str:
    """`clip.mp4#f000120@4.000s`: the video's file name, the frame number (6 digits at least), the time in seconds."""
    return f"{basename(video)}{FRAME_NAME_SEP}f{index:06d}@{time_s:.3f}s"


def parse_frame_name(name: str) -> tuple[str, int, float] | None:
    """(video, frame number, time) of a frame's image name; None for any other name."""
    found = _FRAME_NAME.match(name)
    if found is None:
        return None
    return found["video"], int(found["index"]), float(found["time"])


def is_video_path(path: str | Path) -> bool:
    """A file name that `detect`/`submit` send to the video decoder (by extension; the content decides after)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class Sampling:
    """Which frames of a video run: every `every`-th, or (with `fps`) one per 1/fps seconds; at most `max_frames`."""

    every: int = DEFAULT_FRAME_EVERY
    fps: float | None = None
    max_frames: int = VIDEO_MAX_FRAMES

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"--every must be at least 1, got {self.every}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"--fps must be above 0, got {self.fps}")
        if self.max_frames < 1:
            raise ValueError(f"--max-frames must be at least 1, got {self.max_frames}")

    def describe(self) -> str:
        how = f"{self.fps:g} frame(s) per second" if self.fps else f"every {self.every} frame(s)"
        return f"{how}, at most {self.max_frames}"


def add_video_options(parser: argparse.ArgumentParser) -> None:
    """`--every`, `--fps`, `--max-frames`: how `detect` and `submit` sample the video files among their paths."""
    parser.add_argument("--every", type=int, default=DEFAULT_FRAME_EVERY, metavar="N",
                        help="video files: run every N-th frame (frame 0, N, 2N, ...)")  # fmt: skip
    parser.add_argument("--fps", type=float, default=None, metavar="R",
                        help="video files: run R frames per second of video instead of --every")  # fmt: skip
    parser.add_argument("--max-frames", type=int, default=VIDEO_MAX_FRAMES, metavar="N",
                        help=f"video files: at most N frames each (default {VIDEO_MAX_FRAMES})")  # fmt: skip


def sampling_from(args: argparse.Namespace) -> Sampling:
    return Sampling(args.every, args.fps, args.max_frames)


def _rate(value: Fraction | None) -> float:
    return float(value) if value else 0.0


class Video:
    """An open video (a context manager): `info`, then `frames(...)` once. Raises VideoError on open."""

    def __init__(self, source: str | Path | bytes, name: str | None = None, *, max_bytes: int = VIDEO_MAX_BYTES):
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.name = name or "video"
            data = bytes(source)
            if not data:
                raise VideoError(f"{self.name}: empty file", "unreadable")
            if len(data) > max_bytes:
                raise VideoError(
                    f"{self.name}: {megabytes(len(data))} is over the {megabytes(max_bytes)} limit", "too_big"
                )
            target: object = io.BytesIO(data)
        else:
            path = Path(source)
            self.name = name or path.name
            try:
                size = path.stat().st_size
            except OSError as exc:
                raise VideoError(f"{self.name}: cannot read the file ({exc.strerror or exc})", "unreadable") from None
            if size > max_bytes:
                raise VideoError(f"{self.name}: {megabytes(size)} is over the {megabytes(max_bytes)} limit", "too_big")
            target = str(path)
        import av  # PyAV loads FFmpeg (~45 ms): when a video is opened, not at every command's start

        try:
            self._container = av.open(target, mode="r")
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise VideoError(
                f"{self.name}: not a video FFmpeg can read (or a truncated file): {_ffmpeg_line(exc)}", "not_video"
            ) from None
        fmt = self._container.format.name
        if any(part in fmt for part in _STILL_FORMATS):
            self.close()
            raise VideoError(
                f"{self.name}: a still image ({fmt}), not a video: use the Run page for images", "not_video"
            )
        if not self._container.streams.video:
            self.close()
            raise VideoError(f"{self.name}: no video stream (audio only?)", "no_stream")
        stream = self._container.streams.video[0]
        ctx = stream.codec_context
        duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
        if not duration and self._container.duration:
            duration = self._container.duration / av.time_base
        self.info = VideoInfo(
            name=self.name,
            width=int(ctx.width or 0),
            height=int(ctx.height or 0),
            fps=_rate(stream.average_rate or stream.guessed_rate),
            frames=int(stream.frames or 0),
            duration_s=duration,
            codec=str(ctx.name or ""),
            container=fmt,
        )
        self._stream = stream

    def __enter__(self) -> Video:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def frames(
        self, *, every: int = 1, fps: float | None = None, max_frames: int | None = VIDEO_MAX_FRAMES
    ) -> Iterator[VideoFrame]:
        """The sampled frames in order: every `every`-th frame (0, N, 2N, ...), or with `fps`, the first frame of
        each 1/fps-second slot of presentation time; at most `max_frames` (None: no limit). A stream that breaks
        raises VideoError(kind "corrupt") after the frames before it were yielded."""
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        if fps is not None and not fps > 0:
            raise ValueError(f"fps must be above 0, got {fps}")
        kept = decoded = 0
        last_slot = -math.inf
        index = -1
        frame_step = 1.0 / self.info.fps if self.info.fps else 0.0
        import av  # loaded when the video was opened

        decoder = self._container.decode(self._stream)
        while max_frames is None or kept < max_frames:
            try:
                frame = next(decoder)
            except StopIteration:
                return
            except (av.FFmpegError, OSError, ValueError, EOFError) as exc:
                where = f"frame {index}" if index >= 0 else "the start"
                raise VideoError(
                    f"{self.name}: the video stream is corrupt after {where}: {_ffmpeg_line(exc)}", "corrupt", kept
                ) from None
            index = decoded
            decoded += 1
            time_s = float(frame.time) if frame.time is not None else index * frame_step
            if fps is not None:
                slot = math.floor(time_s * fps + 1e-9)
                if slot <= last_slot:
                    continue
                last_slot = slot
            elif index % every:
                continue
            kept += 1
            yield VideoFrame(index, time_s, frame.to_image().convert("RGB"))


def read_frames(
    source: str | Path | bytes,
    *,
    name: str | None = None,
    every: int = 1,
    fps: float | None = None,
    max_frames: int | None = VIDEO_MAX_FRAMES,
) -> Iterator[VideoFrame]:
    """Open `source` and yield its sampled frames (see `Video.frames`); VideoError when it cannot be opened."""
    with Video(source, name) as video:
        yield from video.frames(every=every, fps=fps, max_frames=max_frames)


def _ffmpeg_line(exc: BaseException) -> str:
    """FFmpeg's reason without the errno and the file name PyAV adds ("Invalid data found when processing input")."""
    text = getattr(exc, "strerror", None) or str(exc)
    return one_line(text, 160) or type(exc).__name__
