"""Files written whole or not at all: a temporary name beside the target, renamed onto it once complete."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def temp_beside(path: Path) -> Path:
    """A fresh name in `path`'s folder for a file that is renamed to `path` once complete."""
    return path.parent / f".tmp-{secrets.token_hex(8)}{path.suffix}"


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers see the whole file or none.

    Created with `open(..., "xb")`, so the file gets the usual permissions (umask), readable by a team sharing the
    store folder.
    """
    tmp = temp_beside(path)
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
