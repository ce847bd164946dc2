"""Where an OpenVINO detector's time goes: one dynamic-shape plan against a static plan per image size, and by layer.

    .venv/bin/python scripts/openvino_profile.py [--model fasterrcnn_resnet50_fpn] [--precision fp32]
        [--images astronaut.jpg,motorcycle.jpg] [--calls 5] [--profile]

Takes the run's own artifact (the export cache; exported first if missing, untrained weights) and, per gallery image,
compiles the dynamic IR as DetLens does and a static copy reshaped to that image's 3xHxW (`Model.reshape`; the
resize to the model's input size happens inside the graph, so the static shape is the image's own), then times
alternating calls of the two (medians, so that machine load hits both alike). `--profile` adds OpenVINO's per-node
counters (`PERF_COUNT`) of the dynamic plan, summed by layer type, and the share of the time in convolutions and
fully connected layers.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from core.config import GALLERY_DIR  # noqa: E402
from core.inference.engine import load_detector  # noqa: E402

HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


def compile_plan(xml: Path, precision: str, shape: tuple[int, ...] | None, threads: int, perf: bool = False):
    """The CPU plan DetLens compiles (LATENCY hint, `threads`), reshaped to a static `shape` when given."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(xml))
    if shape is not None:
        model.reshape({model.input(0): ov.PartialShape(list(shape))})
    config = {"INFERENCE_PRECISION_HINT": HINTS[precision], "INFERENCE_NUM_THREADS": threads}
    config |= {"PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": perf}
    t0 = time.perf_counter()
    compiled = core.compile_model(model, "CPU", config)
    return compiled, time.perf_counter() - t0


def by_layer(request) -> collections.Counter[str]:
    """ms per layer type (with its kernel) of the request's last call."""
    totals: collections.Counter[str] = collections.Counter()
    for node in request.get_profiling_info():
        totals[f"{node.node_type} ({node.exec_type})"] += node.real_time.total_seconds() * 1e3
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="fasterrcnn_resnet50_fpn")
    parser.add_argument("--precision", default="fp32", choices=sorted(HINTS))
    parser.add_argument("--images", default="astronaut.jpg,motorcycle.jpg", help="gallery file names")
    parser.add_argument("--calls", type=int, default=5, help="timed calls per plan and image")
    parser.add_argument("--threads", type=int, default=0, help="0: torch's (physical cores)")
    parser.add_argument("--profile", action="store_true", help="per-layer counters of the dynamic plan")
    args = parser.parse_args(argv)

    import torch

    det = load_detector(args.model, "untrained", "cpu", args.precision, runtime="openvino")
    assert det.export is not None
    xml = Path(det.export.artifact) / "model.xml"
    threads = args.threads or torch.get_num_threads()
    print(f"{det.series}: {xml}, {threads} threads")
    for name in args.images.split(","):
        rgb = Image.open(GALLERY_DIR / name).convert("RGB")
        x = np.ascontiguousarray(np.asarray(rgb).transpose(2, 0, 1), dtype=np.float32) / 255.0
        plans = {"dynamic": compile_plan(xml, args.precision, None, threads, args.profile)}
        plans["static"] = compile_plan(xml, args.precision, x.shape, threads)
        requests = {k: c.create_infer_request() for k, (c, _) in plans.items()}
        for request in requests.values():
            request.infer({0: x})  # warm-up, untimed
        times: dict[str, list[float]] = {k: [] for k in plans}
        for _ in range(args.calls):
            for k, request in requests.items():
                t0 = time.perf_counter()
                request.infer({0: x})
                times[k].append((time.perf_counter() - t0) * 1e3)
        for k, (_, compile_s) in plans.items():
            ms = statistics.median(times[k])
            print(f"  {name} {rgb.width}x{rgb.height} {k:8} compile {compile_s:5.2f} s   median {ms:8.1f} ms")
        if args.profile:
            totals = by_layer(requests["dynamic"])
            whole = sum(totals.values())
            heavy = sum(v for k, v in totals.items() if k.startswith(("Convolution", "FullyConnected")))
            print(f"    by layer (dynamic, last call): {whole:.0f} ms, convolutions + FC {heavy / whole:.0%}")
            for layer, v in totals.most_common(6):
                print(f"      {layer:50} {v:8.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
