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
`core.records` builds from the same results. The schema (`core.store.schema`) is versioned with `PRAGMA user_version`.

The parts, one reason to change each: `connection` (folder, connections, transactions), `schema` (tables and
migrations), `runs` (runs and their records, `record_into`), `images` (image bytes and run images), `reviews`,
`archive` (export/import zips), `jobs` (the job queue: submit, claim, heartbeat, cancel, resume); `common` holds the error, constants and value helpers they share.
"""

from __future__ import annotations

from core.store.archive import EXPORT_FORMAT, EXPORT_VERSION, MAX_ZIP_ENTRIES, ArchiveMixin
from core.store.common import (
    REVIEW_COLUMNS,
    RUN_LIST_COLUMNS,
    RUN_STATUSES,
    StoreError,
    current_user,
    default_store_dir,
)
from core.store.connection import RunRow
from core.store.images import ImagesMixin
from core.store.jobs import JobRow, JobsMixin, ModelProgress
from core.store.reviews import MAX_NOTE_CHARS, MAX_REVIEWER_CHARS, ReviewsMixin
from core.store.runs import RunsMixin, record_into
from core.store.schema import SCHEMA_VERSION

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "MAX_NOTE_CHARS",
    "MAX_REVIEWER_CHARS",
    "MAX_ZIP_ENTRIES",
    "REVIEW_COLUMNS",
    "RUN_LIST_COLUMNS",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "JobRow",
    "ModelProgress",
    "RunRow",
    "Store",
    "StoreError",
    "current_user",
    "default_store_dir",
    "record_into",
]


class Store(RunsMixin, ImagesMixin, ReviewsMixin, ArchiveMixin, JobsMixin):
    """A data folder of runs. Safe to share between threads (one SQLite connection each) and processes.

    `Store(path)` creates the folder and the database when missing (`create=False`: a missing store is a
    StoreError instead) and brings its schema up to date. Every method that names a run raises StoreError for an
    unknown one. Composed of parts that each stand on `StoreBase` alone (folder, connections, transactions, the run
    reads every part shares): runs and records, images, reviews, export/import, jobs; none inherits another.
    """
