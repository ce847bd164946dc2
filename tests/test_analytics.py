"""The aggregated path (core.analytics) gives exactly the numbers of the pandas path it replaces, and segments stay
correct for a finished, a growing and a resumed run."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from core.analytics import RunFrame, load_run_frame, queries, threshold_bin
from core.config import DETECTION_COLUMNS, INFERENCE_COLUMNS
from core.records import RunInfo, coerce_detections, coerce_inferences, latest_run
from core.store import Store
from core.store.segments import segment_dir
from dashboard.figures import count_curves, count_points

MODELS = ("fasterrcnn_resnet50_fpn", "ssdlite320_mobilenet_v3_large", "retinanet_resnet50_fpn")
LABELS = ("person", "car", "dog", "cup", "N/A")
THRESHOLDS = [0.0, 0.01, 0.05, 0.3, 0.5, 0.57, 0.7, 0.95, 1.0, 0.333]  # 0.333 is off the 0.01 grid


def random_run(seed: int, n_images: int = 30, n_boxes: int = 600, runs: tuple[str, ...] = ("r1",)):
    """Inferences and detections of a random run: some failed pairs, scores on and between the 0.01 edges."""
    rng = np.random.default_rng(seed)
    inf_rows, det_rows = [], []
    for run_id in runs:
        for i in range(n_images):
            for m in MODELS:
                failed = rng.random() < 0.05
                inf_rows.append({
                    "run_id": run_id, "image_id": f"img{i:03d}", "image_name": f"photo_{i}.jpg", "width": 640,
                    "height": 480, "model": m, "weights": "default", "device": "cpu", "precision": "fp32",
                    "batch_size": 1, "preprocess_ms": 1.0, "inference_ms": 10.0, "postprocess_ms": 1.0,
                    "total_ms": float(rng.uniform(5, 50)), "n_detections": 0, "threshold": 0.5,
                    "error": "bad image" if failed else "", "created_at": "2026-01-01T00:00:00+00:00",
                })  # fmt: skip
    ok = [(r["run_id"], r["image_id"], r["model"]) for r in inf_rows if not r["error"]]
    picks = rng.integers(0, len(ok), n_boxes)
    on_edge = rng.random(n_boxes) < 0.3
    scores = np.where(on_edge, rng.integers(1, 101, n_boxes) / 100, rng.uniform(0.01, 1.0, n_boxes))
    for k, score in zip(picks, scores, strict=True):
        run_id, image_id, model = ok[k]
        label = str(rng.choice(LABELS))
        x, y = rng.uniform(0, 500, 2)
        det_rows.append({
            "run_id": run_id, "image_id": image_id, "model": model, "label_id": LABELS.index(label) + 1,
            "label": label, "score": float(score), "x1": x, "y1": y, "x2": x + rng.uniform(5, 100),
            "y2": y + rng.uniform(5, 100),
        })  # fmt: skip
    inf = coerce_inferences(pd.DataFrame(inf_rows, columns=list(INFERENCE_COLUMNS)))
    det = coerce_detections(pd.DataFrame(det_rows, columns=list(DETECTION_COLUMNS)))
    return inf, det


@pytest.fixture(params=[0, 1, 2], ids=lambda s: f"seed{s}")
def run_tables(request):
    return random_run(request.param)


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_counts_per_image_and_model_match_pandas(run_tables, threshold):
    inf, det = run_tables
    rf = RunFrame.from_frames(inf, det)
    matrix = queries.count_matrix(rf, threshold)
    expected = det[det["score"] >= threshold].groupby(["image_id", "model"]).size()
    got = {(rf.image_ids[i], rf.models[m]): int(matrix[i, m]) for i, m in zip(*np.nonzero(matrix), strict=True)}
    assert got == {k: int(v) for k, v in expected.items()}


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_class_counts_match_pandas(run_tables, threshold):
    inf, det = run_tables
    got = queries.class_counts(RunFrame.from_frames(inf, det), threshold)
    expected = det[det["score"] >= threshold].groupby(["label", "model"]).size()
    assert dict(zip(zip(got["label"], got["model"], strict=True), got["boxes"], strict=True)) == dict(expected)
    assert queries.labels_above(RunFrame.from_frames(inf, det), threshold) == sorted(
        det.loc[det["score"] >= threshold, "label"].unique()
    )


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_counts_above_match_the_figures_pandas_path(run_tables, threshold):
    inf, det = run_tables
    got = queries.counts_above(RunFrame.from_frames(inf, det), threshold)
    expected = count_points(inf, det, threshold)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False)


def test_mean_count_curve_matches_pandas(run_tables):
    inf, det = run_tables
    got = queries.mean_count_curve(RunFrame.from_frames(inf, det))
    expected = count_curves(det, inf)
    assert list(got) == list(expected)
    for model, (xs, ys) in expected.items():
        np.testing.assert_array_equal(got[model][0], xs)
        np.testing.assert_allclose(got[model][1], ys, rtol=0, atol=1e-12)


@pytest.mark.parametrize("width", [1, 2, 5])
def test_score_histogram_matches_numpy(run_tables, width):
    inf, det = run_tables
    got = queries.score_histogram(RunFrame.from_frames(inf, det), width)
    for model, part in got.groupby("model"):
        scores = det.loc[det["model"] == model, "score"].to_numpy()
        counts = [int(((scores >= lo) & (scores < lo + width / 100 - 1e-12)).sum()) for lo in part["score"]]
        counts[-1] += int((scores == 1.0).sum())
        # an edge like 0.57 is the double of 57/100: compare with the same `>=` the threshold uses
        edges = np.arange(0, 101, width) / 100
        exact = [int(((scores >= a) & ~(scores >= b)).sum()) for a, b in zip(edges[:-1], edges[1:], strict=True)]
        exact[-1] += int((scores == 1.0).sum())
        assert part["boxes"].tolist() == exact
        assert sum(counts) == len(scores)


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.57])
@pytest.mark.parametrize("classes", [None, ["cup"], ["dog", "person"]])
def test_boxes_and_image_boxes_are_the_stored_rows(run_tables, threshold, classes):
    inf, det = run_tables
    rf = RunFrame.from_frames(inf, det)
    keep = det["score"] >= threshold
    if classes:
        keep &= det["label"].isin(classes)
    expected = det[keep].sort_values("image_id", kind="stable").reset_index(drop=True)
    got = queries.boxes(rf, threshold, classes=classes).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)
    one = det["image_id"].iloc[0]
    pd.testing.assert_frame_equal(
        queries.image_boxes(rf, one).reset_index(drop=True), det[det["image_id"] == one].reset_index(drop=True)
    )


def test_a_session_keeps_only_the_latest_run_per_image_and_model():
    inf, det = random_run(3, runs=("r1", "r2"))
    rf = RunFrame.from_frames(inf, det)
    assert rf.n_boxes == len(latest_run(det))
    for threshold in (0.0, 0.5):
        pd.testing.assert_frame_equal(
            queries.counts_above(rf, threshold).reset_index(drop=True),
            count_points(inf, latest_run(det), threshold).reset_index(drop=True),
            check_dtype=False,
        )


@pytest.mark.parametrize(
    ("threshold", "k"), [(0.5, 50), (0.57, 57), (0.0, 0), (1.0, 100), (0.333, None), (0.575, None)]
)
def test_threshold_bin_only_on_the_grid(threshold, k):
    assert threshold_bin(threshold) == k


def _store_run(store: Store, run_id: str, inf: pd.DataFrame, det: pd.DataFrame, *, finish: bool) -> None:
    store.start_run(RunInfo(run_id, "2026-01-01T00:00:00+00:00", {"models": list(MODELS)}))
    store.add_records(run_id, inf.assign(run_id=run_id), det.assign(run_id=run_id))
    if finish:
        store.finish_run(run_id)


def _same(a: RunFrame, b: RunFrame) -> None:
    pd.testing.assert_frame_equal(a.rows(slice(None)), b.rows(slice(None)))
    np.testing.assert_array_equal(a.hist, b.hist)


def test_a_finished_run_gets_a_segment_equal_to_its_sqlite_rows(tmp_path):
    inf, det = random_run(4)
    store = Store(tmp_path / "store")
    _store_run(store, "run-a", inf, det, finish=True)
    assert (segment_dir(store, "run-a") / "detections.parquet").is_file()
    from_segment = load_run_frame(store, "run-a")
    expected = RunFrame.from_frames(inf.assign(run_id="run-a"), det.assign(run_id="run-a"))
    _same(from_segment, expected)
    pd.testing.assert_frame_equal(from_segment.inferences, expected.inferences)


def test_a_running_run_is_read_from_sqlite_as_it_grows(tmp_path):
    inf, det = random_run(5)
    store = Store(tmp_path / "store")
    half = inf["image_id"].isin(inf["image_id"].unique()[:15])
    _store_run(store, "run-b", inf[half], det[det["image_id"].isin(inf.loc[half, "image_id"])], finish=False)
    first = load_run_frame(store, "run-b")
    assert not segment_dir(store, "run-b").exists()
    store.add_records(
        "run-b",
        inf[~half].assign(run_id="run-b"),
        det[~det["image_id"].isin(inf.loc[half, "image_id"])].assign(run_id="run-b"),
    )
    grown = load_run_frame(store, "run-b")
    assert first.n_boxes < grown.n_boxes == len(det)
    store.finish_run("run-b")
    _same(load_run_frame(store, "run-b"), grown)


def test_a_stale_or_broken_segment_is_rebuilt_and_deleting_the_run_drops_it(tmp_path):
    inf, det = random_run(6)
    store = Store(tmp_path / "store")
    _store_run(store, "run-c", inf, det, finish=True)
    path = segment_dir(store, "run-c")
    (path / "detections.parquet").write_bytes(b"not parquet")
    _same(load_run_frame(store, "run-c"), RunFrame.from_frames(inf.assign(run_id="run-c"), det.assign(run_id="run-c")))
    assert (path / "detections.parquet").read_bytes()[:4] == b"PAR1"  # rewritten
    store.delete_run("run-c")
    assert not path.exists()


@pytest.mark.parametrize("with_null_label", [False, True])
def test_dictionary_encoded_chunks_give_the_frame_of_plain_strings(with_null_label):
    """Segments are read with dictionary-encoded string columns: chunks with different dictionaries (and a null
    label, decoded like the plain path) give the very frame, order of codes included, of plain string columns."""
    import pyarrow as pa

    inf, det = random_run(11, n_images=20, n_boxes=400)
    det = det.reset_index(drop=True)
    table = pa.Table.from_pandas(det[list(DETECTION_COLUMNS)], preserve_index=False)
    if with_null_label:
        table = table.set_column(4, "label", pa.array([None, *det["label"].iloc[1:]], type=pa.string()))
    half = len(det) // 2
    chunks = [table.slice(half).combine_chunks(), table.slice(0, half).combine_chunks()]  # second half first
    plain = pa.concat_tables(chunks)
    encoded = pa.concat_tables(
        [
            pa.Table.from_arrays(
                [
                    c.dictionary_encode() if pa.types.is_string(c.type) or pa.types.is_large_string(c.type) else c
                    for c in chunk.columns
                ],
                names=chunk.column_names,
            )
            for chunk in chunks
        ]
    )
    assert encoded.column("image_id").num_chunks == 2 and pa.types.is_dictionary(encoded.column("image_id").type)
    expected, got = RunFrame.from_arrow(inf, plain), RunFrame.from_arrow(inf, encoded)
    _same(got, expected)
    for name in ("image_ids", "labels", "run_ids", "label_ids"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))
    assert got.models == expected.models


# --- COCO evaluation from a RunFrame (core.analytics.evaluation; the dashboard's: tests/test_frame_evaluation.py) -----

GT_NAMES = ("person", "bicycle", "car", "motorcycle", "airplane")  # COCO ids 1-5: the random run's label ids


def random_gt(det: pd.DataFrame, seed: int) -> bytes:
    """A COCO instances file for the random run's images (every 7th left out): the first model's boxes above 0.3,
    moved a few pixels, as ground truth of their label id."""
    import json

    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for i in range(30):
        if i % 7 == 3:
            continue
        images.append({"id": 100 + i, "file_name": f"photo_{i}.jpg", "width": 640, "height": 480})
        mine = det[(det["image_id"] == f"img{i:03d}") & (det["model"] == MODELS[0]) & (det["score"] >= 0.3)]
        for row in mine.itertuples():
            x, y = max(0.0, row.x1 + rng.uniform(-4, 4)), max(0.0, row.y1 + rng.uniform(-4, 4))
            w, h = min(row.x2 - row.x1, 640 - x), min(row.y2 - row.y1, 480 - y)
            if w < 1 or h < 1:  # the random box lies (mostly) outside the image
                continue
            annotations.append({"id": len(annotations) + 1, "image_id": 100 + i, "category_id": int(row.label_id),
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})  # fmt: skip
    categories = [{"id": k + 1, "name": n, "supercategory": ""} for k, n in enumerate(GT_NAMES)]
    return json.dumps({"images": images, "annotations": annotations, "categories": categories}).encode()


@pytest.mark.slow
def test_evaluation_in_a_worker_process_gives_the_same_results():
    from core.analytics.evaluation import evaluate_all, variant_index
    from core.evaluate import load_ground_truth, with_images

    inf, det = random_run(3)
    rf = RunFrame.from_frames(inf, det)
    gt = load_ground_truth(random_gt(det, 3))
    jobs = []
    for model in MODELS[:2]:  # two workers at once: one process start each
        rows = inf[(inf["model"] == model) & (inf["error"] == "")]
        names = dict(zip(rows["image_id"], rows["image_name"], strict=True))
        jobs.append((with_images(gt, names), model, rf.columns(variant_index(rf, model, rows))))
    here, there = evaluate_all(jobs, workers=0), evaluate_all(jobs, workers=2)
    for a, b in zip(here, there, strict=True):
        assert (a.metrics.AP, a.metrics.AP50, a.metrics.per_class, a.error) == (
            b.metrics.AP, b.metrics.AP50, b.metrics.per_class, b.error,
        )  # fmt: skip
        np.testing.assert_array_equal(a.metrics.precision, b.metrics.precision)
        pd.testing.assert_frame_equal(a.matched, b.matched)


@pytest.mark.slow
def test_a_failing_evaluation_worker_says_why():
    from core.analytics.evaluation import evaluate_all
    from core.evaluate import load_ground_truth, with_images

    inf, det = random_run(4)
    rf = RunFrame.from_frames(inf, det)
    rows = inf[inf["model"] == MODELS[0]]
    gt = with_images(load_ground_truth(random_gt(det, 4)), dict(zip(rows["image_id"], rows["image_name"], strict=True)))
    assert gt.image_id_map  # a job is sent
    columns = rf.columns(slice(None)) | {"boxes": np.zeros(3)}  # one-dimensional boxes: the worker cannot make rows
    with pytest.raises(RuntimeError, match="evaluation worker failed: IndexError"):
        evaluate_all([(gt, MODELS[0], columns)], workers=1)


# --- finished evaluations kept on disk (core.analytics.evalcache) -------------------------------------------------------


def evaluation_jobs(seed: int, shift: float = 0.0) -> list:
    """evaluate_all's jobs for two models of a random run (`shift`: pixels added to the first GT box's x)."""
    import json

    from core.analytics.evaluation import variant_index
    from core.evaluate import load_ground_truth, with_images

    inf, det = random_run(seed)
    rf = RunFrame.from_frames(inf, det)
    doc = json.loads(random_gt(det, seed))
    doc["annotations"][0]["bbox"][0] += shift
    gt = load_ground_truth(json.dumps(doc).encode())
    jobs = []
    for model in MODELS[:2]:
        rows = inf[(inf["model"] == model) & (inf["error"] == "")]
        names = dict(zip(rows["image_id"], rows["image_name"], strict=True))
        jobs.append((with_images(gt, names), model, rf.columns(variant_index(rf, model, rows))))
    return jobs


def same_box_evals(got: list, want: list) -> None:
    for a, b in zip(got, want, strict=True):
        assert (a.metrics.AP, a.metrics.per_class, a.metrics.n_detections, a.error) == (
            b.metrics.AP, b.metrics.per_class, b.metrics.n_detections, b.error,
        )  # fmt: skip
        np.testing.assert_array_equal(a.metrics.precision, b.metrics.precision)
        np.testing.assert_array_equal(a.metrics.scores, b.metrics.scores)
        pd.testing.assert_frame_equal(a.matched, b.matched)


def refuse(*args, **kwargs):
    raise AssertionError("evaluated again")


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])  # 2: worker processes
def test_a_kept_evaluation_is_read_back_with_the_same_figures_instead_of_evaluated(tmp_path, monkeypatch, workers):
    from core.analytics import evaluation

    jobs = evaluation_jobs(5)
    first = evaluation.evaluate_all(jobs, workers=workers, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2  # one entry per model
    same_box_evals(first, evaluation.evaluate_all(jobs, workers=0))  # the cache changed no figure
    monkeypatch.setattr(evaluation, "evaluate_job", refuse)
    monkeypatch.setattr(evaluation, "_run_worker", refuse)
    same_box_evals(evaluation.evaluate_all(jobs, workers=workers, cache_dir=tmp_path), first)


@pytest.mark.parametrize(
    "change",
    ["ground truth box moved", "detection score", "max dets", "evaluator version"],
)
def test_anything_that_changes_a_figure_changes_the_key(change, monkeypatch):
    from dataclasses import replace

    from core.analytics import evalcache
    from core.analytics.evaluation import array_job

    gt, _, columns = evaluation_jobs(6)[0]
    job = array_job(gt, columns)
    key = evalcache.job_key(job, "faster-coco-eval 1.8.0")
    assert evalcache.job_key(array_job(gt, dict(columns)), "faster-coco-eval 1.8.0") == key  # same content, same key
    evaluator = "faster-coco-eval 1.8.0"
    if change == "ground truth box moved":
        other_gt = evaluation_jobs(6, shift=0.5)[0][0]
        job = array_job(other_gt, columns)
    elif change == "detection score":
        score = np.array(columns["score"], copy=True)
        score[0] = np.nextafter(score[0], 1.0)
        job = array_job(gt, columns | {"score": score})
    elif change == "max dets":
        job = replace(job, max_dets=(1, 10, 50))
    else:
        evaluator = "faster-coco-eval 1.8.1"
    assert evalcache.job_key(job, evaluator) != key


def test_an_unreadable_entry_is_evaluated_again_and_replaced(tmp_path):
    from core.analytics import evaluation

    jobs = evaluation_jobs(7)[:1]
    first = evaluation.evaluate_all(jobs, workers=0, cache_dir=tmp_path)
    (entry,) = tmp_path.glob("*.npz")
    entry.write_bytes(b"not an npz")
    same_box_evals(evaluation.evaluate_all(jobs, workers=0, cache_dir=tmp_path), first)
    same_box_evals(evaluation.evaluate_all(jobs, workers=0, cache_dir=tmp_path), first)
    assert entry.read_bytes()[:2] == b"PK"  # written again


def test_an_unwritable_cache_never_stops_an_evaluation(tmp_path):
    from core.analytics import evaluation

    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder would go")
    jobs = evaluation_jobs(8)[:1]
    same_box_evals(evaluation.evaluate_all(jobs, workers=0, cache_dir=blocker / "evaluations"),
                   evaluation.evaluate_all(jobs, workers=0))  # fmt: skip


def test_the_least_recently_used_entries_go_past_the_limit(tmp_path):
    import os

    from core.analytics import evalcache
    from core.analytics.evaluation import array_job
    from core.evalcore import evaluate_job

    gt, _, columns = evaluation_jobs(9)[0]
    result = evaluate_job(array_job(gt, columns))
    for k, key in enumerate(["a", "b", "c", "d"]):
        evalcache.save_entry(tmp_path, key, result, max_entries=10)
        os.utime(tmp_path / f"{key}.npz", (1000 + k, 1000 + k))
    assert evalcache.load_entry(tmp_path, "a") is not None  # read: now the most recently used
    evalcache.save_entry(tmp_path, "e", result, max_entries=3)
    assert sorted(p.stem for p in tmp_path.glob("*.npz")) == ["a", "d", "e"]


def test_an_imported_run_has_its_segment_at_once_equal_to_its_sqlite_rows(tmp_path):
    """`import` writes the columnar segment from the tables it read, so the first open reads no SQLite; a replaced
    run's segment is the new run's."""
    from core.store.segments import read_from_sqlite

    inf, det = random_run(7)
    source = Store(tmp_path / "source")
    _store_run(source, "run-i", inf, det, finish=True)
    zip_path = source.export_run("run-i", tmp_path / "run-i.zip")
    target = Store(tmp_path / "target")
    assert target.import_run(zip_path) == "run-i"
    assert (segment_dir(target, "run-i") / "version.json").is_file()
    sq_inf, sq_det, version = read_from_sqlite(target, "run-i")
    assert version == target.run_version("run-i")
    _same(load_run_frame(target, "run-i"), RunFrame.from_arrow(sq_inf, sq_det))

    fewer = inf["image_id"].isin(inf["image_id"].unique()[:10])
    _store_run(source, "run-j", inf[fewer], det[det["image_id"].isin(inf.loc[fewer, "image_id"])], finish=True)
    other = source.export_run("run-j", tmp_path / "run-j.zip")
    renamed = tmp_path / "renamed.zip"
    import zipfile

    with zipfile.ZipFile(other) as src, zipfile.ZipFile(renamed, "w") as dst:  # run-j's records as run-i's
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "run.json":
                data = data.replace(b"run-j", b"run-i")
            elif item.filename.endswith(".parquet"):
                frame = pd.read_parquet(io.BytesIO(data)).assign(run_id="run-i")
                buffer = io.BytesIO()
                frame.to_parquet(buffer, index=False)
                data = buffer.getvalue()
            dst.writestr(item, data)
    target.import_run(renamed, replace=True)
    sq_inf, sq_det, _ = read_from_sqlite(target, "run-i")
    _same(load_run_frame(target, "run-i"), RunFrame.from_arrow(sq_inf, sq_det))
    assert load_run_frame(target, "run-i").n_boxes == int(det["image_id"].isin(inf.loc[fewer, "image_id"]).sum())
