"""Video files as runs: sampled frames become images of a run (`clip.mp4#f000120@4.000s`), recorded as any run.

`detect VIDEO --every N` extracts the frames into a temporary folder and runs them like image files
(`extract_to_folder`). `submit VIDEO --every N` queues a job whose spec names the video (`submit_video`: the file is
opened first, so a file that is not a video is refused before anything is stored); its worker extracts the frames
into the store (`extract_job_frames`), lists them in the job's spec, and the job then runs as any other. A stream that
breaks mid-way keeps the frames before it: they are run and recorded, and the job ends `failed` with the reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.config import VIDEO_MAX_FRAMES
from core.execution.runner import RunSettings
from core.images import ImageSource
from core.images.video import Sampling, Video, VideoError, VideoInfo, is_video_path
from core.records import RunInfo
from core.store import JobRow, Store, StoreError

SPEC_KEY = "video"  # a job spec's video entry: {"path", "name", "every", "fps", "max_frames", ...}


@dataclass
class Extracted:
    """The frames taken from videos (as image sources, in order), and why a video stopped early ("" if none did)."""

    sources: list[ImageSource] = field(default_factory=list)
    error: str = ""
    info: list[VideoInfo] = field(default_factory=list)


def split_videos(paths: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """(video files, everything else) among `paths`, by extension (a folder is never a video)."""
    videos = [Path(p) for p in paths if is_video_path(p) and not Path(p).is_dir()]
    return videos, [Path(p) for p in paths if Path(p) not in videos]


def check_video(path: Path) -> VideoInfo:
    """Open the video and close it: VideoError (one line) when it is not one."""
    with Video(path) as video:
        return video.info


def extract_frames(
    path: Path,
    sampling: Sampling,
    keep: Callable[[ImageSource], ImageSource],
    *,
    name: str | None = None,
    stop: Callable[[], bool] | None = None,
) -> Extracted:
    """Decode `path`'s sampled frames in order, each handed to `keep` (which stores it and returns the source to
    run). A stream that breaks mid-way: the frames before it are kept and `error` says why. VideoError when the file
    cannot be opened at all. `stop`, asked before each frame, ends the extraction early (no error)."""
    out = Extracted()
    with Video(path, name) as video:
        out.info.append(video.info)
        try:
            for frame in video.frames(every=sampling.every, fps=sampling.fps, max_frames=sampling.max_frames):
                if stop is not None and stop():
                    break
                out.sources.append(keep(frame.source(video.name)))
        except VideoError as exc:
            out.error = f"{exc}; the {len(out.sources)} frame(s) before it were kept"
    return out


def extract_to_folder(videos: Sequence[Path], sampling: Sampling, folder: Path) -> Extracted:
    """`detect`: every video's sampled frames as PNG files in `folder`, as path sources named after the frame
    (nothing held in memory). A video that cannot be opened raises VideoError before any frame is written; one that
    breaks mid-way keeps its frames so far, and its error is returned (the later videos are still read)."""
    for path in videos:  # all of them open, or nothing runs
        check_video(path)
    out = Extracted()
    written = iter(range(1 << 62))

    def keep(source: ImageSource) -> ImageSource:
        file = folder / f"{next(written):06d}.png"
        file.write_bytes(source.read())
        return ImageSource(source.name, path=file, image_id=source.image_id)

    for path in videos:
        got = extract_frames(path, sampling, keep)
        out.sources.extend(got.sources)
        out.info.extend(got.info)
        out.error = "; ".join(filter(None, [out.error, got.error]))
    return out


def submit_video(
    store: Store, settings: RunSettings, path: Path, sampling: Sampling, *, user: str = "", name: str | None = None
) -> str:
    """Queue a job that runs the sampled frames of the video at `path` (read by the worker, where it is); returns
    its run id at once. The caller checks the settings first (core.execution.jobs.check_settings); a file that is not a video
    raises VideoError here, before anything is stored."""
    info = Video(path, name)
    info.close()
    spec = {
        "version": 1,
        "settings": dataclasses.asdict(settings),
        "images": [],
        "todo": {},
        "class_names": {},
        "engine": "local",
        SPEC_KEY: {"path": str(path.absolute()), "name": info.name} | dataclasses.asdict(sampling),
    }
    record = settings.record(user=user) | {SPEC_KEY: {"name": info.name} | dataclasses.asdict(sampling)}
    return store.submit_job(spec, settings=record, user=user)


def extract_job_frames(store: Store, job: JobRow, *, stop: Callable[[], bool] | None = None) -> tuple[JobRow, str]:
    """A video job's frames into the store, listed in its run and in its spec (`images`, `todo`), once: a job whose
    spec lists them already (resumed) is returned as it is. Returns the job as it now is and the video's error ("" when
    the stream read to its end); a video that cannot be opened any more is an error with no frame."""
    video = dict(job.spec.get(SPEC_KEY) or {})
    if not video or video.get("extracted"):
        return job, str(video.get("error", ""))
    sampling = Sampling(int(video.get("every", 1)), video.get("fps"), int(video.get("max_frames", VIDEO_MAX_FRAMES)))

    def keep(source: ImageSource) -> ImageSource:
        image_id = store.put_image(source, run_id=job.run_id)
        if not image_id:
            raise StoreError(f"frame {source.name} could not be kept in the store")
        return ImageSource(source.name, image_id=image_id)

    try:
        got = extract_frames(Path(video["path"]), sampling, keep, name=video.get("name"), stop=stop)
        sources, error = got.sources, got.error
    except VideoError as exc:
        sources, error = [], str(exc)
    settings = RunSettings(**job.spec["settings"])
    spec = dict(job.spec)
    spec["images"] = [{"image_id": s.image_id, "name": s.name} for s in sources]
    spec["todo"] = {m: list(range(len(sources))) for m in settings.models} if sources else {}
    spec[SPEC_KEY] = video | {"extracted": True, "frames": len(sources), "error": error}
    store.set_job_spec(job.run_id, spec)
    return dataclasses.replace(job, spec=spec), error


def unextracted(job: JobRow) -> bool:
    """A video job whose frames are not in the store yet (its extraction was stopped): not run, not ended."""
    video = job.spec.get(SPEC_KEY)
    return bool(video) and not video.get("extracted")


def fail_if_broken(store: Store, run_id: str, status: str, error: str, info: RunInfo | None = None) -> str:
    """A video job that ran to its end but whose stream broke ends `failed` with the reason; else `status`."""
    if status != "finished" or not error:
        return status
    store.end_job(run_id, "failed", info=info, message=error)
    return "failed"
