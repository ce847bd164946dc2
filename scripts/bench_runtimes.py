"""Benchmark: DetLens's pipeline against a bare torchvision loop on the same images, model, device and threads.

    python scripts/bench_runtimes.py [--model ssdlite320_mobilenet_v3_large] [--images 40] [--size 512] [--weights untrained]

The bare loop is the tutorial's: decode, to tensor, `model([x])` under `inference_mode`. The pipeline is what
`python -m core detect` runs after its imports: sources_from_paths + runner.run + write_run. Both use the one loaded model and
the same warm-up; rounds alternate to spread machine noise. The subprocess CLI (imports and model build included)
is timed too, for reference.

    python scripts/bench_runtimes.py --runtimes eager,onnxruntime,openvino [--precision fp32,bf16] [--models a,b]

prints one row per model x runtime x precision on the bundled gallery (each photo at its own size, the model's own
resize): p50/p95 model-call ms per image over `--rounds` passes, export time (0 when the artifact was cached),
artifact size, and agreement with eager (share of images with match F1 >= 0.99 at `--threshold`, mean IoU, largest
score difference, and how many eager boxes took part: with untrained weights there may be none), and COCO AP
against the gallery's hand-drawn ground truth with its difference to eager (ΔAP). Combinations a runtime or this CPU
cannot run are listed with the reason.

    python scripts/bench_runtimes.py --gpu-batch 1,4,8 [--precision fp32,fp16,bf16] [--channels-last] [--compile] [--device cuda]

measures the GPU paths (core.inference.engine.infer_batch) on `--images` same-size crops: every batch size x precision (AMP
autocast) x memory format (contiguous, and channels_last with the flag) x eager (and torch.compile with the flag),
in images per second against the seed's loop (one image per call, fp32, contiguous, eager), all on tensors already
on the device so that the ratio is the model path's alone. Per-image ms is the batch time / batch size. Each
configuration's boxes are matched with the seed loop's (core.compare.agreement, same label, IoU >= 0.5, score >=
`--threshold`): mean match F1 per image. It runs on the CPU too (fp32, and bf16/fp16 where the CPU has them natively).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the repository's packages
sys.path.insert(0, str(ROOT / "scripts"))
from core.config import DEFAULT_THRESHOLD, GALLERY_ANNOTATIONS, HEADLINE_MODELS, REPO_ROOT  # noqa: E402
from core.execution.runner import RunSettings, run  # noqa: E402
from core.images import gallery_paths, sources_from_paths  # noqa: E402
from core.inference.devices import device_name  # noqa: E402
from core.inference.engine import load_detector  # noqa: E402
from core.inference.models import parse_model_list  # noqa: E402
from core.records import write_run  # noqa: E402


def make_images(folder: Path, count: int, size: int) -> list[Path]:
    """`count` JPEGs of size x size cut from the bundled gallery photos."""
    sources = [Image.open(p).convert("RGB") for p in gallery_paths()]
    paths = []
    for i, src in zip(range(count), itertools.cycle(sources), strict=False):
        side = min(src.size)
        # shift the crop a little per image
        left = (src.width - side) // 2 + (i % 5) * (src.width - side) // 10
        img = src.crop((left, 0, left + side, side)).resize((size, size), Image.Resampling.BILINEAR)
        img.paste((i % 256, (i // 256) % 256, 128), (0, 0, 8, 8))  # crops repeat after 30 images: the pixels never do
        path = folder / f"bench_{i:03d}.jpg"
        img.save(path, quality=90)
        paths.append(path)
    return paths


def bare_loop(
    model: torch.nn.Module, paths: list[Path], device: torch.device, warmup: int
) -> tuple[float, list[float]]:
    """The tutorial loop, with the same untimed-per-image warm-up calls as the pipeline.

    Returns (whole loop seconds, warm-up included like the pipeline's; model-call ms per image).
    """
    calls = []
    start = time.perf_counter()
    first = pil_to_tensor(Image.open(paths[0]).convert("RGB")).to(device).float() / 255.0
    with torch.inference_mode():
        for _ in range(warmup):
            model([first])
    for path in paths:
        x = pil_to_tensor(Image.open(path).convert("RGB")).to(device).float() / 255.0
        with torch.inference_mode():
            t0 = time.perf_counter()
            model([x])
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            calls.append((time.perf_counter() - t0) * 1e3)
    return time.perf_counter() - start, calls


def pipeline(paths: list[Path], settings: RunSettings, out: Path) -> tuple[float, list[float]]:
    """What the CLI runs after start-up. Returns (seconds, recorded inference_ms per image)."""
    start = time.perf_counter()
    output = run(sources_from_paths(paths), settings)
    write_run(out, output.inferences, output.detections, output.info)
    seconds = time.perf_counter() - start
    return seconds, output.inferences["inference_ms"].astype(float).tolist()


def runtimes_table(
    models: list[str], tokens: list[str], weights: str, device: str, rounds: int, warmup: int, threshold: float
) -> list[dict[str, object]]:
    """One row per (model, runtime, precision) series over the gallery; eager fp32 always runs as the reference."""
    import math

    from core.compare.agreement import ap_against_eager, runtime_agreement
    from core.evaluate import load_ground_truth
    from core.inference.devices import resolve_device
    from core.inference.runtimes import check_runtime
    from core.inference.series import RuntimeRefusedError, parse_variants

    variants = parse_variants(["eager", *tokens])
    dev = resolve_device(device)
    usable, rows = [], []
    for v in variants:
        try:
            check_runtime(v.runtime, v.precision or "fp32", dev)
            usable.append(v.token)
        except RuntimeRefusedError as exc:
            rows.extend({"series": f"{m}@{v.token}", "refused": str(exc)} for m in models)
    settings = RunSettings(models, weights, device=device, warmup=warmup, default_runtimes=usable, threshold=threshold)
    images = sources_from_paths(gallery_paths())
    outputs = [run(images, settings) for _ in range(rounds)]
    inf = pd.concat([o.inferences for o in outputs], ignore_index=True)
    agree = runtime_agreement(outputs[0].inferences, outputs[0].detections, threshold=threshold).set_index("series")
    det0 = outputs[0].detections
    ap = ap_against_eager(load_ground_truth(GALLERY_ANNOTATIONS), outputs[0].inferences, det0)
    variants_info = outputs[0].info.settings["variants"]
    for series, info in variants_info.items():
        ok = inf[(inf["model"] == series) & (inf["error"] == "")]
        row: dict[str, object] = {
            "series": series,
            "runtime": info["runtime"],
            "precision": info["precision"],
            "p50_ms": float(ok["inference_ms"].median()) if len(ok) else math.nan,
            "p95_ms": float(ok["inference_ms"].quantile(0.95)) if len(ok) else math.nan,
            "total_p50_ms": float(ok["total_ms"].median()) if len(ok) else math.nan,
            "export_s": info.get("export_s", 0.0),
            "cache_hit": info.get("cache_hit", False),
            "artifact_mb": info.get("artifact_bytes", 0) / 1e6,
            "error": info.get("error", ""),
        }
        if series in agree.index:
            a = agree.loc[series]
            ref = det0[(det0["model"] == a["reference"]) & (det0["score"] >= threshold)]
            row.update(
                share_f1_ok=a["share_f1_ok"], mean_iou=a["mean_iou"], max_score_diff=a["max_score_diff"],
                eager_boxes=len(ref), defect=bool(a["defect"]),
            )  # fmt: skip
            row["ap"], row["ap_eager"] = ap.get(series, (math.nan, math.nan))
        rows.append(row)
    return rows


def _print_runtimes(rows: list[dict[str, object]], threshold: float) -> None:
    from core.compare.agreement import ap_text

    head = f"{'series':52} {'p50 ms':>8} {'p95 ms':>8} {'export s':>9} {'MB':>6}  agreement with eager (F1>=0.99 share, mean IoU, max score diff, eager boxes >= {threshold})"
    print(head)
    for r in rows:
        if "refused" in r:
            print(f"{r['series']:52} refused: {r['refused']}")
            continue
        if r.get("error"):
            print(f"{r['series']:52} {r['error']}")
            continue
        export = "cached" if r["cache_hit"] else f"{r['export_s']:.1f}"
        if "share_f1_ok" not in r:
            agreement = "reference"
        elif r["share_f1_ok"] != r["share_f1_ok"]:  # NaN: no box at or above the threshold on either side
            agreement = f"not measured: 0 boxes >= {threshold} on either side; {ap_text(r)}"
        else:
            agreement = (
                f"{r['share_f1_ok']:.0%}, IoU {r['mean_iou']:.3f}, {r['max_score_diff']:.3f}, {r['eager_boxes']} boxes"
                + (" DEFECT" if r.get("defect") else "")
                + f"; {ap_text(r)}"
            )
        print(
            f"{r['series']:52} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} {export:>9} {r['artifact_mb']:6.1f}  {agreement}"
        )


def _boxes_frame(out: dict[str, torch.Tensor]) -> pd.DataFrame:
    xyxy = out["boxes"].float().cpu().numpy().reshape(-1, 4)
    return pd.DataFrame(
        {"label_id": out["labels"].cpu().numpy(), "score": out["scores"].float().cpu().numpy(), "x1": xyxy[:, 0],
         "y1": xyxy[:, 1], "x2": xyxy[:, 2], "y2": xyxy[:, 3]}
    )  # fmt: skip


def gpu_batch_table(
    model: str,
    weights: str,
    device: str,
    batches: list[int],
    precisions: list[str],
    *,
    channels_last: bool = False,
    compile_: bool = False,
    images: int = 40,
    size: int = 512,
    warmup: int = 2,
    rounds: int = 3,
    threshold: float = DEFAULT_THRESHOLD,
) -> tuple[dict[str, object], list[dict[str, object]]]:
    """The seed loop's figures and one row per configuration (see the module docstring); refused ones say why."""
    import copy

    from core.compare.agreement import image_agreement
    from core.inference.devices import DeviceError, check_precision, resolve_device
    from core.inference.engine import infer_batch, use_channels_last
    from core.inference.models import get_model
    from core.inference.weights import build_model, parse_weights

    dev = resolve_device(device)
    base = build_model(get_model(model), parse_weights(weights)).module.eval().to(dev)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(Path(tmp), images, size)
        tensors = [pil_to_tensor(Image.open(p).convert("RGB")).to(dev).float() / 255.0 for p in paths]

    def timed(module: torch.nn.Module, batch: int, precision: str, cl: bool) -> tuple[float, list[dict]]:
        """Median seconds over `rounds` passes of the first whole batches, and the last pass's outputs."""
        used = tensors[: len(tensors) // batch * batch]
        chunks = [used[i : i + batch] for i in range(0, len(used), batch)]
        for _ in range(warmup):
            infer_batch(module, chunks[0], precision=precision, channels_last=cl)
        seconds, outputs = [], []
        for _ in range(rounds):
            runs = [infer_batch(module, chunk, precision=precision, channels_last=cl) for chunk in chunks]
            seconds.append(sum(t.batch_ms for _, t in runs) / 1e3)
            outputs = [o for outs, _ in runs for o in outs]
        return statistics.median(seconds), outputs

    seed_s, seed_out = timed(base, 1, "fp32", False)
    reference = [_boxes_frame(o) for o in seed_out]
    seed = {"images_per_s": len(tensors) / seed_s, "ms_per_image": seed_s * 1e3 / len(tensors),
            "boxes": int(sum((r["score"] >= threshold).sum() for r in reference))}  # fmt: skip
    rows: list[dict[str, object]] = []
    runnable = []
    for precision in precisions:
        try:
            runnable.append(check_precision(precision, dev))
        except DeviceError as exc:
            rows.append({"config": f"{precision} (every batch)", "refused": str(exc)})
    for precision, cl, compiled, batch in itertools.product(
        runnable, [False, True] if channels_last else [False], [False, True] if compile_ else [False], batches
    ):
        name = (
            f"batch {batch} {precision} {'channels_last' if cl else 'contiguous'} {'compile' if compiled else 'eager'}"
        )
        if batch < 1 or batch > len(tensors):
            rows.append({"config": name, "refused": f"batch {batch} needs 1 to {len(tensors)} images (--images)"})
            continue
        module = copy.deepcopy(base)
        if cl:
            use_channels_last(module)
        if compiled:
            module = torch.compile(module)
        seconds, outputs = timed(module, batch, precision, cl)
        n = len(outputs)
        f1 = [image_agreement(_boxes_frame(o), r, threshold=threshold).f1 for o, r in zip(outputs, reference)]
        rows.append(
            {
                "config": name, "batch": batch, "precision": precision, "channels_last": cl, "compile": compiled,
                "images": n, "images_per_s": n / seconds, "ms_per_image": seconds * 1e3 / n,
                "speedup": (n / seconds) / seed["images_per_s"], "mean_f1": statistics.fmean(f1),
            }
        )  # fmt: skip
    return seed, rows


def _print_gpu_batch(seed: dict[str, object], rows: list[dict[str, object]], threshold: float) -> None:
    print(
        f"seed loop (1 image per call, fp32, contiguous, eager): {seed['images_per_s']:8.1f} images/s "
        f"({seed['ms_per_image']:.1f} ms/image), {seed['boxes']} boxes >= {threshold}"
    )
    print(f"{'configuration':44} {'images/s':>9} {'ms/image':>9} {'vs seed':>8}  boxes vs seed (mean F1)")
    for r in rows:
        if "refused" in r:
            print(f"{r['config']:44} refused: {r['refused']}")
            continue
        print(
            f"{r['config']:44} {r['images_per_s']:9.1f} {r['ms_per_image']:9.1f} {r['speedup']:7.2f}x  "
            f"{r['mean_f1']:.3f}"
        )
    print("ms/image: batch time / batch size (a share of the batch, not one image's own latency)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/bench_runtimes.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtimes", help="compare runtimes instead (e.g. eager,onnxruntime,openvino)")
    parser.add_argument(
        "--gpu-batch", metavar="SIZES", help="measure the GPU paths instead: comma-separated batch sizes (e.g. 1,4,8)"
    )
    parser.add_argument(
        "--channels-last", action="store_true", help="with --gpu-batch: channels_last configurations too"
    )
    parser.add_argument("--compile", action="store_true", help="with --gpu-batch: torch.compile configurations too")
    parser.add_argument(
        "--precision", default="fp32", help="with --runtimes or --gpu-batch: comma-separated precisions"
    )
    parser.add_argument("--models", default=",".join(HEADLINE_MODELS), help="with --runtimes: models")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="with --runtimes: agreement")
    parser.add_argument("--model", default="ssdlite320_mobilenet_v3_large")
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--weights", default="untrained")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-cli", action="store_true", help="skip the subprocess CLI timing")
    args = parser.parse_args(argv)

    if args.runtimes:
        precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
        tokens = [
            rt.strip() + ("" if p == "fp32" else f"-{p}")
            for rt in args.runtimes.split(",")
            if rt.strip()
            for p in precisions
        ]
        models = parse_model_list(args.models)
        rows = runtimes_table(models, tokens, args.weights, args.device, args.rounds, args.warmup, args.threshold)
        print(
            f"machine: {device_name(torch.device('cpu'))}, torch threads {torch.get_num_threads()}, weights {args.weights}"
        )
        _print_runtimes(rows, args.threshold)
        return 0

    if args.gpu_batch:
        batches = [int(b) for b in args.gpu_batch.split(",") if b.strip()]
        precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
        seed, rows = gpu_batch_table(
            args.model, args.weights, args.device, batches, precisions, channels_last=args.channels_last,
            compile_=args.compile, images=args.images, size=args.size, warmup=args.warmup, rounds=args.rounds,
            threshold=args.threshold,
        )  # fmt: skip
        from core.inference.devices import resolve_device

        dev = resolve_device(args.device)
        print(
            f"machine: {device_name(dev)} ({dev}), torch {torch.__version__}, threads {torch.get_num_threads()}; "
            f"model {args.model} ({args.weights}), {args.images} images {args.size}x{args.size}, {args.rounds} rounds"
        )
        _print_gpu_batch(seed, rows, args.threshold)
        return 0

    detector = load_detector(args.model, args.weights, args.device)
    device = detector.device
    settings = RunSettings(models=[args.model], default_weights=args.weights, device=str(device), warmup=args.warmup)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        paths = make_images(tmp_path, args.images, args.size)
        bare_s, bare_calls, pipe_s, pipe_calls = [], [], [], []
        for r in range(args.rounds):
            s, calls = bare_loop(detector.module, paths, device, args.warmup)
            bare_s.append(s)
            bare_calls += calls
            s, calls = pipeline(paths, settings, tmp_path / f"out{r}")
            pipe_s.append(s)
            pipe_calls += calls
        cli_s = None
        if not args.no_cli:
            cmd = [sys.executable, "-m", "core", "detect", str(tmp_path), "--models", args.model, "--weights",
                   args.weights, "--device", str(device.type), "--warmup", str(args.warmup), "--out",
                   str(tmp_path / "cli"), "-q"]  # fmt: skip
            t0 = time.perf_counter()
            subprocess.run(cmd, cwd=REPO_ROOT, check=True, capture_output=True)
            cli_s = time.perf_counter() - t0

    bare_med, pipe_med = statistics.median(bare_s), statistics.median(pipe_s)
    call_med, rec_med = statistics.median(bare_calls), statistics.median(pipe_calls)
    print(
        f"machine: {device_name(device)} ({device}), torch threads {torch.get_num_threads()}, torch {torch.__version__}"
    )
    print(f"model: {args.model} ({args.weights}), {args.images} images {args.size}x{args.size}, {args.rounds} rounds")
    print(f"bare loop          : {bare_med:7.3f} s   model call median {call_med:7.1f} ms/image")
    print(f"DetLens pipeline   : {pipe_med:7.3f} s   recorded inference_ms median {rec_med:7.1f} ms/image")
    print(f"inference_ms / bare model call : {rec_med / call_med:5.3f}  (target within 10%: 0.90-1.10)")
    print(f"pipeline / bare loop           : {pipe_med / bare_med:5.3f}  (target <= 1.15)")
    if cli_s is not None:
        print(f"CLI subprocess, imports + model build included: {cli_s:7.3f} s (one run, for reference)")
    ok = 0.9 <= rec_med / call_med <= 1.1 and pipe_med / bare_med <= 1.15
    print("targets met" if ok else "targets NOT met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
