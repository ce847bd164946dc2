"""Named schema migrations, one record per (image, model) pair, bulk idempotent ingest and resume queries."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import DETECTION_COLUMNS, INFERENCE_COLUMNS, STORE_DB_NAME
from core.records import DetectionResult, RunInfo, detections_frame, inference_values, inferences_frame
from core.store import SCHEMA_VERSION, Store, StoreError
from core.store import schema as schema_module
from core.store.schema import MIGRATIONS, Migration
from tests.factories import detection_result

ROOT = Path(__file__).resolve().parent.parent
RUN = "20260101-000000-aaaaaa"
CREATED = "2026-01-01T00:00:00+00:00"
THRESHOLD = 0.5

# The v1 schema exactly as DetLens wrote it before migrations existed (frozen here on purpose: never import it).
V1_DDL = (
    """CREATE TABLE runs (run_id TEXT PRIMARY KEY, created_at TEXT NOT NULL, user TEXT NOT NULL DEFAULT '',
        settings TEXT NOT NULL DEFAULT '{}', environment TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'finished', 'failed')), finished_at TEXT)""",
    "CREATE TABLE inferences (run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE, image_id TEXT NOT NULL, "
    "image_name TEXT, width INTEGER, height INTEGER, model TEXT NOT NULL, weights TEXT, device TEXT, precision TEXT, "
    "batch_size INTEGER, preprocess_ms REAL, inference_ms REAL, postprocess_ms REAL, total_ms REAL, "
    "n_detections INTEGER, threshold REAL, error TEXT NOT NULL DEFAULT '', created_at TEXT)",
    "CREATE TABLE detections (run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE, "
    "image_id TEXT NOT NULL, model TEXT NOT NULL, label_id INTEGER, label TEXT, score REAL, "
    "x1 REAL, y1 REAL, x2 REAL, y2 REAL)",
    "CREATE INDEX inferences_run_image ON inferences (run_id, image_id)",
    "CREATE INDEX detections_run_image ON detections (run_id, image_id)",
    """CREATE TABLE images (image_id TEXT PRIMARY KEY, name TEXT NOT NULL, format TEXT NOT NULL DEFAULT '',
        suffix TEXT NOT NULL, path TEXT NOT NULL, bytes INTEGER NOT NULL, created_at TEXT NOT NULL)""",
    """CREATE TABLE run_images (run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        image_id TEXT NOT NULL REFERENCES images(image_id), name TEXT NOT NULL, PRIMARY KEY (run_id, image_id, name))""",
    """CREATE TABLE reviews (id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE, image_id TEXT NOT NULL,
        model_a TEXT NOT NULL DEFAULT '', model_b TEXT NOT NULL DEFAULT '', reviewer TEXT NOT NULL CHECK (reviewer != ''),
        verdict TEXT NOT NULL, note TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL)""",
    "CREATE INDEX reviews_run_image ON reviews (run_id, image_id, reviewer)",
    "PRAGMA user_version = 1",
)
V1_INFERENCE_COLUMNS = 18  # run_id ... created_at


# --- factories -----------------------------------------------------------------------------------------------------


def result(image: int = 0, model: str = "model_a", *, n: int = 2, error: str = "") -> DetectionResult:
    rng = np.random.default_rng(image * 31 + len(model))
    n = 0 if error else n
    xy = rng.uniform(0, 50, (n, 2))
    return detection_result(f"{image:016x}", f"img{image}.png", (64, 48), model=model, boxes=np.hstack([xy, xy + 5]),
                            scores=np.linspace(0.9, 0.2, n), error=error)  # fmt: skip


def v1_store(path: Path, rows: list[tuple[DetectionResult, str]]) -> Path:
    """A store as the pre-migration DetLens left it: the v1 DDL, one run, the given (result, created_at) records."""
    path.mkdir(parents=True)
    conn = sqlite3.connect(path / STORE_DB_NAME, isolation_level=None)
    for statement in V1_DDL:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO runs (run_id, created_at, settings, status) VALUES (?, ?, ?, 'finished')",
        (RUN, CREATED, '{"models": ["model_a", "model_b"]}'),
    )
    for r, created in rows:
        frame = inferences_frame([r], run_id=RUN, threshold=THRESHOLD, created_at=created)
        v1 = inference_values(r, RUN, THRESHOLD, created)[:V1_INFERENCE_COLUMNS]  # later columns came by migration
        conn.execute(f"INSERT INTO inferences VALUES ({', '.join('?' * V1_INFERENCE_COLUMNS)})", v1)
        assert len(frame) == 1
        for row in detections_frame([r], run_id=RUN).itertuples(index=False, name=None):
            conn.execute(f"INSERT INTO detections VALUES ({', '.join('?' * len(DETECTION_COLUMNS))})",
                         tuple(v.item() if hasattr(v, "item") else v for v in row))  # fmt: skip
    conn.close()
    return path


def pairs_of(store: Store) -> list[tuple[str, str, str]]:
    inf = store.load_run(RUN)[0]
    return list(zip(inf["image_id"], inf["model"], inf["created_at"], strict=True))


def started(store: Store) -> Store:
    store.start_run(RunInfo(RUN, CREATED, {"models": ["model_a", "model_b"]}))
    return store


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "store") as s:
        yield started(s)


# --- migrations ----------------------------------------------------------------------------------------------------


def test_a_v1_store_is_migrated_and_keeps_its_runs(tmp_path):
    results = [result(0), result(1, error="not an image"), result(0, "model_b", n=0)]
    path = v1_store(tmp_path / "s", [(r, CREATED) for r in results])
    with Store(path, create=False) as s:
        inf, det, info = s.load_run(RUN)
        pd.testing.assert_frame_equal(
            inf, inferences_frame(results, run_id=RUN, threshold=THRESHOLD, created_at=CREATED)
        )
        pd.testing.assert_frame_equal(det, detections_frame(results, run_id=RUN))
        assert info.settings == {"models": ["model_a", "model_b"]} and s.list_runs().loc[0, "status"] == "finished"
    conn = sqlite3.connect(path / STORE_DB_NAME)
    assert [n for (n,) in conn.execute("SELECT name FROM schema_migrations ORDER BY rowid")] == [
        m.name for m in MIGRATIONS
    ]
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 1 + len(MIGRATIONS)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "inferences_pair" in indexes


DUPLICATES = {
    # rows (result, created_at) -> the (image_id, model, created_at) kept, and boxes kept per model
    "duplicated pair without boxes keeps its latest row": (
        [(result(0, error="first try"), "t1"), (result(1), "t1"), (result(0, error="again"), "t2")],
        [(f"{1:016x}", "model_a", "t1"), (f"{0:016x}", "model_a", "t2")],
        2,
    ),
    "duplicated pair with boxes is removed wholly (resume measures it again)": (
        [(result(0), "t1"), (result(1), "t1"), (result(0), "t2")],
        [(f"{1:016x}", "model_a", "t1")],
        2,
    ),
    "no duplicates: nothing changes": (
        [(result(0), "t1"), (result(0, "model_b"), "t1")],
        [(f"{0:016x}", "model_a", "t1"), (f"{0:016x}", "model_b", "t1")],
        4,
    ),
}


@pytest.mark.parametrize(("rows", "kept", "boxes"), DUPLICATES.values(), ids=DUPLICATES.keys())
def test_unique_records_resolves_duplicates_of_old_stores(tmp_path, rows, kept, boxes):
    path = v1_store(tmp_path / "s", rows)
    with Store(path) as s:
        assert sorted(pairs_of(s)) == sorted(kept)
        det = s.load_run(RUN)[1]
        assert len(det) == boxes
        assert set(zip(det["image_id"], det["model"], strict=True)) <= {(i, m) for i, m, _ in kept}


def test_a_store_with_a_migration_this_code_does_not_know_is_refused(tmp_path):
    Store(tmp_path / "s").close()
    with sqlite3.connect(tmp_path / "s" / STORE_DB_NAME) as conn:
        conn.execute("INSERT INTO schema_migrations (name, applied_at) VALUES ('from_the_future', 'x')")
    with pytest.raises(StoreError, match="made by a newer DetLens.*from_the_future"):
        Store(tmp_path / "s")


def test_opening_again_applies_nothing_twice(tmp_path, monkeypatch):
    calls: list[str] = []
    counting = Migration("counting", lambda conn: calls.append("applied"))
    monkeypatch.setattr(schema_module, "MIGRATIONS", (*MIGRATIONS, counting))
    monkeypatch.setattr(schema_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    for _ in range(3):
        Store(tmp_path / "s").close()
    conn = sqlite3.connect(tmp_path / "s" / STORE_DB_NAME)
    assert calls == ["applied"]
    assert conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS) + 1
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_a_failing_migration_leaves_nothing_half_done(tmp_path, monkeypatch):
    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (x)")
        raise sqlite3.OperationalError("boom")

    monkeypatch.setattr(schema_module, "MIGRATIONS", (*MIGRATIONS, Migration("broken", broken)))
    monkeypatch.setattr(schema_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(sqlite3.OperationalError, match="boom"):
        Store(tmp_path / "s")
    conn = sqlite3.connect(tmp_path / "s" / STORE_DB_NAME)
    assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'half'").fetchone() is None
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_opening_a_fresh_store_waits_for_another_connections_lock_before_switching_to_wal(tmp_path):
    # SQLite answers "database is locked" at once (no busy handler) when WAL mode is set while another connection
    # holds a lock: the store must wait for it like any other writer, not call the store broken.
    path = tmp_path / "fresh"
    path.mkdir()
    holder = sqlite3.connect(path / STORE_DB_NAME, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE other_writer (x)")
    timer = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    timer.start()
    try:
        with Store(path) as store:
            assert store._conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        timer.join()
        holder.close()


@pytest.mark.slow
def test_threads_and_processes_opening_a_fresh_store_at_once_all_succeed(tmp_path):
    path = tmp_path / "fresh"
    code = "import sys; from core.store import Store; Store(sys.argv[1]).close(); print('ok')"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def open_it() -> None:
        barrier.wait()
        try:
            Store(path).close()
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [p.communicate(timeout=120)[0].strip() for p in procs] == ["ok", "ok"]
    conn = sqlite3.connect(path / STORE_DB_NAME)
    assert conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)


def test_a_second_record_of_a_pair_is_refused_and_changes_nothing(store):
    store.add_result(RUN, result(0), threshold=THRESHOLD, created_at="t1")
    with pytest.raises(StoreError, match="already has a record of image 0000000000000000 with model_a"):
        store.add_result(RUN, result(0, n=5), threshold=THRESHOLD, created_at="t2")
    inf, det, _ = store.load_run(RUN)
    assert pairs_of(store) == [(f"{0:016x}", "model_a", "t1")] and len(det) == 2
    store.add_result(RUN, result(0, "model_b"), threshold=THRESHOLD, created_at="t2")  # another model: fine
    assert len(store.load_run(RUN)[0]) == 2


# --- bulk ingest and resume ----------------------------------------------------------------------------------------

RESULTS = [result(i, m, n=i % 3) for i in range(3) for m in ("model_a", "model_b")] + [result(3, error="bad file")]


def tables(results: list[DetectionResult], run_id: str = RUN) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (
        inferences_frame(results, run_id=run_id, threshold=THRESHOLD, created_at=CREATED),
        detections_frame(results, run_id=run_id),
    )


@pytest.mark.parametrize("present", [0, 1, 4, len(RESULTS)], ids=lambda n: f"{n} pairs already stored")
def test_add_records_adds_only_the_missing_pairs_and_is_idempotent(store, present):
    for r in RESULTS[:present]:
        store.add_result(RUN, r, threshold=THRESHOLD, created_at=CREATED)
    assert store.add_records(RUN, *tables(RESULTS)) == len(RESULTS) - present
    assert store.add_records(RUN, *tables(RESULTS)) == 0  # the second time adds nothing
    inf, det, _ = store.load_run(RUN)
    expected_inf, expected_det = tables(RESULTS)
    pd.testing.assert_frame_equal(inf, expected_inf)
    key = ["image_id", "model", "score"]
    pd.testing.assert_frame_equal(
        det.sort_values(key, ignore_index=True), expected_det.sort_values(key, ignore_index=True)
    )


TABLE_REFUSALS = {
    "a pair twice": (lambda: tables([result(0), result(0)]), "pair twice"),
    "rows of another run": (lambda: tables([result(0)], run_id="other"), "another run"),
    "boxes without their record": (lambda: (tables([result(0)])[0], tables([result(1)])[1]), "no inferences row"),
}


@pytest.mark.parametrize(("make", "message"), TABLE_REFUSALS.values(), ids=TABLE_REFUSALS.keys())
def test_add_records_refuses_inconsistent_tables_and_writes_nothing(store, make, message):
    with pytest.raises(StoreError, match=message):
        store.add_records(RUN, *make())
    assert store.done_pairs(RUN) == set()


def test_add_records_needs_an_existing_run(store):
    with pytest.raises(StoreError, match="unknown run"):
        store.add_records("nope", *tables([result(0)], run_id="nope"))


def test_done_and_missing_pairs_tell_what_a_resume_still_has_to_do(store):
    for r in (result(0), result(1, "model_b"), result(2, error="bad file")):
        store.add_result(RUN, r, threshold=THRESHOLD, created_at=CREATED)
    ids = [f"{i:016x}" for i in range(3)]
    assert store.done_pairs(RUN) == {(ids[0], "model_a"), (ids[1], "model_b"), (ids[2], "model_a")}
    assert store.missing_pairs(RUN, [ids[2], ids[0], ids[1], ids[0]], ["model_a", "model_b"]) == [
        (ids[2], "model_b"),
        (ids[0], "model_b"),
        (ids[1], "model_a"),
    ]
    assert store.missing_pairs(RUN, ids[:1], ["model_a"]) == []
    with pytest.raises(StoreError, match="unknown run"):
        store.missing_pairs("nope", ids, ["model_a"])


def test_inference_values_follow_the_schema_columns():
    r = result(0)
    row = dict(zip(INFERENCE_COLUMNS, inference_values(r, RUN, 0.5, CREATED), strict=True))
    assert row == {
        "run_id": RUN, "image_id": r.image_id, "image_name": r.image_name, "width": 64, "height": 48,
        "model": "model_a", "weights": "untrained", "device": "cpu", "precision": "fp32", "batch_size": 1,
        "preprocess_ms": 1.0, "inference_ms": 10.0, "postprocess_ms": 0.5, "total_ms": 11.5, "n_detections": 1,
        "threshold": 0.5, "error": "", "created_at": CREATED, "runtime": "eager",
    }  # fmt: skip


# --- run names -----------------------------------------------------------------------------------------------------


def test_run_names_migration_gives_earlier_runs_their_default_name(tmp_path):
    path = v1_store(tmp_path / "s", [(result(0), CREATED), (result(1, "model_b"), CREATED)])
    conn = sqlite3.connect(path / STORE_DB_NAME)
    assert "name" not in {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    conn.close()
    with Store(path) as s:
        assert s.list_runs().loc[0, "name"] == "model_a vs model_b, 2 images, 1 Jan 2026 00:00"
        assert s.run_label(RUN) == "model_a vs model_b, 2 images, 1 Jan 2026 00:00"
    conn = sqlite3.connect(path / STORE_DB_NAME)
    assert conn.execute("SELECT name FROM runs").fetchall() == [("",)]  # not named: the default is made when listed
    assert "run_names" in {n for (n,) in conn.execute("SELECT name FROM schema_migrations")}


RENAMES = {
    "a name": ("baseline before the fp16 change", "baseline before the fp16 change"),
    "spaces and new lines folded": ("  two\n lines  ", "two lines"),
    "too long: cut": ("x" * 500, "x" * 120),
    "empty: the default again": ("", "model_a vs model_b, 0 images, 1 Jan 2026 00:00"),
}


@pytest.mark.parametrize(("name", "shown"), RENAMES.values(), ids=RENAMES.keys())
def test_a_renamed_run_keeps_its_name_through_export_and_import(store, tmp_path, name, shown):
    store.rename_run(RUN, name)
    assert store.run_label(RUN) == shown and store.list_runs().loc[0, "name"] == shown
    zip_path = store.export_run(RUN, tmp_path / "run.zip")
    with Store(tmp_path / "other") as other:
        other.import_run(zip_path)
        assert other.run_label(RUN) == shown


def test_renaming_an_unknown_run_is_refused(store):
    with pytest.raises(StoreError, match="unknown run"):
        store.rename_run("nope", "x")


NAMES = {
    "two models": (["a", "b"], 12, "2026-12-04T17:20:05+00:00", "a vs b, 12 images, 4 Dec 2026 17:20"),
    "one model, one image": (["a"], 1, "2026-01-31T09:05:00+00:00", "a, 1 image, 31 Jan 2026 09:05"),
    "three models": (["a", "b", "c"], 3, "2026-02-01T00:00:00+00:00", "a, b, c, 3 images, 1 Feb 2026 00:00"),
    "five models": (list("abcde"), 2, "2026-02-01T00:00:00+00:00", "a, b + 3 more, 2 images, 1 Feb 2026 00:00"),
    "a model twice, no date": (["a", "a"], 0, "not a date", "a, 0 images"),
}


@pytest.mark.parametrize(("models", "n", "created", "expected"), NAMES.values(), ids=NAMES.keys())
def test_default_run_names(models, n, created, expected):
    from core.records import run_name

    assert run_name(models, n, created) == expected


def test_a_submitted_job_is_named_by_its_models_and_images_unless_named(tmp_path):
    with Store(tmp_path / "s") as s:
        default = s.submit_job({"images": []}, settings={"models": ["model_a", "model_b"]})
        named = s.submit_job({"images": []}, settings={"models": ["model_a"]}, name="my  run")
        created = s.list_runs().set_index("run_id")["created_at"][default]
        day = created[8:10].lstrip("0")
        assert s.run_label(default).startswith("model_a vs model_b, 0 images, " + day)
        assert s.run_label(named) == "my run"
