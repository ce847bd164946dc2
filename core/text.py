"""Small text helpers for one-line messages: id lists, byte sizes, file names from any platform's paths."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

MAX_IDS_SHOWN = 5


def fmt_ids(ids: Iterable[object], limit: int = MAX_IDS_SHOWN) -> str:
    """The distinct ids in order, the first `limit` shown: '3, 4, 7 (+2 more)'."""
    ids = list(dict.fromkeys(ids))
    shown = ", ".join(str(i) for i in ids[:limit])
    more = len(ids) - limit
    return f"{shown} (+{more} more)" if more > 0 else shown


def megabytes(n: int) -> str:
    """A byte count as '1.5 MB' (MiB, one decimal)."""
    return f"{n / (1024 * 1024):.1f} MB"


def one_line(text: object, limit: int | None = None) -> str:
    """`text` on one line (whitespace, newlines included, collapsed), cut to `limit` characters with a final '…'."""
    flat = " ".join(str(text).split())
    return flat if limit is None or len(flat) <= limit else flat[: limit - 1] + "…"


def exception_line(exc: BaseException, limit: int = 240) -> str:
    """An exception as one line: 'ValueError: what it says' (its type alone when it says nothing)."""
    return f"{type(exc).__name__}: {one_line(exc, limit) or type(exc).__name__}"


def basename(name: object) -> str:
    """The last part of a file name written with / or \\ separators ('a\\b/c.jpg' -> 'c.jpg')."""
    return PurePosixPath(str(name).replace("\\", "/")).name
