"""Throughput of the live file path: frames per second per series, beside the same model's still-image rate.

    .venv/bin/python scripts/bench_live.py [--frames 60] [--size 640x480] [--models ssdlite320_mobilenet_v3_large]
                                          [--weights untrained] [--source-fps 30]

A video is generated (libx264, moving synthetic frames). For each model (one series alone):
1. file path: PyAV decodes every frame and the series runs on it through core.execution.live (offer + step: no frame dropped),
   timed end to end: frames per second, decode and model included;
2. still images: the same frames as PNG files, each read, decoded (core.images) and run (core.inference.engine.run_detector), as
   a run does: images per second;
and, all the series together, the file played in virtual time at the source's rate (core.execution.live simulate): frames each
series processed and dropped, and the fps it achieved. One warm-up call per model, not timed.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import av  # noqa: E402
import numpy as np  # noqa: E402

from core.execution.live import LiveComparison, LiveSeries, detector_fn  # noqa: E402
from core.images import load_image  # noqa: E402
from core.images.video import read_frames  # noqa: E402
from core.inference.devices import configure_threads  # noqa: E402
from core.inference.engine import load_detector, run_detector  # noqa: E402


def make_video(path: Path, frames: int, width: int, height: int, fps: int) -> Path:
    """Moving gradients and bars: every frame differs (libx264, yuv420p)."""
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            a = np.stack([(xx + 4 * i) % 256, (yy + 2 * i) % 256, ((xx + yy) // 2 + 8 * i) % 256], axis=-1)
            a[:, (8 * i) % width : (8 * i) % width + 20] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(a.astype(np.uint8), format="rgb24")))
        container.mux(stream.encode())
    return path


def file_path_fps(video: Path, model: str, weights: str, n: int) -> tuple[float, float]:
    """(frames per second decode + detect, median model ms) of one series over every frame of `video`."""
    det = load_detector(model, weights, "cpu", "fp32")
    live = LiveComparison([LiveSeries(model, detector_fn(det, 0.5))])
    frames = read_frames(video)
    live.offer(next(frames))  # the warm-up call (untimed, as in a run) on the first frame
    live.step(model)
    t0 = time.perf_counter()
    count = 0
    for frame in frames:
        live.offer(frame)
        live.step(model)
        count += 1
    wall = time.perf_counter() - t0
    latency = live.snapshot().frames["latency_ms"].iloc[1:]
    assert count == n - 1, (count, n)
    return count / wall, float(latency.median())


def still_fps(pngs: list[Path], model: str, weights: str) -> tuple[float, float]:
    """(images per second read + decode + detect, median total_ms) as a run does it, one image at a time."""
    det = load_detector(model, weights, "cpu", "fp32")
    run_detector(det, [load_image(pngs[0])], warmup=1)
    t0 = time.perf_counter()
    results = [run_detector(det, [load_image(p)], warmup=0)[0] for p in pngs[1:]]
    wall = time.perf_counter() - t0
    return len(results) / wall, statistics.median(r.total_ms for r in results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--models", default="ssdlite320_mobilenet_v3_large")
    parser.add_argument("--weights", default="untrained")
    parser.add_argument("--source-fps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3, help="file and still measured in turn, medians reported")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    models = args.models.split(",")
    threads = configure_threads()
    load = os.getloadavg()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads {threads}, "
          f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(Path(tmp) / "bench.mp4", args.frames, width, height, args.source_fps)
        pngs = []
        for frame in read_frames(video):
            path = Path(tmp) / f"{frame.index:05d}.png"
            path.write_bytes(frame.png())
            pngs.append(path)
        print(f"video: {args.frames} frames {width}x{height} at {args.source_fps} fps, weights {args.weights}")
        print(f"{'series':40} {'file fps':>9} {'still img/s':>11} {'ratio':>6} {'file ms':>8} {'still ms':>8}")
        for model in models:
            rounds = [(file_path_fps(video, model, args.weights, args.frames), still_fps(pngs, model, args.weights))
                      for _ in range(args.rounds)]  # fmt: skip
            file_fps, file_ms = (statistics.median(r[0][k] for r in rounds) for k in (0, 1))
            img_fps, img_ms = (statistics.median(r[1][k] for r in rounds) for k in (0, 1))
            print(f"{model:40} {file_fps:9.2f} {img_fps:11.2f} {file_fps / img_fps:6.2f} {file_ms:8.1f} {img_ms:8.1f}")
        series = []
        for i, model in enumerate(models * (2 if len(models) == 1 else 1)):
            det = load_detector(model, args.weights, "cpu", "fp32")
            series.append(LiveSeries(f"{model}#{i + 1}", detector_fn(det, 0.5)))
        live = LiveComparison(series)
        live.simulate(read_frames(video))
        print(f"played at {args.source_fps} fps in virtual time (each series as if alone on the source):")
        for row in live.snapshot().summary:
            print(f"  {row.name:40} processed {row.processed:4d}  dropped {row.dropped:4d}  fps {row.fps:6.2f}  "
                  f"median {row.median_latency_ms:7.1f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
