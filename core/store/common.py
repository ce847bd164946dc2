"""What every part of the run store shares: its error, its constants and small value helpers."""

from __future__ import annotations

import getpass
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import DEFAULT_STORE_DIR, STORE_ENV

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


def _py(value: object) -> object:
    """A value sqlite3 can bind: numpy scalars to Python, NA/NaN to NULL."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:  # NaN
        return None
    return value


def _rows(df: pd.DataFrame) -> list[tuple]:
    return [tuple(_py(v) for v in row) for row in df.itertuples(index=False, name=None)]


def _frame(rows: list[tuple], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame.from_records(rows, columns=list(columns))


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise StoreError(f"invalid run id {run_id!r}: letters, digits, '.', '_' and '-', at most 100 characters")
    return run_id


def _one_line(text: str, limit: int) -> str:
    return " ".join(str(text).split())[:limit]


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _loads(text: str | None) -> dict:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
