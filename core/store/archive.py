"""One run as a zip (tables as Parquet, run.json, manifest, images) and back, with the zip's contents checked."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sqlite3
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import pandas as pd
import pyarrow as pa

from core.config import DETECTION_COLUMNS, INFERENCE_COLUMNS, MAX_IMPORT_BYTES, RUNTIME_EAGER
from core.files import temp_beside, write_atomic
from core.images import content_id
from core.records import RunInfo, coerce_detections, coerce_inferences, now_iso
from core.store.common import (
    REVIEW_COLUMNS,
    RUN_NAME_MAX,
    RUN_STATUSES,
    StoreError,
    check_run_id,
    dumps_json,
    sql_rows,
)
from core.store.connection import StoreBase
from core.store.images import image_format
from core.store.schema import canonicalise_reviews
from core.store.segments import drop_segment, write_tables

EXPORT_FORMAT = "detlens-run"
EXPORT_VERSION = 1
MAX_ZIP_ENTRIES = 100_000
_ZIP_IMAGE = re.compile(r"images/([0-9a-f]{16})(\.[a-z0-9]{1,5})")


_OLD_REVIEW_COLUMNS = tuple(c for c in REVIEW_COLUMNS if c not in ("identity", "run_b"))  # older zips lack them


class ArchiveMixin(StoreBase):
    """export_run / import_run: a run with its reviews and images in one zip. It stands on the base alone; the
    records, reviews and images it packs are read and written through the other parts' public methods and the
    base's transactions, as `Store` composes them."""

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
            (name,) = conn.execute("SELECT name FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        kept = [row for row in images if (self.path / row[4]).is_file()]
        manifest = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "run_id": run_id,
            "user": run.user,
            "name": name,
            "status": run.status,
            "finished_at": run.finished_at,
            "images": [{"image_id": i, "name": n, "format": f, "suffix": s, "bytes": b} for i, n, f, s, _, b in kept],
            "run_images": [{"image_id": i, "name": n} for i, n in links],
        }
        zip_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_beside(zip_path)
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
                reviews = _read_parquet(zf, entries, "reviews", _OLD_REVIEW_COLUMNS, optional=True)
            except StoreError:
                raise
            except Exception as exc:  # malformed JSON/Parquet, wrong types: one line, not a traceback
                raise StoreError(f"{zip_path.name}: not a DetLens run zip ({type(exc).__name__}: {exc})") from exc
            run_id = check_run_id(info.run_id)
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
                write_atomic(path, data)
        kept = {image_id for image_id, _, _ in images}
        if "run_images" in manifest:
            linked = [m for m in manifest.get("run_images") or [] if isinstance(m, dict)]
            links = [(str(m.get("image_id")), str(m.get("name", ""))) for m in linked if str(m.get("image_id")) in kept]
        else:  # a zip without a manifest: every image in it belongs to the run
            links = [(i, names.get(i) or f"{i}{s}") for i, s, _ in images]
        status = manifest.get("status") if manifest.get("status") in RUN_STATUSES else "finished"
        if replace:  # the replaced run's segment may carry the same version (status, count) as the new one
            drop_segment(self, run_id)
        try:
            with self._write() as conn:
                if replace:
                    conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
                conn.execute(
                    "INSERT INTO runs (run_id, created_at, user, settings, environment, status, finished_at, name) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        info.created_at,
                        str(manifest.get("user", "") or info.settings.get("user", "") or ""),
                        dumps_json(info.settings),
                        dumps_json(info.environment),
                        status,
                        manifest.get("finished_at"),
                        " ".join(str(manifest.get("name", "") or "").split())[:RUN_NAME_MAX],
                    ),
                )
                self.insert_records(conn, run_id, inf, det)
                for image_id, suffix, data in images:
                    conn.execute(
                        "INSERT OR IGNORE INTO images (image_id, name, format, suffix, path, bytes, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (image_id, names.get(image_id) or f"{image_id}{suffix}", image_format(data), suffix,
                         f"images/{image_id}{suffix}", len(data), now_iso()),
                    )  # fmt: skip
                conn.executemany("INSERT OR IGNORE INTO run_images (run_id, image_id, name) VALUES (?, ?, ?)",
                                 [(run_id, i, n) for i, n in links])  # fmt: skip
                if len(reviews):
                    rows = reviews.reindex(columns=list(REVIEW_COLUMNS)).astype("string")
                    rows["identity"] = rows["identity"].fillna("typed")  # zips from before sign-in: typed names
                    rows["run_b"] = rows["run_b"].fillna("")  # zips from before cross-run pairs: same-run pairs
                    conn.executemany(
                        f"INSERT INTO reviews ({', '.join(REVIEW_COLUMNS)}) VALUES ({', '.join('?' * len(REVIEW_COLUMNS))})",
                        sql_rows(rows.fillna("")),
                    )
                    canonicalise_reviews(conn, run_id)  # zips from before pairs were unordered
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"{zip_path.name}: the run's rows are not valid ({exc})") from exc
        except StoreError as exc:  # the records tables (a pair twice, boxes without their record)
            raise StoreError(f"{zip_path.name}: {exc}") from exc
        if status != "running":  # the columnar segment from the tables just read: the first open is fast too
            with contextlib.suppress(OSError, ValueError, pa.ArrowException):
                write_tables(self, run_id, inf, det, (status, len(inf)))
        return run_id


# --- zip checks ---------------------------------------------------------------------------------------------------


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
    if name == "inferences" and "runtime" not in df.columns:  # exported before runtimes existed: eager
        df["runtime"] = RUNTIME_EAGER
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise StoreError(f"{Path(zf.filename or 'zip').name}: {name}.parquet lacks {', '.join(missing)}")
    return df
