"""What every part of the run store shares: its error, its constants and small value helpers."""

from __future__ import annotations

import getpass
import json
import re
from collections.abc import Iterator, Sequence

import pandas as pd

from core.config import default_store_dir  # noqa: F401 (the store's public name, re-exported by core.store)
from core.records import plain_value

RUN_STATUSES: tuple[str, ...] = ("queued", "running", "finished", "failed", "cancelled", "interrupted")
ACTIVE_STATUSES: tuple[str, ...] = ("queued", "running")  # a job not ended yet
RESUMABLE_STATUSES: tuple[str, ...] = ("interrupted", "cancelled", "failed")
REVIEW_COLUMNS: tuple[str, ...] = (
    "run_id", "image_id", "model_a", "model_b", "reviewer", "verdict", "note", "created_at", "identity", "run_b",
)  # fmt: skip
RUN_LIST_COLUMNS: tuple[str, ...] = (
    "run_id", "name", "created_at", "user", "status", "finished_at", "models", "device", "n_inferences", "n_errors",
    "n_images", "n_reviews", "untrained",
)  # fmt: skip

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


RUN_NAME_MAX = 120  # characters of a run's name


class StoreError(Exception):
    """A clear, one-line reason: unknown run, bad verdict, bad zip, a store from a newer DetLens..."""


def current_user() -> str:
    """The login name of this process ("" when the system cannot tell)."""
    try:
        return getpass.getuser()
    except Exception:  # no USER/LOGNAME and no passwd entry (some containers)
        return ""


def sql_value(value: object) -> object:
    """A value sqlite3 can bind: numpy scalars to Python, NA/NaN to NULL."""
    return None if value is pd.NA else plain_value(value)


def sql_rows(df: pd.DataFrame) -> Iterator[tuple]:
    """The frame's rows as tuples sqlite3 binds, one at a time (executemany takes them as they come: a run of
    millions of boxes is never a list of millions of tuples)."""
    return (tuple(sql_value(v) for v in row) for row in df.itertuples(index=False, name=None))


def rows_frame(rows: list[tuple], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame.from_records(rows, columns=list(columns))


def insert_sql(table: str, columns: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise StoreError(f"invalid run id {run_id!r}: letters, digits, '.', '_' and '-', at most 100 characters")
    return run_id


def clip_line(text: str, limit: int) -> str:
    """`text` on one line, cut to `limit` characters (a stored value: no ellipsis)."""
    return " ".join(str(text).split())[:limit]


def dumps_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def loads_json(text: str | None) -> dict:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
