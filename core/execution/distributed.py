"""Batch detection on a Ray cluster, into the same run store: `python -m core detect SOURCE --engine ray`.

The pipeline, one Ray Data dataset per model (model after model, like the local engine):

    image paths (a folder, a text file of paths, or image files, on storage every node sees)
      --map_batches(decode_batch): Ray tasks, core.images.load_image (size, bomb and format-by-content guards)-->
    RGB pixels + decode time, or the image's one-line error
      --map_batches(DetectWorker): actors, each loads its model once (core.inference.engine.load_detector) and runs
        core.inference.engine.run_detector on its batch (the local engine's timing), then core.records' rows-->
    one row per (image, model): the inference columns plus the image's boxes as list columns
      --driver, streaming: Parquet parts in the records schema (<out>/<run_id>/{inferences,detections}/part-*.parquet)
        and an idempotent ingest into the store (one run: settings, environment, wall time, images per second).

Faults: decode tasks are retried (`max_retries`), a dead actor is restarted and its batches run again
(`max_restarts`, `max_task_retries`); a batch that runs twice cannot add a pair twice, since parts and store keep each
(image, model) once. A bad image is a record with its error. An unreachable cluster is a `ClusterError` (one line).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from core.config import (
    DETECTION_COLUMNS,
    ENGINE_RAY,
    IMAGE_EXTENSIONS,
    INFERENCE_COLUMNS,
    RAY_MAX_RESTARTS,
    RAY_MAX_RETRIES,
    RAY_MAX_TASK_RETRIES,
    SCORE_FLOOR,
)
from core.execution.cluster import (
    RayOptions,
    check_options,
    cluster_environment,
    connect,
)
from core.execution.runner import RunSettings, stored_run
from core.images import LoadedImage, expand_paths, load_image
from core.records import RunInfo, coerce_detections, coerce_inferences, new_run_id, now_iso

# Ray must not phone home (usage stats) from the driver or from the processes it starts.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

_DETECTION_LISTS: tuple[str, ...] = tuple(f"det_{c}" for c in ("label_id", "label", "score", "x1", "y1", "x2", "y2"))
_EXTRA = ("path", "notes")  # carried beside the records: where the image is (to keep its bytes), and its notes


# --- sources ---------------------------------------------------------------------------------------------------------


def list_images(sources: Iterable[str | Path]) -> list[Path]:
    """Absolute image paths from folders (recursively, like the local engine), image files, and text files listing
    one path a line (blank lines and `#` comments skipped; relative paths are relative to the list's folder)."""
    out: list[Path] = []
    for item in sources:
        path = Path(item)
        if path.is_file() and path.suffix.lower() not in IMAGE_EXTENSIONS and _is_text_list(path):
            for line in path.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    listed = Path(line).expanduser()
                    out.append(listed if listed.is_absolute() else path.parent / listed)
        else:
            out.extend(expand_paths([path]))
    return [p.absolute() for p in out]


def _is_text_list(path: Path) -> bool:
    """A small UTF-8 text file (a list of paths), not an image with an odd extension."""
    try:
        head = path.open("rb").read(4096)
        head.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return b"\x00" not in head


# --- Ray tasks and actors ----------------------------------------------------------------------------------------------


def decode_batch(batch: pa.Table) -> pa.Table:
    """Ray task: decode each path with core.images' guards. Pixels travel as raw RGB bytes, with the decode time."""
    rows: dict[str, list] = {k: [] for k in ("path", "name", "image_id", "width", "height", "format", "decode_ms")}
    rows.update(notes=[], error=[], pixels=[])
    for path in batch.column("path").to_pylist():
        image = load_image(Path(path))
        rows["path"].append(path)
        rows["name"].append(image.name)
        rows["image_id"].append(image.image_id)
        rows["width"].append(image.width)
        rows["height"].append(image.height)
        rows["format"].append(image.format)
        rows["decode_ms"].append(image.decode_ms)
        rows["notes"].append(json.dumps(list(image.notes)))
        rows["error"].append(image.error)
        rows["pixels"].append(image.image.tobytes() if image.image is not None else b"")
    return pa.table({**rows, "pixels": pa.array(rows["pixels"], type=pa.large_binary())})


def _loaded(row: dict) -> LoadedImage:
    """The decoded image of one `decode_batch` row, as core.images made it."""
    from PIL import Image

    image = None
    if not row["error"]:
        image = Image.frombytes("RGB", (row["width"], row["height"]), row["pixels"])
    return LoadedImage(
        name=row["name"],
        image_id=row["image_id"],
        image=image,
        width=row["width"],
        height=row["height"],
        format=row["format"],
        decode_ms=row["decode_ms"],
        notes=tuple(json.loads(row["notes"])),
        error=row["error"],
        source=Path(row["path"]),
    )


class DetectWorker:
    """Ray actor: one model loaded once, run on each batch by core.inference.engine.run_detector (the local engine's timing)."""

    def __init__(
        self,
        model: str,
        weights: str,
        device: str,
        precision: str,
        *,
        run_id: str,
        threshold: float,
        created_at: str,
        warmup: int,
        batch_size: int,
        score_floor: float = SCORE_FLOOR,
    ) -> None:
        from core.inference.engine import load_detector

        self.detector = load_detector(model, weights, device, precision)
        self.run_id, self.threshold, self.created_at = run_id, threshold, created_at
        self.warmup, self.batch_size, self.score_floor = warmup, batch_size, score_floor

    def __call__(self, batch: pa.Table) -> pa.Table:
        from core.inference.engine import run_detector

        rows = batch.to_pylist()
        images = [_loaded(r) for r in rows]
        results = run_detector(
            self.detector, images, warmup=self.warmup, batch_size=self.batch_size, score_floor=self.score_floor
        )
        self.warmup = 0  # warm-up calls once per actor (the local engine: once per model), never recorded
        return result_table(results, rows, run_id=self.run_id, threshold=self.threshold, created_at=self.created_at)


def result_table(
    results: Sequence, rows: Sequence[dict], *, run_id: str, threshold: float, created_at: str
) -> pa.Table:
    """One row per result: core.records' inference columns, the boxes as list columns, and the image's path/notes."""
    from core.records import inferences_frame

    inf = inferences_frame(results, run_id=run_id, threshold=threshold, created_at=created_at)
    table = pa.Table.from_pandas(inf, preserve_index=False)
    lists = {
        "det_label_id": [r.labels.astype(np.int64).tolist() for r in results],
        "det_label": [list(r.label_names) for r in results],
        "det_score": [r.scores.astype(np.float64).tolist() for r in results],
    }
    for i, name in enumerate(("x1", "y1", "x2", "y2")):
        lists[f"det_{name}"] = [r.boxes[:, i].astype(np.float64).tolist() for r in results]
    types = {"det_label_id": pa.list_(pa.int64()), "det_label": pa.list_(pa.string())}
    for name, values in lists.items():
        table = table.append_column(name, pa.array(values, type=types.get(name, pa.list_(pa.float64()))))
    table = table.append_column("path", pa.array([r["path"] for r in rows], type=pa.string()))
    return table.append_column("notes", pa.array([r["notes"] for r in rows], type=pa.string()))


def split_records(table: pa.Table) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two tables of core.records (schema columns and dtypes) from `result_table` rows."""
    frame = table.to_pandas()
    inferences = coerce_inferences(frame[list(INFERENCE_COLUMNS)])
    counts = frame["det_score"].map(len).to_numpy()
    if not counts.sum():
        return inferences, coerce_detections(pd.DataFrame(columns=list(DETECTION_COLUMNS)))
    detections = pd.DataFrame(
        {
            "run_id": np.repeat(frame["run_id"].to_numpy(object), counts),
            "image_id": np.repeat(frame["image_id"].to_numpy(object), counts),
            "model": np.repeat(frame["model"].to_numpy(object), counts),
            **{c: np.concatenate([np.asarray(v) for v in frame[f"det_{c}"] if len(v)]) for c in _LIST_COLUMNS},
        }
    )
    return inferences, coerce_detections(detections[list(DETECTION_COLUMNS)])


_LIST_COLUMNS = ("label_id", "label", "score", "x1", "y1", "x2", "y2")


# --- ingest ----------------------------------------------------------------------------------------------------------


# --- the run ---------------------------------------------------------------------------------------------------------


@dataclass
class RayRunOutput:
    info: RunInfo
    n_records: int  # (image, model) pairs kept (each once)
    n_errors: int
    wall_s: float
    parts_dir: Path | None
    inferences: pd.DataFrame = field(repr=False)  # one row per kept pair; the boxes are in the store and the parts
    stopped: bool = False  # `should_stop` ended the run before every pair ran


def detect_dataset(paths: Sequence[Path], model: str, settings: RunSettings, opts: RayOptions, *, run_id: str,
                   created_at: str, worker: type = DetectWorker):  # fmt: skip
    """The lazy Ray dataset of one model's records over `paths` (decode tasks, then a pool of `worker` actors)."""
    import ray.data

    warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated", category=DeprecationWarning)
    ds = ray.data.from_items([{"path": str(p)} for p in paths], override_num_blocks=_blocks(len(paths), opts))
    ds = ds.map_batches(
        decode_batch,
        batch_size=opts.batch_rows,
        batch_format="pyarrow",
        **_retries(max_retries=RAY_MAX_RETRIES),
    )
    return ds.map_batches(
        worker,
        fn_constructor_args=(model, settings.weights_for(model), settings.device, settings.precision),
        fn_constructor_kwargs={
            "run_id": run_id,
            "threshold": settings.threshold,
            "created_at": created_at,
            "warmup": settings.warmup,
            "batch_size": settings.batch_size,
        },
        batch_size=opts.batch_rows,
        batch_format="pyarrow",
        compute=_actor_pool(opts.workers),
        num_cpus=opts.cpus_per_worker,
        num_gpus=opts.gpus_per_worker or None,
        **_retries(max_restarts=RAY_MAX_RESTARTS, max_task_retries=RAY_MAX_TASK_RETRIES),
    )


def _retries(**counts: int) -> dict[str, int]:
    """Retry counts for `map_batches`, passed as Ray remote args (the documented way to set them in Ray 2.60).

    Ray 2.60 marks `**ray_remote_args` (and `ray_remote_args_fn`) deprecated for removal in 2.64 but names no
    replacement for `max_restarts` / `max_task_retries` / `max_retries`; requirements.txt pins Ray, and this is the
    one place to change when it moves.
    """
    return counts


def _quiet_ray_data() -> None:
    """No progress bars or per-dataset log lines from Ray Data (the CLI draws its own progress)."""
    import logging

    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def _actor_pool(workers: int):
    import ray.data

    return ray.data.ActorPoolStrategy(size=workers)


def _blocks(n: int, opts: RayOptions) -> int:
    return max(1, -(-n // opts.batch_rows))


ProgressFn = Callable[[int, int], None]


def run_ray(
    paths: Sequence[Path],
    settings: RunSettings,
    opts: RayOptions,
    *,
    store,
    run_id: str | None = None,
    user: str = "",
    out_dir: Path | None = None,
    on_progress: ProgressFn | None = None,
    worker: type = DetectWorker,
    todo: Mapping[str, Sequence[Path]] | None = None,
    existing: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> RayRunOutput:
    """Run every model over `paths` on Ray; parts under `out_dir/<run_id>/` and the records in `store` (one run).

    The run is started in the store before any image runs and finished (or marked failed) at the end. `todo` (model ->
    paths, in settings order) runs only those pairs (a resumed job); `existing`: `run_id` is already in the store (a
    claimed job's run). `should_stop`, asked before each model and after each batch is stored, ends the run there
    (`stopped`: the run's status is left to the caller, as `core.execution.runner.execute` does).
    """
    import ray

    run_id = run_id or new_run_id()
    created_at = now_iso()
    check_options(opts)  # before anything starts: one line (a worker's job fails with it)
    started = connect(opts.address)
    parts_dir = Path(out_dir) / run_id if out_dir is not None else None
    seen: set[tuple[str, str]] = set()
    kept_images: set[str] = set()
    frames: list[pd.DataFrame] = []  # inference rows only: a run's boxes (100 an image) stay out of memory
    todo = (
        {m: list(todo.get(m, ())) for m in settings.models}
        if todo is not None
        else dict.fromkeys(settings.models, paths)
    )
    total = sum(len(v) for v in todo.values())
    stopped = False
    t0 = time.perf_counter()
    opening = RunInfo(run_id, created_at, settings=ray_settings_record(settings, opts, user=user))
    try:
        if started:
            check_options(opts)  # again, with the CPUs the Ray just started here really has
        _quiet_ray_data()
        with stored_run(store, opening, user=user, existing=existing) as opened:  # finished, failed, or left open
            for model, model_paths in todo.items():
                stopped = stopped or bool(should_stop and should_stop())
                if stopped or not model_paths:
                    continue
                ds = detect_dataset(model_paths, model, settings, opts, run_id=run_id, created_at=created_at,
                                    worker=worker)  # fmt: skip
                batches = iter(ds.iter_batches(batch_format="pyarrow", batch_size=None))
                for table in batches:
                    inf, det = _new_rows(split_records(table), seen)
                    if not inf.empty:
                        store.add_records(run_id, inf, det)
                        _keep_images(store, run_id, table, kept_images)
                        if parts_dir is not None:
                            _write_part(parts_dir, len(frames), inf, det)
                        frames.append(inf)
                        if on_progress:
                            on_progress(len(seen), total)
                    if should_stop and should_stop():
                        stopped = True
                        getattr(batches, "close", lambda: None)()  # Ray Data stops the dataset's execution
                        break
            stopped = stopped and len(seen) < total  # asked after the last batch: nothing was left out
            wall_s = time.perf_counter() - t0
            inferences = _arrived(frames)
            opened.info = _final_info(opening, inferences, settings, opts, user=user, wall_s=wall_s, n_pairs=total)
            opened.stopped = stopped
    finally:
        if started:
            ray.shutdown()
    info = opened.info
    n_errors = int((inferences["error"] != "").sum())
    return RayRunOutput(info, len(inferences), n_errors, wall_s, parts_dir, inferences.reset_index(drop=True),
                        stopped=stopped)  # fmt: skip


def _arrived(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The run's kept inference rows, in arrival order (a typed empty table when nothing came back)."""
    if not frames:
        return coerce_inferences(pd.DataFrame(columns=list(INFERENCE_COLUMNS)))
    return pd.concat(frames)


def _final_info(opening: RunInfo, inferences: pd.DataFrame, settings: RunSettings, opts: RayOptions, *, user: str,
                wall_s: float, n_pairs: int) -> RunInfo:  # fmt: skip
    """The run's settings and environment once it ran: the actors' devices, weights, wall time and images per second."""
    environment = _environment(opts, settings)
    environment["ray"].update(wall_s=round(wall_s, 3), images_per_s=round(n_pairs / wall_s, 3) if wall_s else None)
    environment["images"] = dict(zip(inferences["image_id"], inferences["image_name"], strict=True))
    devices = sorted(set(inferences["device"].dropna()))
    environment["device"] = ",".join(devices) or environment["device"]
    weights = {m: w for m, w in zip(inferences["model"], inferences["weights"], strict=True)}
    settings_record = ray_settings_record(
        settings, opts, user=user, device=",".join(devices) or None, weights=weights or None
    )
    return RunInfo(opening.run_id, opening.created_at, settings=settings_record, environment=environment)


def _new_rows(
    records: tuple[pd.DataFrame, pd.DataFrame], seen: set[tuple[str, str]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Only the (image, model) pairs not seen yet in this run (a batch run twice after a restart adds nothing).

    An image whose bytes could not be read has no content id: its path stands in, so two such files stay two rows.
    """
    inf, det = records
    keys = [(i or f"path:{n}", m) for i, n, m in zip(inf["image_id"], inf["image_name"], inf["model"], strict=True)]
    fresh = []
    for k in keys:  # one at a time: the same content twice in one batch (a copied photo) is kept once
        fresh.append(k not in seen)
        seen.add(k)
    new_keys = {k for k, f in zip(keys, fresh, strict=True) if f}
    # boolean arrays, not lists: an empty list would select no columns (a 0x0 table) instead of no rows
    inf = inf.loc[np.asarray(fresh, dtype=bool)]
    det = det.loc[np.fromiter(((i, m) in new_keys for i, m in zip(det["image_id"], det["model"], strict=True)),
                              dtype=bool, count=len(det))]  # fmt: skip
    return inf.reset_index(drop=True), det.reset_index(drop=True)


def _keep_images(store, run_id: str, table: pa.Table, kept: set[str]) -> None:
    """Keep each decoded image's bytes in the store once (the dashboard shows them), read from shared storage."""
    from core.images import ImageSource

    for image_id, name, path in zip(*(table.column(c).to_pylist() for c in ("image_id", "image_name", "path")), strict=True):  # fmt: skip
        if image_id and image_id not in kept:
            kept.add(image_id)
            store.put_image(ImageSource(name, path=Path(path), image_id=image_id), run_id=run_id)


def _write_part(parts_dir: Path, index: int, inferences: pd.DataFrame, detections: pd.DataFrame) -> None:
    """`inferences/part-NNNNN.parquet` and `detections/part-NNNNN.parquet` in the records schema (written, then
    renamed, so a reader never sees half a part)."""
    for name, frame in (("inferences", coerce_inferences(inferences)), ("detections", coerce_detections(detections))):
        folder = parts_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".part-{index:05d}.parquet.tmp"
        frame.to_parquet(tmp, index=False)
        tmp.replace(folder / f"part-{index:05d}.parquet")


def ray_settings_record(settings: RunSettings, opts: RayOptions, *, user: str, device: str | None = None,
                        weights: dict[str, str] | None = None) -> dict[str, object]:  # fmt: skip
    record = settings.record(user=user, device=device, weights=weights)
    record.update(engine="ray", ray_address=opts.address or "local", workers=opts.workers,
                  gpus_per_worker=opts.gpus_per_worker)  # fmt: skip
    return record


def _environment(opts: RayOptions, settings: RunSettings) -> dict[str, object]:
    """The driver's environment (core.inference.devices) plus the cluster's (Ray version, nodes, CPUs, GPUs)."""
    import torch

    from core.inference.devices import environment

    env: dict[str, object] = dict(environment(torch.device("cpu")))  # the driver's; the actors' device is set below
    env["ray"] = {**cluster_environment(), "workers": opts.workers, "gpus_per_worker": opts.gpus_per_worker}
    return env


# --- command line ------------------------------------------------------------------------------------------------------


def options_from(args) -> RayOptions:
    """The Ray options `detect` and `submit` take (`--ray-address`, `--workers`, `--gpus-per-worker`)."""
    return RayOptions(address=args.ray_address or None, workers=args.workers, gpus_per_worker=args.gpus_per_worker)


def check_ray_settings(settings: RunSettings, opts: RayOptions) -> None:
    """`settings.resolve(engine="ray")` and the options (`check_options`): what the Ray path refuses before any
    cluster work, in one line. Nothing is contacted: a cluster that is down is found when the run starts."""
    settings.resolve(engine=ENGINE_RAY, check_files=False)
    check_options(opts)
