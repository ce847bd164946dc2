"""The persistent run store: every run's two tables, settings, images and team reviews in one data folder.

Layout: `<folder>/detlens.sqlite` (runs, inferences, detections, images, run_images, reviews) and
`<folder>/images/<image_id><suffix>` (each image's bytes once, named by content hash). The folder is `$DETLENS_STORE`,
else `~/.local/share/detlens` (`default_store_dir`).

Why SQLite (the standard library's `sqlite3`): nothing to install; one file to copy or back up; in WAL mode readers
never block the writer nor the writer the readers, so the dashboard lists and loads runs while `python -m core detect`
writes one; and a transaction per record makes each (image, model) result all-or-nothing, so a killed process loses
at most the record in flight and never leaves half of one. DuckDB would be faster for analytics (columnar), but it
allows a single writer process per file (the CLI and the dashboard could not both open the store for writing) and
adds a dependency; the tables here are small enough to load into pandas, which does the analytics.

Concurrency: one connection per thread and process (`threading.local`, reopened after a fork), `journal_mode=WAL`,
`synchronous=NORMAL` (a commit survives a process crash; only an OS crash or power loss may lose the last commits),
`busy_timeout` so that concurrent writers wait for each other instead of failing, foreign keys on. Writes take the
write lock up front (`BEGIN IMMEDIATE`); reads of several tables run in one read transaction (one snapshot).

The `inferences` and `detections` tables have exactly the columns of `core.config.INFERENCE_COLUMNS` /
`DETECTION_COLUMNS` (SQL types from their dtypes); `load_run` gives them back with the schema's dtypes, equal to what
`core.records` builds from the same results. The schema is versioned with `PRAGMA user_version`.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import json
import os
import re
import secrets
import sqlite3
import threading
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.config import (
    DEFAULT_STORE_DIR,
    DETECTION_COLUMNS,
    DETECTION_DTYPES,
    INFERENCE_COLUMNS,
    INFERENCE_DTYPES,
    MAX_IMAGE_BYTES,
    MAX_IMPORT_BYTES,
    REVIEW_VERDICTS,
    STORE_BUSY_TIMEOUT_S,
    STORE_DB_NAME,
    STORE_ENV,
)
from core.images import ImageSource, content_id
from core.records import RunInfo, coerce_detections, coerce_inferences, now_iso

if TYPE_CHECKING:
    from core.engine import DetectionResult

SCHEMA_VERSION = 1
RUN_STATUSES: tuple[str, ...] = ("running", "finished", "failed")
REVIEW_COLUMNS: tuple[str, ...] = (
    "run_id", "image_id", "model_a", "model_b", "reviewer", "verdict", "note", "created_at",
)  # fmt: skip
RUN_LIST_COLUMNS: tuple[str, ...] = (
    "run_id", "created_at", "user", "status", "finished_at", "models", "device", "n_inferences", "n_errors",
    "n_images", "n_reviews", "untrained",
)  # fmt: skip
EXPORT_FORMAT = "detlens-run"
EXPORT_VERSION = 1
MAX_REVIEWER_CHARS = 80
MAX_NOTE_CHARS = 2000
MAX_ZIP_ENTRIES = 100_000

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_ZIP_IMAGE = re.compile(r"images/([0-9a-f]{16})(\.[a-z0-9]{1,5})")
_SQL_TYPES = {"string": "TEXT", "Int64": "INTEGER", "int64": "INTEGER", "float64": "REAL"}
# Pillow format -> the suffix a stored copy gets (the format is decided by content, never by the file name).
_FORMAT_SUFFIX = {
    "JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp", "PPM": ".ppm",
    "ICO": ".ico", "TGA": ".tga", "MPO": ".jpg", "AVIF": ".avif", "HEIF": ".heic",
}  # fmt: skip


class StoreError(Exception):
    """A clear, one-line reason: unknown run, bad verdict, bad zip, a store from a newer DetLens..."""


def default_store_dir() -> Path:
    """`$DETLENS_STORE` when set, else `~/.local/share/detlens`."""
    value = os.environ.get(STORE_ENV, "").strip()
    return Path(value).expanduser() if value else DEFAULT_STORE_DIR


def current_user() -> str:
    """The login name of this process ("" when the system cannot tell)."""
    try:
        return getpass.getuser()
    except Exception:  # no USER/LOGNAME and no passwd entry (some containers)
        return ""


# --- schema --------------------------------------------------------------------------------------------------------


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


# --- values ----------------------------------------------------------------------------------------------------------


def _py(value: object) -> object:
    """A value sqlite3 can bind: numpy scalars to Python, NA/NaN to NULL."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:  # NaN
        return None
    return value


def _inference_row(result: DetectionResult, run_id: str, threshold: float, created_at: str) -> tuple:
    """The values of `records.inferences_frame` for one result, in INFERENCE_COLUMNS order.

    Built here without a DataFrame (a few microseconds, not milliseconds, per record); tests check that `load_run`
    equals `records.inferences_frame` for the same results, so the two cannot drift apart unnoticed.
    """
    values = {
        "run_id": run_id,
        "image_id": result.image_id,
        "image_name": result.image_name,
        "width": result.width or None,
        "height": result.height or None,
        "model": result.model,
        "weights": result.weights,
        "device": result.device,
        "precision": result.precision,
        "batch_size": int(result.batch_size),
        "preprocess_ms": result.preprocess_ms,
        "inference_ms": result.inference_ms,
        "postprocess_ms": result.postprocess_ms,
        "total_ms": result.total_ms,
        "n_detections": int(np.count_nonzero(result.scores >= threshold)),
        "threshold": float(threshold),
        "error": result.error,
        "created_at": created_at,
    }
    return tuple(_py(values[c]) for c in INFERENCE_COLUMNS)


def _detection_rows(result: DetectionResult, run_id: str) -> list[tuple]:
    """The rows of `records.detections_frame` for one result, in DETECTION_COLUMNS order."""
    if not len(result.scores):
        return []
    boxes = np.asarray(result.boxes, dtype=np.float64).tolist()
    scores = np.asarray(result.scores, dtype=np.float64).tolist()
    labels = np.asarray(result.labels).astype(np.int64).tolist()
    rows = []
    for box, score, label_id, label in zip(boxes, scores, labels, result.label_names, strict=True):
        values = {
            "run_id": run_id,
            "image_id": result.image_id,
            "model": result.model,
            "label_id": label_id,
            "label": label,
            "score": score,
            "x1": box[0],
            "y1": box[1],
            "x2": box[2],
            "y2": box[3],
        }
        rows.append(tuple(values[c] for c in DETECTION_COLUMNS))
    return rows


def _frame(rows: list[tuple], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame.from_records(rows, columns=list(columns))


def _check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise StoreError(f"invalid run id {run_id!r}: letters, digits, '.', '_' and '-', at most 100 characters")
    return run_id


def _one_line(text: str, limit: int) -> str:
    return " ".join(str(text).split())[:limit]


def _image_format(data: bytes) -> str:
    """Pillow's format name of these bytes (from the header only), or "" when Pillow does not know them."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.format or ""
    except Exception:
        return ""


def _suffix_for(data: bytes, name: str) -> tuple[str, str]:
    """(format, suffix) of a stored copy, by content: Pillow's format; a HEIF/AVIF container this Pillow cannot
    read keeps its `.heic`/`.heif`/`.avif` name; anything else (text, PDF, random bytes) is `.bin`."""
    fmt = _image_format(data)
    if fmt in _FORMAT_SUFFIX:
        return fmt, _FORMAT_SUFFIX[fmt]
    if data[4:8] == b"ftyp":
        ext = Path(name).suffix.lower()
        return fmt, ext if ext in (".heic", ".heif", ".avif") else ".heic"
    return fmt, ".bin"


def _temp_beside(path: Path) -> Path:
    """A fresh name in `path`'s folder for a file that is renamed to `path` once complete."""
    return path.parent / f".tmp-{secrets.token_hex(8)}{path.suffix}"


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers see the whole file or none.

    Created with `open(..., "xb")`, so the file gets the usual permissions (umask), readable by a team sharing the
    store folder.
    """
    tmp = _temp_beside(path)
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


# --- the store -----------------------------------------------------------------------------------------------------


class Store:
    """A data folder of runs. Safe to share between threads (one SQLite connection each) and processes.

    `Store(path)` creates the folder and the database when missing (`create=False`: a missing store is a
    StoreError instead). Every method that names a run raises StoreError for an unknown one.
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
        self._init_schema()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connections and transactions --

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.db_path, timeout=STORE_BUSY_TIMEOUT_S, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(STORE_BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA journal_mode = WAL")
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

    def _init_schema(self) -> None:
        conn = self._conn()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the run store at {self.path} has schema version {version}; this DetLens reads up to "
                f"{SCHEMA_VERSION}: update DetLens"
            )
        if version < SCHEMA_VERSION:
            with self._write() as w:
                if w.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:  # another process may have won
                    for statement in _SCHEMA:
                        w.execute(statement)
                    w.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        for table, columns in _EXPECTED_COLUMNS.items():
            found = tuple(row[1] for row in conn.execute(f"PRAGMA table_info({table})"))
            if found != columns:
                raise StoreError(
                    f"the run store at {self.path} has other {table} columns than this DetLens "
                    f"({', '.join(found)}): it was made by another version"
                )

    def _require_run(self, conn: sqlite3.Connection, run_id: str) -> sqlite3.Row | tuple:
        row = conn.execute(
            "SELECT run_id, created_at, user, settings, environment, status, finished_at FROM runs WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            raise StoreError(f"unknown run {run_id!r} in {self.path}")
        return row

    # -- runs and records --

    def start_run(self, info: RunInfo, user: str = "") -> None:
        """Add a run (status `running`). `user` defaults to `info.settings["user"]`. An existing run_id is an error."""
        run_id = _check_run_id(info.run_id)
        user = user or str(info.settings.get("user", "") or "")
        try:
            with self._write() as conn:
                conn.execute(
                    "INSERT INTO runs (run_id, created_at, user, settings, environment, status) "
                    "VALUES (?, ?, ?, ?, ?, 'running')",
                    (run_id, info.created_at, user, _dumps(info.settings), _dumps(info.environment)),
                )
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"run {run_id!r} already exists in {self.path}") from exc

    def add_result(self, run_id: str, result: DetectionResult, *, threshold: float, created_at: str) -> None:
        """Store one (image, model) result: its inference row and its detection rows in ONE transaction.

        The rows are those `core.records` makes (`n_detections` counts boxes at or above `threshold`; every box above
        the score floor is kept). After a crash a result is either wholly there or not at all.
        """
        inference = _inference_row(result, run_id, threshold, created_at)
        boxes = _detection_rows(result, run_id)
        with self._write() as conn:
            self._require_run(conn, run_id)
            conn.execute(
                f"INSERT INTO inferences ({', '.join(INFERENCE_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(INFERENCE_COLUMNS))})",
                inference,
            )
            if boxes:
                conn.executemany(
                    f"INSERT INTO detections ({', '.join(DETECTION_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(DETECTION_COLUMNS))})",
                    boxes,
                )

    def finish_run(self, run_id: str, status: str = "finished", *, info: RunInfo | None = None) -> None:
        """Mark a run `finished` or `failed` (now). With `info`, its settings and environment replace the stored
        ones (the runner's final RunInfo: resolved device, weights, environment); `created_at` is kept."""
        if status not in RUN_STATUSES:
            raise StoreError(f"unknown run status {status!r}: one of {', '.join(RUN_STATUSES)}")
        with self._write() as conn:
            self._require_run(conn, run_id)
            conn.execute(
                "UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?",
                (status, None if status == "running" else now_iso(), run_id),
            )
            if info is not None:
                conn.execute(
                    "UPDATE runs SET settings = ?, environment = ? WHERE run_id = ?",
                    (_dumps(info.settings), _dumps(info.environment), run_id),
                )

    def delete_run(self, run_id: str) -> None:
        """Remove a run with its rows, image links and reviews (image files stay: other runs may share them)."""
        with self._write() as conn:
            self._require_run(conn, run_id)
            conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))

    def has_run(self, run_id: str) -> bool:
        with self._read() as conn:
            return conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is not None

    def run_version(self, run_id: str) -> tuple[str, int]:
        """(status, stored records) of one run: a cheap, indexed way to tell whether its tables changed."""
        with self._read() as conn:
            status = self._require_run(conn, run_id)[5]
            (count,) = conn.execute("SELECT COUNT(*) FROM inferences WHERE run_id = ?", (run_id,)).fetchone()
        return str(status), int(count)

    def run_info(self, run_id: str) -> RunInfo:
        with self._read() as conn:
            return _info(self._require_run(conn, run_id))

    def list_runs(self) -> pd.DataFrame:
        """One row per run, newest first: run_id, created_at, user, status, finished_at, models (comma list), device,
        n_inferences (stored records: finished image x model), n_errors (of those, failed), n_images (distinct
        images with a record), n_reviews (current verdicts), untrained (any record made with untrained weights)."""
        with self._read() as conn:
            rows = conn.execute(
                """
                SELECT r.run_id, r.created_at, r.user, r.status, r.finished_at, r.settings, i.models,
                       COALESCE(i.n, 0), COALESCE(i.n_err, 0), COALESCE(i.n_img, 0), COALESCE(v.n, 0),
                       COALESCE(i.untrained, 0)
                FROM runs r
                LEFT JOIN (
                    SELECT run_id, COUNT(*) AS n, SUM(error != '') AS n_err,
                           COUNT(DISTINCT image_id || char(0) || COALESCE(image_name, '')) AS n_img,
                           group_concat(DISTINCT model) AS models, MAX(weights = 'untrained') AS untrained
                    FROM inferences GROUP BY run_id
                ) i ON i.run_id = r.run_id
                LEFT JOIN (
                    SELECT run_id, COUNT(*) AS n FROM (SELECT DISTINCT run_id, image_id, reviewer FROM reviews)
                    GROUP BY run_id
                ) v ON v.run_id = r.run_id
                ORDER BY r.created_at DESC, r.run_id DESC
                """
            ).fetchall()
        out = []
        for run_id, created, user, status, finished, settings, models, n, n_err, n_img, n_rev, untrained in rows:
            planned = _loads(settings)
            names = [str(m) for m in planned.get("models", []) or []]
            for m in (models or "").split(","):
                if m and m not in names:
                    names.append(m)
            out.append(
                (run_id, created, user, status, finished or "", ",".join(names), str(planned.get("device", "")),
                 n, n_err, n_img, n_rev, bool(untrained))
            )  # fmt: skip
        frame = _frame(out, RUN_LIST_COLUMNS)
        ints = {c: "int64" for c in ("n_inferences", "n_errors", "n_images", "n_reviews")}
        strings = {c: "string" for c in RUN_LIST_COLUMNS if c not in ints and c != "untrained"}
        return frame.astype({**strings, **ints, "untrained": "bool"})

    def load_run(self, run_id: str) -> tuple[pd.DataFrame, pd.DataFrame, RunInfo]:
        """The run's inferences and detections (schema columns and dtypes, in the order stored) and its RunInfo."""
        with self._read() as conn:
            info = _info(self._require_run(conn, run_id))
            inf = conn.execute(
                f"SELECT {', '.join(INFERENCE_COLUMNS)} FROM inferences WHERE run_id = ? ORDER BY rowid", (run_id,)
            ).fetchall()
            det = conn.execute(
                f"SELECT {', '.join(DETECTION_COLUMNS)} FROM detections WHERE run_id = ? ORDER BY rowid", (run_id,)
            ).fetchall()
        return (
            coerce_inferences(_frame(inf, INFERENCE_COLUMNS)),
            coerce_detections(_frame(det, DETECTION_COLUMNS)),
            info,
        )

    # -- images --

    def put_image(self, source: ImageSource, *, run_id: str | None = None) -> str:
        """Keep a copy of the source's bytes under images/ by content hash (idempotent) and return its image_id.

        With `run_id`, the image is also listed in that run under the source's name. Unreadable or empty sources
        and files over MAX_IMAGE_BYTES are not kept: the result is "" (their records still say why they failed).
        """
        data = source.read()
        if not data or len(data) > MAX_IMAGE_BYTES:
            return ""
        image_id = content_id(data)
        fmt, suffix = _suffix_for(data, source.name)
        self._put_bytes(image_id, data, source.name, fmt, suffix, run_id)
        return image_id

    def _put_bytes(self, image_id: str, data: bytes, name: str, fmt: str, suffix: str, run_id: str | None) -> None:
        with self._read() as conn:
            row = conn.execute("SELECT path FROM images WHERE image_id = ?", (image_id,)).fetchone()
        path = self.path / row[0] if row else self.images_dir / f"{image_id}{suffix}"
        if not path.is_file() or path.stat().st_size != len(data):
            _write_atomic(path, data)
        with self._write() as conn:
            if run_id is not None:
                self._require_run(conn, run_id)
            conn.execute(
                "INSERT OR IGNORE INTO images (image_id, name, format, suffix, path, bytes, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (image_id, name, fmt, suffix, path.relative_to(self.path).as_posix(), len(data), now_iso()),
            )
            if run_id is not None:
                conn.execute(
                    "INSERT OR IGNORE INTO run_images (run_id, image_id, name) VALUES (?, ?, ?)",
                    (run_id, image_id, name),
                )

    def image_source(self, image_id: str) -> ImageSource | None:
        """The stored copy of an image as a source (its first known name), or None when it is not kept."""
        with self._read() as conn:
            row = conn.execute("SELECT name, path FROM images WHERE image_id = ?", (image_id,)).fetchone()
        if row is None or not (self.path / row[1]).is_file():
            return None
        return ImageSource(row[0], path=self.path / row[1], image_id=image_id)

    def run_images(self, run_id: str) -> dict[str, ImageSource]:
        """image_id -> source of every image kept for the run (named as in that run), like the session's images."""
        with self._read() as conn:
            self._require_run(conn, run_id)
            rows = conn.execute(
                "SELECT ri.image_id, ri.name, i.path FROM run_images ri JOIN images i USING (image_id) "
                "WHERE ri.run_id = ? ORDER BY ri.rowid",
                (run_id,),
            ).fetchall()
        out: dict[str, ImageSource] = {}
        for image_id, name, rel in rows:
            if image_id not in out and (self.path / rel).is_file():
                out[image_id] = ImageSource(name, path=self.path / rel, image_id=image_id)
        return out

    # -- reviews --

    def run_models(self, run_id: str) -> list[str]:
        """The run's models: those planned (settings) first, then any other with a record."""
        with self._read() as conn:
            return self._run_models(conn, run_id)

    def _run_models(self, conn: sqlite3.Connection, run_id: str) -> list[str]:
        names = [str(m) for m in _loads(self._require_run(conn, run_id)[3]).get("models", []) or []]
        for (m,) in conn.execute("SELECT DISTINCT model FROM inferences WHERE run_id = ? ORDER BY rowid", (run_id,)):
            if m not in names:
                names.append(m)
        return names

    def add_review(
        self,
        run_id: str,
        image_id: str,
        reviewer: str,
        verdict: str,
        note: str = "",
        *,
        model_a: str | None = None,
        model_b: str | None = None,
    ) -> None:
        """Record a reviewer's verdict on one image of a run (REVIEW_VERDICTS). A reviewer's latest verdict on an
        image is the one `reviews` lists; earlier ones stay in the history.

        "A" and "B" are `model_a`/`model_b`, by default the run's first two models; they are stored with the verdict.
        """
        reviewer = _one_line(reviewer or "", MAX_REVIEWER_CHARS)
        if not reviewer:
            raise StoreError("a review needs a reviewer name")
        if verdict not in REVIEW_VERDICTS:
            raise StoreError(f"unknown verdict {verdict!r}: one of {', '.join(REVIEW_VERDICTS)}")
        note = str(note or "").strip()[:MAX_NOTE_CHARS]
        with self._write() as conn:
            models = self._run_models(conn, run_id)
            known = conn.execute(
                "SELECT 1 FROM inferences WHERE run_id = ? AND image_id = ? UNION ALL "
                "SELECT 1 FROM run_images WHERE run_id = ? AND image_id = ? LIMIT 1",
                (run_id, image_id, run_id, image_id),
            ).fetchone()
            if not image_id or known is None:
                raise StoreError(f"image {image_id!r} is not in run {run_id!r}")
            a = model_a if model_a is not None else (models[0] if models else "")
            b = model_b if model_b is not None else (models[1] if len(models) > 1 else "")
            for m in (a, b):
                if m and m not in models:
                    raise StoreError(f"model {m!r} is not in run {run_id!r}")
            if verdict in ("A better", "B better") and not (a and b and a != b):
                raise StoreError(f"{verdict!r} needs two different models A and B")
            conn.execute(
                "INSERT INTO reviews (run_id, image_id, model_a, model_b, reviewer, verdict, note, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, image_id, a, b, reviewer, verdict, note, now_iso()),
            )

    def reviews(self, run_id: str, *, history: bool = False) -> pd.DataFrame:
        """The run's reviews (REVIEW_COLUMNS): the latest per (image, reviewer), sorted by image and reviewer; with
        `history`, every review in the order given."""
        cols = ", ".join(REVIEW_COLUMNS)
        with self._read() as conn:
            self._require_run(conn, run_id)
            if history:
                sql = f"SELECT {cols} FROM reviews WHERE run_id = ? ORDER BY id"
            else:
                sql = (
                    f"SELECT {cols} FROM ("
                    f"  SELECT {cols}, ROW_NUMBER() OVER (PARTITION BY image_id, reviewer ORDER BY id DESC) AS k"
                    f"  FROM reviews WHERE run_id = ?"
                    f") WHERE k = 1 ORDER BY image_id, reviewer"
                )
            rows = conn.execute(sql, (run_id,)).fetchall()
        return _frame(rows, REVIEW_COLUMNS).astype("string")

    # -- export and import --

    def export_run(self, run_id: str, zip_path: str | Path) -> Path:
        """One zip with inferences.parquet, detections.parquet, reviews.parquet (the whole history), run.json (the
        RunInfo), manifest.json (status, user, images) and images/<image_id><suffix>. Written atomically."""
        zip_path = Path(zip_path)
        inf, det, info = self.load_run(run_id)
        reviews = self.reviews(run_id, history=True)
        with self._read() as conn:
            run = self._require_run(conn, run_id)
            images = conn.execute(
                "SELECT DISTINCT i.image_id, i.name, i.format, i.suffix, i.path, i.bytes FROM images i "
                "WHERE i.image_id IN (SELECT image_id FROM run_images WHERE run_id = ?) "
                "OR i.image_id IN (SELECT image_id FROM inferences WHERE run_id = ?) ORDER BY i.image_id",
                (run_id, run_id),
            ).fetchall()
            links = conn.execute(
                "SELECT image_id, name FROM run_images WHERE run_id = ? ORDER BY rowid", (run_id,)
            ).fetchall()
        kept = [row for row in images if (self.path / row[4]).is_file()]
        manifest = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "run_id": run_id,
            "user": run[2],
            "status": run[5],
            "finished_at": run[6],
            "images": [{"image_id": i, "name": n, "format": f, "suffix": s, "bytes": b} for i, n, f, s, _, b in kept],
            "run_images": [{"image_id": i, "name": n} for i, n in links],
        }
        zip_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_beside(zip_path)
        try:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for name, df in (("inferences", inf), ("detections", det), ("reviews", reviews)):
                    buf = io.BytesIO()
                    df.to_parquet(buf, index=False)
                    zf.writestr(f"{name}.parquet", buf.getvalue())
                zf.writestr("run.json", info.to_json())
                zf.writestr("manifest.json", json.dumps(manifest, indent=2, sort_keys=True))
                for image_id, _, _, suffix, rel, _ in kept:  # already compressed formats: stored as they are
                    zf.write(self.path / rel, f"images/{image_id}{suffix}", compress_type=zipfile.ZIP_STORED)
            os.replace(tmp, zip_path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return zip_path

    def import_run(self, zip_path: str | Path, *, replace: bool = False, max_bytes: int = MAX_IMPORT_BYTES) -> str:
        """Add the run of an `export_run` zip; returns its run_id.

        Refused with StoreError: not a zip, entries with absolute paths or `..`, more than `max_bytes` uncompressed
        in all, missing or malformed tables, rows of another run, an image whose bytes do not match its id, and a
        run_id already in the store unless `replace` (then the old run is replaced in the same transaction).
        """
        zip_path = Path(zip_path)
        try:
            zf = zipfile.ZipFile(zip_path)
        except (OSError, zipfile.BadZipFile) as exc:
            raise StoreError(f"{zip_path.name}: not a DetLens run zip ({exc})") from exc
        with zf:
            entries = _check_entries(zf, zip_path.name, max_bytes)
            try:
                info = RunInfo.from_json(_read_entry(zf, entries, "run.json").decode("utf-8"))
                manifest = json.loads(_read_entry(zf, entries, "manifest.json", optional=True) or b"{}")
                inf = coerce_inferences(_read_parquet(zf, entries, "inferences", INFERENCE_COLUMNS))
                det = coerce_detections(_read_parquet(zf, entries, "detections", DETECTION_COLUMNS))
                reviews = _read_parquet(zf, entries, "reviews", REVIEW_COLUMNS, optional=True)
            except StoreError:
                raise
            except Exception as exc:  # malformed JSON/Parquet, wrong types: one line, not a traceback
                raise StoreError(f"{zip_path.name}: not a DetLens run zip ({type(exc).__name__}: {exc})") from exc
            run_id = _check_run_id(info.run_id)
            if not (isinstance(info.settings, dict) and isinstance(info.environment, dict)):
                raise StoreError(f"{zip_path.name}: run.json's settings and environment must be objects")
            for name, df in (("inferences", inf), ("detections", det), ("reviews", reviews)):
                if len(df) and not (df["run_id"].astype("string") == run_id).all():
                    raise StoreError(f"{zip_path.name}: {name} holds rows of another run than {run_id}")
            if not isinstance(manifest, dict):
                raise StoreError(f"{zip_path.name}: manifest.json is not an object")
            listed = [m for m in manifest.get("images", []) or [] if isinstance(m, dict)]
            names = {str(m.get("image_id")): str(m.get("name", "")) for m in listed}
            images: list[tuple[str, str, bytes]] = []
            for entry in entries:
                match = _ZIP_IMAGE.fullmatch(entry)
                if not match:
                    continue
                data = zf.read(entry)
                if content_id(data) != match.group(1):
                    raise StoreError(f"{zip_path.name}: {entry} does not hold the image its name says")
                images.append((match.group(1), match.group(2), data))
        if self.has_run(run_id) and not replace:
            raise StoreError(f"run {run_id!r} already exists in {self.path} (import with replace to overwrite it)")
        for image_id, suffix, data in images:
            path = self.images_dir / f"{image_id}{suffix}"
            if not path.is_file() or path.stat().st_size != len(data):
                _write_atomic(path, data)
        kept = {image_id for image_id, _, _ in images}
        if "run_images" in manifest:
            linked = [m for m in manifest.get("run_images") or [] if isinstance(m, dict)]
            links = [(str(m.get("image_id")), str(m.get("name", ""))) for m in linked if str(m.get("image_id")) in kept]
        else:  # a zip without a manifest: every image in it belongs to the run
            links = [(i, names.get(i) or f"{i}{s}") for i, s, _ in images]
        try:
            with self._write() as conn:
                if replace:
                    conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
                conn.execute(
                    "INSERT INTO runs (run_id, created_at, user, settings, environment, status, finished_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        info.created_at,
                        str(manifest.get("user", "") or info.settings.get("user", "") or ""),
                        _dumps(info.settings),
                        _dumps(info.environment),
                        manifest.get("status") if manifest.get("status") in RUN_STATUSES else "finished",
                        manifest.get("finished_at"),
                    ),
                )
                conn.executemany(
                    f"INSERT INTO inferences ({', '.join(INFERENCE_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(INFERENCE_COLUMNS))})",
                    _rows(inf),
                )
                conn.executemany(
                    f"INSERT INTO detections ({', '.join(DETECTION_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(DETECTION_COLUMNS))})",
                    _rows(det),
                )
                for image_id, suffix, data in images:
                    conn.execute(
                        "INSERT OR IGNORE INTO images (image_id, name, format, suffix, path, bytes, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (image_id, names.get(image_id) or f"{image_id}{suffix}", _image_format(data), suffix,
                         f"images/{image_id}{suffix}", len(data), now_iso()),
                    )  # fmt: skip
                conn.executemany("INSERT OR IGNORE INTO run_images (run_id, image_id, name) VALUES (?, ?, ?)",
                                 [(run_id, i, n) for i, n in links])  # fmt: skip
                if len(reviews):
                    conn.executemany(
                        f"INSERT INTO reviews ({', '.join(REVIEW_COLUMNS)}) VALUES ({', '.join('?' * len(REVIEW_COLUMNS))})",
                        _rows(reviews.reindex(columns=list(REVIEW_COLUMNS)).astype("string").fillna("")),
                    )
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"{zip_path.name}: the run's rows are not valid ({exc})") from exc
        return run_id


# --- runner hook ---------------------------------------------------------------------------------------------------


def record_into(
    store: Store,
    run_id: str,
    threshold: float,
    *,
    created_at: str | None = None,
    sources: Sequence[ImageSource] = (),
) -> Callable[[DetectionResult, int, int], None]:
    """An `on_result` for `core.runner.run`: each finished (image, model) goes into the store at once, in its own
    transaction, so a killed process loses at most the result in flight.

    The run must exist (`store.start_run`) and be the one `runner.run(..., run_id=run_id)` makes. Every row gets
    `created_at` (default: now, once). With `sources` (the run's images), each image's bytes are kept in the store
    and listed in the run the first time one of its results arrives.
    """
    stamp = created_at or now_iso()
    by_id = {s.image_id: s for s in sources if s.image_id}
    by_name: dict[str, list[ImageSource]] = {}
    for s in sources:
        if not s.image_id:
            by_name.setdefault(s.name, []).append(s)
    kept: set[str] = set()

    def find(result: DetectionResult) -> ImageSource | None:
        if result.image_id in by_id:
            return by_id[result.image_id]
        candidates = by_name.get(result.image_name, [])
        while candidates:  # hash same-named files until the one with this content turns up
            source = candidates.pop(0).hashed()
            by_id.setdefault(source.image_id, source)
            if source.image_id == result.image_id:
                return source
        return None

    def on_result(result: DetectionResult, done: int = 0, total: int = 0) -> None:
        if sources and result.image_id and result.image_id not in kept:
            source = find(result)
            if source is not None:
                store.put_image(source, run_id=run_id)
            kept.add(result.image_id)
        store.add_result(run_id, result, threshold=threshold, created_at=stamp)

    return on_result


# --- helpers -------------------------------------------------------------------------------------------------------


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _loads(text: str | None) -> dict:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _info(row: Sequence) -> RunInfo:
    return RunInfo(run_id=row[0], created_at=row[1], settings=_loads(row[3]), environment=_loads(row[4]))


def _rows(df: pd.DataFrame) -> list[tuple]:
    return [tuple(_py(v) for v in row) for row in df.itertuples(index=False, name=None)]


def _check_entries(zf: zipfile.ZipFile, label: str, max_bytes: int) -> set[str]:
    """The zip's entry names, after refusing absolute paths, `..`, duplicates and too much uncompressed data."""
    infos = zf.infolist()
    if len(infos) > MAX_ZIP_ENTRIES:
        raise StoreError(f"{label}: too many entries ({len(infos)})")
    names: set[str] = set()
    total = 0
    for zi in infos:
        name = zi.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name) or ".." in parts:
            raise StoreError(f"{label}: refused entry {name!r} (absolute path or '..')")
        if name in names:
            raise StoreError(f"{label}: entry {name!r} appears twice")
        names.add(name)
        total += zi.file_size
        if total > max_bytes:
            raise StoreError(f"{label}: more than {max_bytes / 1024**2:.0f} MB uncompressed")
    return names


def _read_entry(zf: zipfile.ZipFile, entries: set[str], name: str, *, optional: bool = False) -> bytes | None:
    if name not in entries:
        if optional:
            return None
        raise StoreError(f"{Path(zf.filename or 'zip').name}: not a DetLens run zip (no {name})")
    return zf.read(name)


def _read_parquet(
    zf: zipfile.ZipFile, entries: set[str], name: str, columns: Sequence[str], *, optional: bool = False
) -> pd.DataFrame:
    data = _read_entry(zf, entries, f"{name}.parquet", optional=optional)
    if data is None:
        return pd.DataFrame(columns=list(columns))
    df = pd.read_parquet(io.BytesIO(data))
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise StoreError(f"{Path(zf.filename or 'zip').name}: {name}.parquet lacks {', '.join(missing)}")
    return df
