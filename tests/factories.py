"""Small factories for seeded sessions: inference and detection tables with the schema's dtypes."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import DETECTION_COLUMNS, GALLERY_DIR, INFERENCE_COLUMNS, REPO_ROOT
from core.images import ImageSource
from core.records import DetectionResult, RunInfo, coerce_detections, coerce_inferences

RUN = "20260101-000000-aaaaaa"


def gallery_ref(name: str) -> ImageSource:
    return ImageSource.from_path(GALLERY_DIR / name).hashed()


def inference(
    image: ImageSource, model: str, *, total: float = 10.0, n: int = 0, weights: str = "default", error: str = ""
):
    return {
        "run_id": RUN, "image_id": image.image_id, "image_name": image.name, "width": 100, "height": 80,
        "model": model, "weights": weights, "device": "cpu", "precision": "fp32", "batch_size": 1,
        "preprocess_ms": total * 0.1, "inference_ms": total * 0.8, "postprocess_ms": total * 0.1, "total_ms": total,
        "n_detections": n, "threshold": 0.5, "error": error, "created_at": "2026-01-01T00:00:00+00:00",
    }  # fmt: skip


def box(image: ImageSource, model: str, label: str, score: float, xyxy: Sequence[float], label_id: int = 1):
    x1, y1, x2, y2 = xyxy
    return {"run_id": RUN, "image_id": image.image_id, "model": model, "label_id": label_id, "label": label,
            "score": score, "x1": x1, "y1": y1, "x2": x2, "y2": y2}  # fmt: skip


def tables(inferences: list[dict], detections: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    inf = coerce_inferences(pd.DataFrame(inferences, columns=list(INFERENCE_COLUMNS)))
    det = coerce_detections(pd.DataFrame(detections, columns=list(DETECTION_COLUMNS)))
    return inf, det


def read_written_run(out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, RunInfo]:
    """What `core.records.write_run` wrote (CSV and run.json), read back with the schema's dtypes."""
    inf = pd.read_csv(out_dir / "inferences.csv", dtype={"image_id": "string", "run_id": "string"})
    det = pd.read_csv(out_dir / "detections.csv", dtype={"image_id": "string", "run_id": "string"})
    info = RunInfo.from_json((out_dir / "run.json").read_text(encoding="utf-8"))
    return coerce_inferences(inf), coerce_detections(det), info


def seeded(weights: str = "default") -> tuple[pd.DataFrame, pd.DataFrame, dict[str, ImageSource]]:
    """Two gallery photos, two models, known boxes.

    cat.jpg: A and B agree on one cat (IoU 1), A alone sees a dog at 0.9, B alone a weak cup at 0.3.
    coffee.jpg: A sees a cup; B sees the same cup shifted (IoU 0.6) and a second cup at 0.8.
    At threshold 0.5: both 2, only A 1 (dog), only B 1 (second cup); at 0.2 B's weak cup counts too.
    """
    cat, coffee = gallery_ref("cat.jpg"), gallery_ref("coffee.jpg")
    a, b = "fasterrcnn_resnet50_fpn", "ssdlite320_mobilenet_v3_large"
    inf = [
        inference(cat, a, total=900, n=2, weights=weights),
        inference(cat, b, total=30, n=1, weights=weights),
        inference(coffee, a, total=1100, n=1, weights=weights),
        inference(coffee, b, total=35, n=2, weights=weights),
    ]
    det = [
        box(cat, a, "cat", 0.95, (10, 10, 60, 50), 17),
        box(cat, a, "dog", 0.9, (200, 100, 300, 200), 18),
        box(cat, b, "cat", 0.8, (10, 10, 60, 50), 17),
        box(cat, b, "cup", 0.3, (5, 5, 15, 15), 47),
        box(coffee, a, "cup", 0.85, (0, 0, 100, 100), 47),
        box(coffee, b, "cup", 0.7, (0, 0, 100, 60), 47),
        box(coffee, b, "cup", 0.8, (300, 300, 350, 350), 47),
    ]
    inf_df, det_df = tables(inf, det)
    return inf_df, det_df, {cat.image_id: cat, coffee.image_id: coffee}


def finish_jobs(at, *, timeout: float = 600):
    """What the dashboard's worker does, in this process: run every queued job of the store, then rerun the page (the
    ended jobs join the session tables). Returns the AppTest."""
    from core.store import Store, default_store_dir

    with Store(default_store_dir()) as store:
        run_pending(store)
    return at.run(timeout=timeout)


def run_pending(store, *, limit: int | None = None) -> list[str]:
    """Run queued jobs in this process, in submission order, until none is left (what a worker does, without its
    heartbeat thread); returns their run ids."""
    from core.execution import jobs

    ran: list[str] = []
    while limit is None or len(ran) < limit:
        job = store.claim_job(jobs.worker_name())
        if job is None:
            break
        jobs.run_job(store, job)
        ran.append(job.run_id)
    return ran


def stop_workers_of(store_path: Path, sig: int = signal.SIGTERM) -> list[int]:
    """Signal every `python -m core worker --store STORE_PATH` process still running (clean-up after a test whose
    dashboard started one); returns their pids."""
    wanted = [b"core", b"worker", b"--store", str(Path(store_path)).encode()]
    stopped = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        found = all(w in args for w in wanted) and args.index(b"core") + 1 == args.index(b"worker")
        if found and state != "Z":
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), sig)
                stopped.append(int(proc.name))
    return stopped


def ground_truth_run(
    store_dir: Path, run_id: str, model: str = "m", created_at: str = "2026-01-01T00:00:00+00:00"
) -> Path:
    """A stored run whose detections are the bundled gallery's ground-truth boxes at score 1 (AP 1 by construction)."""
    import numpy as np

    from core import evaluate as ev
    from core.config import GALLERY_ANNOTATIONS
    from core.records import DetectionResult
    from core.store import Store

    names = {ImageSource.from_path(p).hashed().image_id: p.name for p in sorted(GALLERY_DIR.glob("*.jpg"))}
    boxes = ev.gt_boxes(ev.load_ground_truth(GALLERY_ANNOTATIONS, image_names=names))
    store = Store(store_dir)
    store.start_run(RunInfo(run_id, created_at, {"models": [model]}))
    for image_id, name in names.items():
        mine = boxes[boxes["image_id"] == image_id]
        size = ImageSource.from_path(GALLERY_DIR / name).load()
        result = DetectionResult(
            image_id=image_id, image_name=name, width=size.width, height=size.height, model=model, weights="default",
            device="cpu", precision="fp32", batch_size=1,
            boxes=mine[["x1", "y1", "x2", "y2"]].to_numpy(np.float32).reshape(-1, 4),
            scores=np.ones(len(mine), np.float32), labels=mine["label_id"].to_numpy(np.int64),
            label_names=tuple(mine["label"]), preprocess_ms=1.0, inference_ms=1.0, postprocess_ms=1.0,
        )  # fmt: skip
        store.add_result(run_id, result, threshold=0.5, created_at="2026-01-01T00:00:00+00:00")
    return store_dir


def load_script(name: str):  # noqa: ANN201
    """A benchmark or tool of scripts/ (`load_script("bench_runtimes")`) imported as a module, once per session; the
    scripts folder on sys.path, as when the script runs, so that it finds its sibling scripts."""
    if name in sys.modules:
        return sys.modules[name]
    folder = str(REPO_ROOT / "scripts")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def detection_result(
    image_id: str = "img1",
    image_name: str | None = None,
    size: tuple[int, int] = (100, 50),
    *,
    model: str = "m",
    boxes: np.ndarray | None = None,
    scores: Sequence[float] = (),
    error: str = "",
) -> DetectionResult:
    """One image's record from an untrained CPU fp32 model: box k labelled c{k} (id k), 1 / 10 / 0.5 ms; a failed
    image (`error`) has no boxes, a 0 x 0 size and NaN times."""
    n = 0 if error else len(scores)
    boxes = np.zeros((0, 4), np.float32) if boxes is None or error else np.asarray(boxes, np.float32).reshape(n, 4)
    return DetectionResult(
        image_id=image_id, image_name=image_name or f"{image_id}.jpg", width=0 if error else size[0],
        height=0 if error else size[1], model=model, weights="untrained", device="cpu", precision="fp32", batch_size=1,
        boxes=boxes, scores=np.asarray(scores[:n], np.float32), labels=np.arange(1, n + 1, dtype=np.int64),
        label_names=tuple(f"c{i}" for i in range(1, n + 1)), preprocess_ms=np.nan if error else 1.0,
        inference_ms=np.nan if error else 10.0, postprocess_ms=np.nan if error else 0.5, error=error,
    )  # fmt: skip
