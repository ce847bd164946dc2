"""The store's tables: the v1 base schema, then named migrations, each applied once per store.

Opening a store creates the v1 base schema when missing, then applies, in ONE write transaction each and in the
order of `MIGRATIONS`, every migration whose name is not yet in the `schema_migrations` table (a store made before
migrations existed, user_version 1 and no such table, simply has none applied). A store that records a migration this
code does not know was made by a newer DetLens and is refused. `PRAGMA user_version` is 1 + the migrations applied
(SCHEMA_VERSION for a store this code brought up to date), so an older DetLens, which reads up to its own version,
refuses a migrated store instead of writing into it.

Adding a schema change: write `_name(conn)` (idempotent where cheap: `IF NOT EXISTS`) and append
`Migration("name", _name)` to the END of `MIGRATIONS`; never rename, reorder or remove one that has shipped.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from core.config import DETECTION_COLUMNS, DETECTION_DTYPES, INFERENCE_COLUMNS, INFERENCE_DTYPES, RUNTIME_EAGER
from core.records import now_iso
from core.store.common import StoreError

BASE_VERSION = 1  # the schema of `_SCHEMA`, which stores made before migrations have
BASE_INFERENCE_COLUMNS = tuple(c for c in INFERENCE_COLUMNS if c != "runtime")  # v1's; "records_runtime" adds it
_SQL_TYPES = {"string": "TEXT", "Int64": "INTEGER", "int64": "INTEGER", "float64": "REAL"}


def _table_sql(name: str, columns: tuple[str, ...], dtypes: dict[str, str]) -> str:
    """A records table: the schema's columns in order, typed from their dtypes; run_id tied to `runs`."""
    defs = []
    for col in columns:
        sql = f"{col} {_SQL_TYPES[dtypes[col]]}"
        if col == "run_id":
            sql += " NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE"
        elif col in ("image_id", "model"):
            sql += " NOT NULL"
        elif col == "error":
            sql += " NOT NULL DEFAULT ''"
        defs.append(sql)
    return f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(defs)})"


_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        user TEXT NOT NULL DEFAULT '',
        settings TEXT NOT NULL DEFAULT '{}',
        environment TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'finished', 'failed')),
        finished_at TEXT
    )""",
    _table_sql("inferences", BASE_INFERENCE_COLUMNS, INFERENCE_DTYPES),
    _table_sql("detections", DETECTION_COLUMNS, DETECTION_DTYPES),
    "CREATE INDEX IF NOT EXISTS inferences_run_image ON inferences (run_id, image_id)",
    "CREATE INDEX IF NOT EXISTS detections_run_image ON detections (run_id, image_id)",
    """CREATE TABLE IF NOT EXISTS images (
        image_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        format TEXT NOT NULL DEFAULT '',
        suffix TEXT NOT NULL,
        path TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS run_images (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        image_id TEXT NOT NULL REFERENCES images(image_id),
        name TEXT NOT NULL,
        PRIMARY KEY (run_id, image_id, name)
    )""",
    """CREATE TABLE IF NOT EXISTS reviews (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        image_id TEXT NOT NULL,
        model_a TEXT NOT NULL DEFAULT '',
        model_b TEXT NOT NULL DEFAULT '',
        reviewer TEXT NOT NULL CHECK (reviewer != ''),
        verdict TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS reviews_run_image ON reviews (run_id, image_id, reviewer)",
)
_EXPECTED_COLUMNS = {"inferences": INFERENCE_COLUMNS, "detections": DETECTION_COLUMNS}


_MIGRATIONS_TABLE = "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)"


def canonicalise_reviews(conn: sqlite3.Connection, run_id: str | None = None) -> None:
    """Rewrite stored same-run rows whose pair is not in sorted order (stores and zips made before pairs were
    unordered); cross-run rows are written sorted."""
    where = "model_b != '' AND (model_a = '' OR model_b < model_a)" + (" AND run_id = ?" if run_id else "")
    if "run_b" in {row[1] for row in conn.execute("PRAGMA table_info(reviews)")}:
        where += " AND run_b = ''"
    conn.execute(
        "UPDATE reviews SET model_a = model_b, model_b = model_a, verdict = CASE verdict "
        "WHEN 'A better' THEN 'B better' WHEN 'B better' THEN 'A better' ELSE verdict END "
        f"WHERE {where}",
        (run_id,) if run_id else (),
    )


@dataclass(frozen=True)
class Migration:
    """A named schema change, applied once per store inside a write transaction (no COMMIT of its own).

    `rebuilds` marks a migration that rebuilds a parent table (SQLite changes a CHECK only by a table rebuild): it runs
    with foreign keys off (a DROP would otherwise cascade into the child rows), then `PRAGMA foreign_key_check` must
    find nothing before the transaction commits (SQLite's documented 12-step procedure).
    """

    name: str
    apply: Callable[[sqlite3.Connection], None]
    rebuilds: bool = False


def _unique_records(conn: sqlite3.Connection) -> None:
    """One inference row per (run_id, image_id, model): the base of "every (image, model) pair exactly once".
    Images without a content id (unreadable bytes: `image_id` "") are not pairs: two such files are two rows.

    Duplicates already there are resolved first (DetLens never wrote any for a run, but an imported zip could hold
    some). Detections carry no link to their inference row, so a duplicated pair's boxes cannot be told apart:
    - a duplicated pair WITHOUT detections (failed, or no box above the floor) keeps its latest row (highest rowid);
    - a duplicated pair WITH detections is removed wholly (rows and boxes): it then counts as missing, and resuming
      the run measures it again, rather than keeping boxes that may belong to another measurement.
    """
    dups = conn.execute(
        "SELECT run_id, image_id, model, MAX(rowid) FROM inferences WHERE image_id != '' "
        "GROUP BY run_id, image_id, model HAVING COUNT(*) > 1"
    ).fetchall()
    for run_id, image_id, model, latest in dups:
        pair = (run_id, image_id, model)
        where = "run_id = ? AND image_id = ? AND model = ?"
        if conn.execute(f"SELECT 1 FROM detections WHERE {where} LIMIT 1", pair).fetchone():
            conn.execute(f"DELETE FROM detections WHERE {where}", pair)
            conn.execute(f"DELETE FROM inferences WHERE {where}", pair)
        else:
            conn.execute(f"DELETE FROM inferences WHERE {where} AND rowid != ?", (*pair, latest))
    # Partial: an image whose bytes could not be read has no content id (""); each such file stays its own error row.
    conn.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS inferences_pair ON inferences (run_id, image_id, model) WHERE image_id != ''"
    )


def _reviews_pairs(conn: sqlite3.Connection) -> None:
    """Reviews per (image, pair, reviewer): pairs stored in sorted order (verdicts flipped to match), the reviewer's
    `identity` ("typed" for every earlier review: a name typed in, unverified) and an index on the new key."""

    columns = {row[1] for row in conn.execute("PRAGMA table_info(reviews)")}
    if "identity" not in columns:
        conn.execute("ALTER TABLE reviews ADD COLUMN identity TEXT NOT NULL DEFAULT 'typed'")
    canonicalise_reviews(conn)
    conn.execute("DROP INDEX IF EXISTS reviews_run_image")
    conn.execute(
        "CREATE INDEX IF NOT EXISTS reviews_pair_key ON reviews (run_id, image_id, model_a, model_b, reviewer, id)"
    )


def _reviews_cross_run(conn: sqlite3.Connection) -> None:
    """Pairs across two runs: `run_b`, the run of model_b ('' = model_b is of the same run: every earlier review), and
    the pair key index with it (core/store/reviews.py tells how a cross-run pair is stored)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(reviews)")}
    if "run_b" not in columns:
        conn.execute("ALTER TABLE reviews ADD COLUMN run_b TEXT NOT NULL DEFAULT ''")
    conn.execute("DROP INDEX IF EXISTS reviews_pair_key")
    conn.execute(
        "CREATE INDEX IF NOT EXISTS reviews_pair_key_runs "
        "ON reviews (run_id, run_b, image_id, model_a, model_b, reviewer, id)"
    )
    conn.execute("CREATE INDEX IF NOT EXISTS reviews_run_b ON reviews (run_b) WHERE run_b != ''")


def _records_runtime(conn: sqlite3.Connection) -> None:
    """Each inference row says which runtime made it (core.inference.runtimes); every run stored before runtimes existed ran
    eager. Series of one model under several runtimes are told apart by their name in `model` (core.inference.runtimes.
    series_name: `MODEL@RUNTIME[-PRECISION]`), so the unique (run_id, image_id, model) pair stays the key."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(inferences)")}
    if "runtime" not in columns:
        conn.execute(f"ALTER TABLE inferences ADD COLUMN runtime TEXT NOT NULL DEFAULT '{RUNTIME_EAGER}'")


JOB_STATUSES_SQL = "'queued', 'running', 'finished', 'failed', 'cancelled', 'interrupted'"
_OLD_STATUS_CHECK = re.compile(r"CHECK\s*\(\s*status\s+IN\s*\([^)]*\)\s*\)", re.IGNORECASE)
_JOBS_TABLE = """CREATE TABLE IF NOT EXISTS jobs (
        run_id TEXT PRIMARY KEY REFERENCES runs(run_id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        spec TEXT NOT NULL,
        submitted_by TEXT NOT NULL DEFAULT '',
        submitted_at TEXT NOT NULL,
        worker TEXT NOT NULL DEFAULT '',
        started_at REAL,
        heartbeat_at REAL,
        done_at_start INTEGER NOT NULL DEFAULT 0,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        message TEXT NOT NULL DEFAULT ''
    )"""
_WORKERS_TABLE = """CREATE TABLE IF NOT EXISTS workers (
        worker_id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        heartbeat_at REAL NOT NULL,
        job TEXT NOT NULL DEFAULT ''
    )"""


def _jobs(conn: sqlite3.Connection) -> None:
    """Runs become jobs: the runs table's status CHECK allows queued, cancelled and interrupted (a table rebuild,
    every row and column kept), and the `jobs` table (spec, submitter, order, heartbeat, cancel flag) and `workers`
    table (who is alive) are added. Runs made before keep their status; none of them is a job."""
    (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone()
    rebuilt, n = _OLD_STATUS_CHECK.subn(f"CHECK (status IN ({JOB_STATUSES_SQL}))", sql)
    if n != 1:
        raise StoreError(f"the runs table has no status CHECK this migration knows: {sql}")
    conn.execute("DROP TABLE IF EXISTS runs_rebuild")
    conn.execute(re.sub(r"^CREATE TABLE (IF NOT EXISTS )?\"?runs\"?", "CREATE TABLE runs_rebuild", rebuilt.strip()))
    columns = ", ".join(row[1] for row in conn.execute("PRAGMA table_info(runs)"))  # every column, added ones too
    conn.execute(f"INSERT INTO runs_rebuild ({columns}) SELECT {columns} FROM runs")
    conn.execute("DROP TABLE runs")
    conn.execute("ALTER TABLE runs_rebuild RENAME TO runs")
    conn.execute(_JOBS_TABLE)
    conn.execute("CREATE INDEX IF NOT EXISTS jobs_seq ON jobs (seq)")
    conn.execute(_WORKERS_TABLE)


def _run_names(conn: sqlite3.Connection) -> None:
    """A run's readable name (editable; '' = not named: its default name is made from its models, image count and
    date when listed, `core.records.run_name`). Every earlier run starts without one."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    if "name" not in columns:
        conn.execute("ALTER TABLE runs ADD COLUMN name TEXT NOT NULL DEFAULT ''")


MIGRATIONS: tuple[Migration, ...] = (
    Migration("unique_records", _unique_records),
    Migration("reviews_pairs", _reviews_pairs),
    Migration("reviews_cross_run", _reviews_cross_run),
    Migration("records_runtime", _records_runtime),
    Migration("jobs", _jobs, rebuilds=True),
    Migration("run_names", _run_names),
)
SCHEMA_VERSION = BASE_VERSION + len(MIGRATIONS)


def _applied(conn: sqlite3.Connection) -> set[str]:
    has_table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    return {name for (name,) in conn.execute("SELECT name FROM schema_migrations")} if has_table else set()


class OpenedStore(Protocol):
    """What `open_schema` needs of a store being opened: its folder, its connection and write transactions."""

    path: Path

    def _conn(self) -> sqlite3.Connection: ...

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...


def open_schema(store: OpenedStore) -> None:
    """Bring an opened store up to date (base schema, then missing migrations); refuse one from a newer DetLens or
    with other records columns. Safe when several threads or processes open the same store at once: each step
    re-checks under the write lock."""
    conn = store._conn()
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    unknown = sorted(_applied(conn) - {m.name for m in MIGRATIONS}) if version else []
    if version > SCHEMA_VERSION or unknown:
        made_by = f"migrations {', '.join(unknown)}" if unknown else f"schema version {version}"
        raise StoreError(
            f"the run store at {store.path} was made by a newer DetLens ({made_by}; this DetLens reads up to "
            f"schema version {SCHEMA_VERSION}): update DetLens"
        )
    if version < BASE_VERSION:
        with store._write() as w:
            if w.execute("PRAGMA user_version").fetchone()[0] < BASE_VERSION:  # another process may have won
                for statement in _SCHEMA:
                    w.execute(statement)
                w.execute(_MIGRATIONS_TABLE)
                w.execute(f"PRAGMA user_version = {BASE_VERSION}")
    for migration in MIGRATIONS:
        if migration.name in _applied(conn):
            continue
        if migration.rebuilds:
            conn.execute("PRAGMA foreign_keys = OFF")  # a no-op inside a transaction: set before BEGIN
        try:
            with store._write() as w:
                if migration.name in _applied(w):  # another process applied it meanwhile
                    continue
                w.execute(_MIGRATIONS_TABLE)
                migration.apply(w)
                if migration.rebuilds and w.execute("PRAGMA foreign_key_check").fetchone() is not None:
                    raise StoreError(f"migration {migration.name} of {store.path} broke a foreign key: not applied")
                w.execute("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)", (migration.name, now_iso()))
                (count,) = w.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()
                w.execute(f"PRAGMA user_version = {BASE_VERSION + count}")
        finally:
            if migration.rebuilds:
                conn.execute("PRAGMA foreign_keys = ON")
    for table, columns in _EXPECTED_COLUMNS.items():
        found = tuple(row[1] for row in conn.execute(f"PRAGMA table_info({table})"))
        if found != columns:
            raise StoreError(
                f"the run store at {store.path} has other {table} columns than this DetLens "
                f"({', '.join(found)}): it was made by another version"
            )
