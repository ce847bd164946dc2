"""The store's folder and SQLite connections: one per thread and process, read and write transactions."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.config import STORE_BUSY_TIMEOUT_S, STORE_DB_NAME
from core.records import RunInfo
from core.store.common import StoreError, loads_json
from core.store.schema import open_schema


@dataclass(frozen=True)
class RunRow:
    """One row of the `runs` table (settings and environment as stored: JSON text)."""

    run_id: str
    created_at: str
    user: str
    settings: str
    environment: str
    status: str
    finished_at: str | None

    def info(self) -> RunInfo:
        return RunInfo(self.run_id, self.created_at, loads_json(self.settings), loads_json(self.environment))


def _use_wal(conn: sqlite3.Connection) -> None:
    """Put the database in WAL mode (it stays so: later connections find it set). Switching takes an exclusive
    lock and SQLite answers "database is locked" at once, without its busy handler, while another connection of a
    fresh store holds a lock, so retry until the busy timeout."""
    deadline = time.monotonic() + STORE_BUSY_TIMEOUT_S
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class StoreBase:
    """A data folder of runs. Safe to share between threads (one SQLite connection each) and processes.

    `Store(path)` creates the folder and the database when missing (`create=False`: a missing store is a
    StoreError instead), then brings the schema up to date (`core.store.schema`). Every method that names a run
    raises StoreError for an unknown one.
    """

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path).expanduser()
        self.db_path = self.path / STORE_DB_NAME
        self.images_dir = self.path / "images"
        if not self.db_path.is_file():
            if not create:
                raise StoreError(f"no run store at {self.path}")
            self.path.mkdir(parents=True, exist_ok=True)
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        open_schema(self)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def __enter__(self):  # noqa: ANN204 (returns the Store subclass)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.db_path, timeout=STORE_BUSY_TIMEOUT_S, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(STORE_BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            _use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.db_path} is not a DetLens run store: {exc}") from exc
        return conn

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (a new one after a fork: SQLite connections must not cross processes)."""
        local = self._local
        if getattr(local, "conn", None) is None or local.pid != os.getpid():
            local.conn = self._connect()
            local.pid = os.getpid()
        return local.conn

    def close(self) -> None:
        """Close this thread's connection (other threads' connections close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, the write lock taken at once (waits up to busy_timeout for another writer)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every SELECT inside sees the same snapshot, whatever writers do meanwhile."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def _require_run(self, conn: sqlite3.Connection, run_id: str) -> RunRow:
        row = conn.execute(
            "SELECT run_id, created_at, user, settings, environment, status, finished_at FROM runs WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            raise StoreError(f"unknown run {run_id!r} in {self.path}")
        return RunRow(*row)

    # -- what every part reads of a run, inside its own transaction --

    def _run_models(self, conn: sqlite3.Connection, run_id: str) -> list[str]:
        names = [str(m) for m in loads_json(self._require_run(conn, run_id).settings).get("models", []) or []]
        for (m,) in conn.execute("SELECT DISTINCT model FROM inferences WHERE run_id = ? ORDER BY rowid", (run_id,)):
            if m not in names:
                names.append(m)
        return names

    def _done_pairs(self, conn: sqlite3.Connection, run_id: str) -> set[tuple[str, str]]:
        self._require_run(conn, run_id)
        sql = "SELECT image_id, model FROM inferences WHERE run_id = ? AND image_id != ''"
        return set(conn.execute(sql, (run_id,)).fetchall())
