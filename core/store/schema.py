"""The store's tables (the v1 base schema) and bringing an opened store up to date."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.config import DETECTION_COLUMNS, DETECTION_DTYPES, INFERENCE_COLUMNS, INFERENCE_DTYPES
from core.store.common import StoreError

if TYPE_CHECKING:
    from core.store.connection import StoreBase

SCHEMA_VERSION = 1
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
    _table_sql("inferences", INFERENCE_COLUMNS, INFERENCE_DTYPES),
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


def open_schema(store: StoreBase) -> None:
    """Create the schema of a new store; refuse one from a newer DetLens or with other records columns."""
    conn = store._conn()
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the run store at {store.path} has schema version {version}; this DetLens reads up to "
            f"{SCHEMA_VERSION}: update DetLens"
        )
    if version < SCHEMA_VERSION:
        with store._write() as w:
            if w.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:  # another process may have won
                for statement in _SCHEMA:
                    w.execute(statement)
                w.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    for table, columns in _EXPECTED_COLUMNS.items():
        found = tuple(row[1] for row in conn.execute(f"PRAGMA table_info({table})"))
        if found != columns:
            raise StoreError(
                f"the run store at {store.path} has other {table} columns than this DetLens "
                f"({', '.join(found)}): it was made by another version"
            )
