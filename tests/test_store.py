"""The run store (core.store): schema, round trips, counts, images, reviews, concurrency, export/import."""

from __future__ import annotations

import io
import json
import math
import sqlite3
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.config import (
    DETECTION_COLUMNS,
    GALLERY_DIR,
    HEADLINE_MODELS,
    INFERENCE_COLUMNS,
    REVIEW_VERDICTS,
    STORE_DB_NAME,
    STORE_ENV,
)
from core.images import ImageSource, content_id
from core.records import DetectionResult, RunInfo, detections_frame, inferences_frame
from core.store import (
    REVIEW_COLUMNS,
    RUN_LIST_COLUMNS,
    SCHEMA_VERSION,
    Store,
    StoreError,
    default_store_dir,
    record_into,
)

ROOT = Path(__file__).resolve().parent.parent
RUN = "20260101-000000-aaaaaa"
CREATED = "2026-01-01T00:00:00+00:00"
THRESHOLD = 0.5


# --- factories -----------------------------------------------------------------------------------------------------


def image_id(i: int) -> str:
    return f"{i:016x}"


def make_result(
    image: int = 0,
    model: str = "model_a",
    *,
    n: int = 3,
    error: str = "",
    width: int = 100,
    height: int = 80,
    weights: str = "untrained",
    seed: int | None = None,
) -> DetectionResult:
    """A result with `n` seeded boxes (scores spread over the floor..1), or a failed one (NaN timings) with `error`."""
    rng = np.random.default_rng(image * 1000 + len(model) if seed is None else seed)
    n = 0 if error else n
    xy = rng.uniform(0, 50, (n, 2))
    boxes = np.hstack([xy, xy + rng.uniform(0, 40, (n, 2))]).astype(np.float32)
    labels = rng.integers(1, 91, n).astype(np.int64)
    timings = (math.nan,) * 3 if error else (1.5, 20.25, 0.75)
    return DetectionResult(
        image_id=image_id(image),
        image_name=f"img{image}.png",
        width=width,
        height=height,
        model=model,
        weights=weights,
        device="cpu",
        precision="fp32",
        batch_size=1,
        boxes=boxes,
        scores=rng.uniform(0.01, 1.0, n).astype(np.float32),
        labels=labels,
        label_names=tuple(f"class {label}" for label in labels),
        preprocess_ms=timings[0],
        inference_ms=timings[1],
        postprocess_ms=timings[2],
        error=error,
    )


def run_info(run_id: str = RUN, models: tuple[str, ...] = ("model_a", "model_b"), **settings) -> RunInfo:
    return RunInfo(run_id, CREATED, settings={"models": list(models), "device": "cpu", **settings}, environment={})


def png_bytes(seed: int, size: tuple[int, int] = (32, 24)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def filled(store: Store, results: list[DetectionResult], run_id: str = RUN, **info) -> Store:
    store.start_run(run_info(run_id, **info))
    for r in results:
        store.add_result(run_id, r, threshold=THRESHOLD, created_at=CREATED)
    return store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "store") as s:
        yield s


# --- schema --------------------------------------------------------------------------------------------------------


def test_a_new_store_has_the_versioned_schema_in_wal_mode(store):
    conn = sqlite3.connect(store.db_path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "inferences", "detections", "images", "run_images", "reviews"} <= tables
    columns = {t: tuple(r[1] for r in conn.execute(f"PRAGMA table_info({t})")) for t in ("inferences", "detections")}
    assert columns == {"inferences": INFERENCE_COLUMNS, "detections": DETECTION_COLUMNS}
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"inferences_run_image", "detections_run_image"} <= indexes
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.images_dir.is_dir() and store.list_runs().empty
    assert tuple(store.list_runs().columns) == RUN_LIST_COLUMNS


def test_reopening_keeps_everything(tmp_path):
    with Store(tmp_path / "s") as s:
        filled(s, [make_result(0), make_result(1)])
    with Store(tmp_path / "s", create=False) as again:
        assert len(again.load_run(RUN)[0]) == 2


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("PRAGMA user_version = 99", "update DetLens"),
        ("ALTER TABLE inferences ADD COLUMN extra TEXT", "other inferences columns"),
    ],
)
def test_a_store_from_another_version_is_refused(tmp_path, damage, message):
    Store(tmp_path / "s").close()
    with sqlite3.connect(tmp_path / "s" / STORE_DB_NAME) as conn:
        conn.execute(damage)
    with pytest.raises(StoreError, match=message):
        Store(tmp_path / "s")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "no run store"),
        (lambda p: (p.mkdir(), (p / STORE_DB_NAME).write_bytes(b"not a database, just text" * 100)), "not a DetLens"),
    ],
)
def test_opening_a_missing_or_foreign_store_is_a_clear_error(tmp_path, setup, message):
    setup(tmp_path / "s")
    with pytest.raises(StoreError, match=message):
        Store(tmp_path / "s", create=False)


def test_default_store_dir_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "team"))
    assert default_store_dir() == tmp_path / "team"
    monkeypatch.delenv(STORE_ENV)
    assert default_store_dir() == Path.home() / ".local" / "share" / "detlens"


# --- records round trip --------------------------------------------------------------------------------------------

ROUND_TRIPS = {
    "boxes": [make_result(0, n=5)],
    "no boxes": [make_result(0, n=0)],
    "failed image": [make_result(1, error="not an image: looks like a PDF document", width=0, height=0)],
    "unknown size": [make_result(2, width=0, height=0)],
    "two models, many images": [make_result(i, m, n=i % 4) for m in HEADLINE_MODELS for i in range(6)],
    "same image, two models": [make_result(3), make_result(3, "model_b")],
    "many boxes": [make_result(4, n=300)],
}


@pytest.mark.parametrize("results", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_load_run_equals_the_records_frames_of_the_same_results(store, results):
    filled(store, results)
    inf, det, info = store.load_run(RUN)
    expected_inf = inferences_frame(results, run_id=RUN, threshold=THRESHOLD, created_at=CREATED)
    pd.testing.assert_frame_equal(inf, expected_inf)
    pd.testing.assert_frame_equal(det, detections_frame(results, run_id=RUN))
    assert info == run_info()


def test_finish_run_keeps_created_at_and_takes_the_final_settings(store):
    filled(store, [make_result(0)])
    assert store.list_runs().loc[0, "status"] == "running"
    final = RunInfo("ignored", "2030-01-01", settings={"models": ["model_a"], "device": "cpu"}, environment={"x": 1})
    store.finish_run(RUN, info=final)
    row = store.list_runs().iloc[0]
    assert row["status"] == "finished" and row["finished_at"] and row["created_at"] == CREATED
    assert store.load_run(RUN)[2] == RunInfo(RUN, CREATED, final.settings, final.environment)
    store.finish_run(RUN, "failed")
    assert store.list_runs().loc[0, "status"] == "failed"


def test_list_runs_counts(store):
    filled(store, [make_result(i, m) for m in ("model_a", "model_b") for i in range(3)], "run-1")
    store.add_result("run-1", make_result(9, "model_a", error="broken"), threshold=THRESHOLD, created_at=CREATED)
    store.finish_run("run-1")
    store.start_run(RunInfo("run-2", "2026-02-01T00:00:00+00:00", settings={"models": ["model_c"]}), user="ana")
    store.add_result("run-2", make_result(0, "model_c", weights="default"), threshold=THRESHOLD, created_at=CREATED)
    store.add_review("run-1", image_id(0), "ana", "A better")
    store.add_review("run-1", image_id(0), "ana", "both fine")  # the same reviewer again: still one review
    store.add_review("run-1", image_id(1), "bo", "both wrong")
    store.start_run(RunInfo("run-3", "2026-03-01T00:00:00+00:00"))  # nothing recorded yet
    runs = store.list_runs().set_index("run_id")
    assert list(runs.index) == ["run-3", "run-2", "run-1"]  # newest first
    assert runs.loc["run-1", ["n_inferences", "n_errors", "n_images", "n_reviews"]].tolist() == [7, 1, 4, 2]
    assert runs.loc["run-1", "models"] == "model_a,model_b" and runs.loc["run-1", "status"] == "finished"
    assert bool(runs.loc["run-1", "untrained"]) and not bool(runs.loc["run-2", "untrained"])
    assert runs.loc["run-2", "user"] == "ana" and runs.loc["run-2", "status"] == "running"
    assert runs.loc["run-3", ["n_inferences", "n_images", "n_reviews"]].tolist() == [0, 0, 0]
    assert runs["n_inferences"].dtype == "int64" and runs["status"].dtype == "string"
    # the cheap per-run version agrees with the listing
    for run_id in runs.index:
        assert store.run_version(run_id) == (runs.loc[run_id, "status"], runs.loc[run_id, "n_inferences"])
    with pytest.raises(StoreError, match="unknown run"):
        store.run_version("nope")


def test_delete_run_removes_its_rows_and_reviews(store):
    filled(store, [make_result(0), make_result(1)])
    store.add_review(RUN, image_id(0), "ana", "both fine")
    store.delete_run(RUN)
    assert store.list_runs().empty
    conn = sqlite3.connect(store.db_path)
    assert all(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] == 0 for t in ("inferences", "detections"))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.add_result("nope", make_result(), threshold=0.5, created_at=CREATED), "unknown run 'nope'"),
        (lambda s: s.load_run("nope"), "unknown run"),
        (lambda s: s.finish_run("nope"), "unknown run"),
        (lambda s: s.reviews("nope"), "unknown run"),
        (lambda s: s.delete_run("nope"), "unknown run"),
        (lambda s: s.export_run("nope", "x.zip"), "unknown run"),
        (lambda s: s.finish_run(RUN, "done"), "unknown run status"),
        (lambda s: s.start_run(run_info()), "already exists"),
        (lambda s: s.start_run(run_info("../etc")), "invalid run id"),
        (lambda s: s.start_run(run_info("")), "invalid run id"),
    ],
)
def test_store_errors_are_clear(store, call, message):
    filled(store, [make_result(0)])
    with pytest.raises(StoreError, match=message):
        call(store)
    assert len(store.load_run(RUN)[0]) == 1  # nothing half-done


# --- images --------------------------------------------------------------------------------------------------------


def test_put_image_keeps_bytes_once_by_content_hash(store):
    store.start_run(run_info())
    data = png_bytes(1)
    first = store.put_image(ImageSource.from_bytes("holiday.jpg", data), run_id=RUN)  # named .jpg, holds a PNG
    again = store.put_image(ImageSource("copy.png", data=data), run_id=RUN)
    assert first == again == content_id(data)
    assert [p.name for p in store.images_dir.iterdir()] == [f"{first}.png"]  # the suffix comes from the content
    source = store.run_images(RUN)[first]  # listed under the name it was first put with
    assert source.read() == data and source.name == "holiday.jpg"
    assert source.load().ok and source.image_id == first
    assert {k: v.name for k, v in store.run_images(RUN).items()} == {first: "holiday.jpg"}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (ImageSource("empty.png", data=b""), ""),
        (ImageSource("gone.png", path=Path("/nonexistent/gone.png")), ""),
        (ImageSource("notes.png", data=b"just text"), ".bin"),
        (ImageSource.from_path(GALLERY_DIR / "cat.jpg"), ".jpg"),
    ],
    ids=["empty", "unreadable", "not an image", "gallery photo"],
)
def test_put_image_odd_sources(store, source, expected):
    got = store.put_image(source)
    if not expected:
        assert got == "" and not list(store.images_dir.iterdir())
    else:
        assert (store.images_dir / f"{got}{expected}").read_bytes() == source.read()


# --- reviews -------------------------------------------------------------------------------------------------------


def test_the_latest_review_per_image_and_reviewer_wins(store):
    filled(store, [make_result(i, m) for m in ("model_a", "model_b") for i in range(2)])
    store.add_review(RUN, image_id(0), "ana", "A better", "the dog")
    store.add_review(RUN, image_id(0), "bo", "both wrong")
    store.add_review(RUN, image_id(0), "ana", "B better", "  on second thought  ")
    store.add_review(RUN, image_id(1), "ana", "both fine", model_a="model_b", model_b="model_a")
    current = store.reviews(RUN)
    assert tuple(current.columns) == REVIEW_COLUMNS
    assert current[["image_id", "reviewer", "verdict", "note"]].values.tolist() == [
        [image_id(0), "ana", "B better", "on second thought"],
        [image_id(0), "bo", "both wrong", ""],
        [image_id(1), "ana", "both fine", ""],
    ]
    assert current[["model_a", "model_b"]].values.tolist()[0] == ["model_a", "model_b"]  # the run's first two
    assert current[["model_a", "model_b"]].values.tolist()[2] == ["model_a", "model_b"]  # a pair is unordered
    assert store.reviews(RUN, history=True)["verdict"].tolist() == ["A better", "both wrong", "B better", "both fine"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"verdict": "great"}, "unknown verdict 'great'"),
        ({"verdict": "a better"}, "unknown verdict"),
        ({"reviewer": ""}, "needs a reviewer"),
        ({"reviewer": "   \n "}, "needs a reviewer"),
        ({"image": "f" * 16}, "is not in run"),
        ({"image": ""}, "is not in run"),
        ({"model_a": "yolo"}, "model 'yolo' is not in run"),
        ({"model_a": "model_a", "model_b": "model_a"}, "needs two different models"),
        ({"run_id": "nope"}, "unknown run"),
    ],
)
def test_review_validation(store, kwargs, message):
    filled(store, [make_result(0, "model_a"), make_result(0, "model_b")])
    args = {"run_id": RUN, "image": image_id(0), "reviewer": "ana", "verdict": "A better"} | kwargs
    models = {k: args.pop(k) for k in ("model_a", "model_b") if k in args}
    with pytest.raises(StoreError, match=message):
        store.add_review(args["run_id"], args["image"], args["reviewer"], args["verdict"], **models)
    assert store.reviews(RUN).empty


def test_a_one_model_run_takes_only_both_verdicts(store):
    filled(store, [make_result(0)], models=("model_a",))
    with pytest.raises(StoreError, match="needs two different models"):
        store.add_review(RUN, image_id(0), "ana", "A better")
    for verdict in ("both wrong", "both fine"):
        store.add_review(RUN, image_id(0), "ana", verdict)
    assert store.reviews(RUN)["verdict"].tolist() == ["both fine"]
    assert set(REVIEW_VERDICTS) == {"A better", "B better", "both wrong", "both fine"}


# --- concurrency ---------------------------------------------------------------------------------------------------


def test_threads_writing_at_once_lose_nothing(store):
    store.start_run(run_info(models=tuple(f"m{t}" for t in range(8))))
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(10):
                store.add_result(RUN, make_result(i, f"m{t}"), threshold=THRESHOLD, created_at=CREATED)
                store.add_review(RUN, image_id(i), f"reviewer {t}", REVIEW_VERDICTS[(t + i) % 4])
                store.list_runs()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    inf, det, _ = store.load_run(RUN)
    assert len(inf) == 80 and len(det) == 80 * 3
    assert len(store.reviews(RUN)) == 80 and len(store.reviews(RUN, history=True)) == 80


WORKER = """
import sys
from core.store import Store
from tests.test_store import image_id, make_result
store, run_id, w = Store(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for i in range(15):
    store.add_result(run_id, make_result(i, f"p{w}"), threshold=0.5, created_at="t")
    store.add_review(run_id, image_id(i), f"proc {w}", "both fine")
"""


@pytest.mark.slow
def test_processes_writing_at_once_lose_nothing(store):
    store.start_run(run_info())
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(store.path), RUN, str(w)], cwd=ROOT, stderr=subprocess.PIPE)
        for w in range(3)
    ]
    for i in range(15):  # this process writes at the same time
        store.add_result(RUN, make_result(i, "main"), threshold=THRESHOLD, created_at=CREATED)
        store.add_review(RUN, image_id(i), "main", "both wrong")
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    inf, det, _ = store.load_run(RUN)
    assert inf.groupby("model").size().to_dict() == {"main": 15, "p0": 15, "p1": 15, "p2": 15}
    assert len(det) == 60 * 3 and len(store.reviews(RUN)) == 60


# --- export / import -----------------------------------------------------------------------------------------------


def exported(store: Store, tmp_path: Path) -> Path:
    results = [make_result(i, m, n=i) for m in ("model_a", "model_b") for i in range(3)]
    results.append(make_result(7, "model_a", error="decode failed"))
    filled(store, results, user="ana")
    for i in range(3):
        store.put_image(ImageSource.from_bytes(f"photo {i}.png", png_bytes(i)), run_id=RUN)
    store.add_review(RUN, image_id(0), "ana", "A better", "sharper boxes")
    store.add_review(RUN, image_id(0), "ana", "B better")
    store.add_review(RUN, image_id(1), "bo", "both wrong")
    store.finish_run(RUN)
    return store.export_run(RUN, tmp_path / "out" / "run.zip")


def test_export_then_import_into_an_empty_store_gives_equal_tables_and_images(store, tmp_path):
    zip_path = exported(store, tmp_path)
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
    images = {f"images/{content_id(png_bytes(i))}.png" for i in range(3)}
    assert (
        names == {"inferences.parquet", "detections.parquet", "reviews.parquet", "run.json", "manifest.json"} | images
    )
    with Store(tmp_path / "other") as other:
        assert other.import_run(zip_path) == RUN
        for mine, theirs in zip(store.load_run(RUN)[:2], other.load_run(RUN)[:2], strict=True):
            pd.testing.assert_frame_equal(mine, theirs)
        assert other.load_run(RUN)[2] == store.load_run(RUN)[2]
        pd.testing.assert_frame_equal(other.reviews(RUN), store.reviews(RUN))
        pd.testing.assert_frame_equal(other.reviews(RUN, history=True), store.reviews(RUN, history=True))
        pd.testing.assert_frame_equal(other.list_runs(), store.list_runs())
        theirs = other.run_images(RUN)
        assert {k: (v.name, v.read()) for k, v in theirs.items()} == {
            content_id(png_bytes(i)): (f"photo {i}.png", png_bytes(i)) for i in range(3)
        }
        with pytest.raises(StoreError, match="already exists"):
            other.import_run(zip_path)
        other.add_review(RUN, image_id(2), "cy", "both fine")
        assert other.import_run(zip_path, replace=True) == RUN  # replaced as a whole: cy's review is gone
        pd.testing.assert_frame_equal(other.reviews(RUN), store.reviews(RUN))


def evil_zip(path: Path, entries: dict[str, bytes], base: Path | None = None) -> Path:
    """A zip holding a valid export's entries (when `base` is given) plus/overridden by `entries`."""
    with zipfile.ZipFile(path, "w") as zf:
        if base is not None:
            with zipfile.ZipFile(base) as good:
                for name in good.namelist():
                    if name not in entries:
                        zf.writestr(name, good.read(name))
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return path


def other_run_rows(base: Path) -> bytes:
    with zipfile.ZipFile(base) as zf:
        df = pd.read_parquet(io.BytesIO(zf.read("inferences.parquet")))
    buf = io.BytesIO()
    df.assign(run_id="someone-else").to_parquet(buf)
    return buf.getvalue()


BAD_ZIPS = {
    "parent entry": ({"../evil": b"x"}, "refused entry '../evil'"),
    "nested parent": ({"images/../../evil.png": b"x"}, "refused entry"),
    "absolute": ({"/tmp/evil": b"x"}, "refused entry '/tmp/evil'"),
    "windows drive": ({"C:/evil": b"x"}, "refused entry"),
    "backslash parent": ({"..\\evil": b"x"}, "refused entry"),
    "no run.json": ({"inferences.parquet": b""}, "no run.json"),
    "image not matching its name": ({"images/0123456789abcdef.png": b"fake"}, "does not hold the image"),
    "broken run.json": ({"run.json": b"{not json"}, "not a DetLens run zip"),
    "rows of another run": ({"inferences.parquet": "other-run"}, "rows of another run"),
    "broken parquet": ({"detections.parquet": b"PAR1 nope"}, "not a DetLens run zip"),
}


@pytest.mark.parametrize(("entries", "message"), BAD_ZIPS.values(), ids=BAD_ZIPS.keys())
def test_import_refuses_bad_zips(store, tmp_path, entries, message):
    with Store(tmp_path / "source") as source:
        base = exported(source, tmp_path)
    entries = {k: other_run_rows(base) if v == "other-run" else v for k, v in entries.items()}
    bad = evil_zip(tmp_path / "bad.zip", entries, None if "no run.json" in message else base)
    with pytest.raises(StoreError, match=message):
        store.import_run(bad)
    assert store.list_runs().empty and not list(store.images_dir.iterdir())
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "not a DetLens run zip"), (b"PK\x03\x04 truncated", "not a DetLens run zip"), (None, "not a DetLens")],
    ids=["empty file", "truncated", "missing file"],
)
def test_import_refuses_what_is_not_a_zip(store, tmp_path, content, message):
    path = tmp_path / "x.zip"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(StoreError, match=message):
        store.import_run(path)


def test_import_caps_the_uncompressed_size(store, tmp_path):
    with Store(tmp_path / "source") as source:
        base = exported(source, tmp_path)
    bomb = evil_zip(tmp_path / "bomb.zip", {"padding.bin": b"\0" * 2_000_000}, base)
    with pytest.raises(StoreError, match="more than 1 MB uncompressed"):
        store.import_run(bomb, max_bytes=1024**2)
    assert store.import_run(base, max_bytes=1024**2) == RUN


# --- runner hook ---------------------------------------------------------------------------------------------------


def test_record_into_stores_a_real_run_as_it_goes(store, tmp_path):
    from core.execution.runner import RunSettings, run

    sources = [ImageSource.from_path(GALLERY_DIR / n) for n in ("cat.jpg", "coffee.jpg")]
    sources.append(ImageSource.from_bytes("notes.png", b"just text"))  # a failed image: a record, no box
    store.start_run(RunInfo("real-run", CREATED))
    seen: list[int] = []
    record = record_into(store, "real-run", 0.3, created_at=CREATED, sources=sources)

    def on_result(result, done, total):
        record(result, done, total)
        seen.append(len(store.load_run("real-run")[0]))  # already in the store when the callback returns

    settings = RunSettings(models=[HEADLINE_MODELS[1]], default_weights="untrained", threshold=0.3, warmup=0)
    output = run(sources, settings, run_id="real-run", on_result=on_result)
    store.finish_run("real-run", info=output.info)
    inf, det, info = store.load_run("real-run")
    pd.testing.assert_frame_equal(inf, output.inferences.assign(created_at=pd.array([CREATED] * 3, dtype="string")))
    pd.testing.assert_frame_equal(det, output.detections)
    assert seen == [1, 2, 3] and info.settings == output.info.settings
    kept = store.run_images("real-run")
    assert sorted(v.name for v in kept.values()) == ["cat.jpg", "coffee.jpg", "notes.png"]
    assert json.loads(info.to_json())["environment"]["torch"]
