"""Runs and their records: start, finish, delete, list, load; one result or whole record tables at a time."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from core.config import DETECTION_COLUMNS, INFERENCE_COLUMNS
from core.images import ImageSource
from core.records import (
    DetectionResult,
    RunInfo,
    coerce_detections,
    coerce_inferences,
    detection_values,
    inference_values,
    now_iso,
    run_name,
)
from core.store.common import (
    RUN_LIST_COLUMNS,
    RUN_NAME_MAX,
    RUN_STATUSES,
    StoreError,
    check_run_id,
    dumps_json,
    insert_sql,
    loads_json,
    rows_frame,
    sql_rows,
)
from core.store.connection import StoreBase
from core.store.segments import drop_segment, write_segment

_INSERT_INFERENCE = insert_sql("inferences", INFERENCE_COLUMNS)
_INSERT_DETECTION = insert_sql("detections", DETECTION_COLUMNS)


class RunsMixin(StoreBase):
    """Runs and their inferences/detections rows."""

    def start_run(self, info: RunInfo, user: str = "") -> None:
        """Add a run (status `running`). `user` defaults to `info.settings["user"]`. An existing run_id is an error."""
        run_id = check_run_id(info.run_id)
        user = user or str(info.settings.get("user", "") or "")
        try:
            with self._write() as conn:
                conn.execute(
                    "INSERT INTO runs (run_id, created_at, user, settings, environment, status) "
                    "VALUES (?, ?, ?, ?, ?, 'running')",
                    (run_id, info.created_at, user, dumps_json(info.settings), dumps_json(info.environment)),
                )
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"run {run_id!r} already exists in {self.path}") from exc

    def add_result(self, run_id: str, result: DetectionResult, *, threshold: float, created_at: str) -> None:
        """Store one (image, model) result: its inference row and its detection rows in ONE transaction.

        The rows are those `core.records` makes (`n_detections` counts boxes at or above `threshold`; every box above
        the score floor is kept). After a crash a result is either wholly there or not at all. A run holds one record
        per (image, model): a second one for the same pair is a StoreError and changes nothing (`add_records` skips
        pairs already there instead).
        """
        inference = inference_values(result, run_id, threshold, created_at)
        boxes = detection_values(result, run_id)
        try:
            with self._write() as conn:
                self._require_run(conn, run_id)
                conn.execute(_INSERT_INFERENCE, inference)
                if boxes:
                    conn.executemany(_INSERT_DETECTION, boxes)
        except sqlite3.IntegrityError as exc:  # the unique (run_id, image_id, model) index: nothing was written
            raise StoreError(
                f"run {run_id!r} already has a record of image {result.image_id} with {result.model}"
            ) from exc

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
                    (dumps_json(info.settings), dumps_json(info.environment), run_id),
                )
        if status != "running":
            self._write_segment(run_id)

    def _write_segment(self, run_id: str) -> None:
        """The finished run's Parquet segment, so the dashboard opens it fast (best effort: a failure here only means
        the first open reads SQLite and writes it then)."""
        with contextlib.suppress(OSError, StoreError):
            write_segment(self, run_id)

    def delete_run(self, run_id: str) -> None:
        """Remove a run with its rows, image links and reviews (image files stay: other runs may share them)."""
        with self._write() as conn:
            self._require_run(conn, run_id)
            conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
        drop_segment(self, run_id)

    def has_run(self, run_id: str) -> bool:
        with self._read() as conn:
            return conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is not None

    def run_version(self, run_id: str) -> tuple[str, int]:
        """(status, stored records) of one run: a cheap, indexed way to tell whether its tables changed."""
        with self._read() as conn:
            status = self._require_run(conn, run_id).status
            (count,) = conn.execute("SELECT COUNT(*) FROM inferences WHERE run_id = ?", (run_id,)).fetchone()
        return str(status), int(count)

    def list_runs(self) -> pd.DataFrame:
        """One row per run, newest first: run_id, created_at, user, status, finished_at, models (comma list), device,
        n_inferences (stored records: finished image x model), n_errors (of those, failed), n_images (distinct
        images with a record), n_reviews (current verdicts), untrained (any record made with untrained weights)."""
        with self._read() as conn:
            rows = conn.execute(
                """
                SELECT r.run_id, r.name, r.created_at, r.user, r.status, r.finished_at, r.settings, i.models,
                       COALESCE(i.n, 0), COALESCE(i.n_err, 0), COALESCE(i.n_img, 0), COALESCE(v.n, 0),
                       COALESCE(i.untrained, 0), COALESCE(l.n, 0)
                FROM runs r
                LEFT JOIN (
                    SELECT run_id, COUNT(*) AS n, SUM(error != '') AS n_err,
                           COUNT(DISTINCT image_id || char(0) || COALESCE(image_name, '')) AS n_img,
                           group_concat(DISTINCT model) AS models, MAX(weights = 'untrained') AS untrained
                    FROM inferences GROUP BY run_id
                ) i ON i.run_id = r.run_id
                LEFT JOIN (SELECT run_id, COUNT(DISTINCT image_id) AS n FROM run_images GROUP BY run_id) l
                    ON l.run_id = r.run_id
                LEFT JOIN (
                    SELECT run_id, COUNT(*) AS n FROM (
                        SELECT run_id, verdict, ROW_NUMBER() OVER (
                            PARTITION BY run_id, run_b, image_id, model_a, model_b, reviewer ORDER BY id DESC) AS k
                        FROM reviews
                    ) WHERE k = 1 AND verdict != 'withdrawn' GROUP BY run_id
                ) v ON v.run_id = r.run_id
                ORDER BY r.created_at DESC, r.run_id DESC
                """
            ).fetchall()
        out = []
        for (
            run_id,
            name,
            created,
            user,
            status,
            finished,
            settings,
            models,
            n,
            n_err,
            n_img,
            n_rev,
            untrained,
            n_linked,
        ) in rows:
            planned = loads_json(settings)
            names = [str(m) for m in planned.get("models", []) or []]
            for m in (models or "").split(","):
                if m and m not in names:
                    names.append(m)
            name = name or run_name(names, max(n_img, n_linked), created)
            out.append(
                (run_id, name, created, user, status, finished or "", ",".join(names), str(planned.get("device", "")),
                 n, n_err, n_img, n_rev, bool(untrained))
            )  # fmt: skip
        frame = rows_frame(out, RUN_LIST_COLUMNS)
        ints = {c: "int64" for c in ("n_inferences", "n_errors", "n_images", "n_reviews")}
        strings = {c: "string" for c in RUN_LIST_COLUMNS if c not in ints and c != "untrained"}
        return frame.astype({**strings, **ints, "untrained": "bool"})

    def rename_run(self, run_id: str, name: str) -> str:
        """Give a run a readable name (one line, at most RUN_NAME_MAX characters); "" gives back its default name.
        Returns the name stored."""
        name = " ".join(str(name).split())[:RUN_NAME_MAX]
        with self._write() as conn:
            self._require_run(conn, run_id)
            conn.execute("UPDATE runs SET name = ? WHERE run_id = ?", (name, run_id))
        return name

    def run_counts(self, run_id: str) -> tuple[int, int, int]:
        """(images, records, boxes) stored for a run, counted in SQLite (its RunFrame's figures, without loading it:
        the sidebar of every page says them, Home included). StoreError for an unknown run."""
        with self._read() as conn:
            self._require_run(conn, run_id)
            n_images, n_records = conn.execute(
                "SELECT COUNT(DISTINCT image_id), COUNT(*) FROM inferences WHERE run_id = ?", (run_id,)
            ).fetchone()
            (n_boxes,) = conn.execute("SELECT COUNT(*) FROM detections WHERE run_id = ?", (run_id,)).fetchone()
        return int(n_images), int(n_records), int(n_boxes)

    def run_label(self, run_id: str) -> str:
        """The run's name as listed: its stored name, else its default name (models, images, date)."""
        with self._read() as conn:
            row = conn.execute("SELECT name, created_at, settings FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"unknown run {run_id!r} in {self.path}")
            if row[0]:
                return str(row[0])
            (linked,) = conn.execute(
                "SELECT COUNT(DISTINCT image_id) FROM run_images WHERE run_id = ?", (run_id,)
            ).fetchone()
            (recorded,) = conn.execute(
                "SELECT COUNT(DISTINCT image_id || char(0) || COALESCE(image_name, '')) FROM inferences "
                "WHERE run_id = ?",
                (run_id,),
            ).fetchone()
            n = max(int(linked or 0), int(recorded or 0))
            models = [str(m) for m in loads_json(row[2]).get("models", []) or []]
            if not models:
                models = self._run_models(conn, run_id)
        return run_name(models, int(n), str(row[1]))

    def load_run(self, run_id: str) -> tuple[pd.DataFrame, pd.DataFrame, RunInfo]:
        """The run's inferences and detections (schema columns and dtypes, in the order stored) and its RunInfo."""
        with self._read() as conn:
            info = self._require_run(conn, run_id).info()
            inf = conn.execute(
                f"SELECT {', '.join(INFERENCE_COLUMNS)} FROM inferences WHERE run_id = ? ORDER BY rowid", (run_id,)
            ).fetchall()
            det = conn.execute(
                f"SELECT {', '.join(DETECTION_COLUMNS)} FROM detections WHERE run_id = ? ORDER BY rowid", (run_id,)
            ).fetchall()
        return (
            coerce_inferences(rows_frame(inf, INFERENCE_COLUMNS)),
            coerce_detections(rows_frame(det, DETECTION_COLUMNS)),
            info,
        )

    def run_models(self, run_id: str) -> list[str]:
        """The run's models: those planned (settings) first, then any other with a record."""
        with self._read() as conn:
            return self._run_models(conn, run_id)

    # -- pairs: one record per (image, model); bulk ingest and resume --

    def done_pairs(self, run_id: str) -> set[tuple[str, str]]:
        """The (image_id, model) pairs of the run that have a record (failed ones included)."""
        with self._read() as conn:
            return self._done_pairs(conn, run_id)

    def missing_pairs(self, run_id: str, image_ids: Sequence[str], models: Sequence[str]) -> list[tuple[str, str]]:
        """The (image_id, model) pairs with no record yet, image by image in the order given, each once."""
        done = self.done_pairs(run_id)
        out: list[tuple[str, str]] = []
        for image_id in dict.fromkeys(image_ids):
            out.extend((image_id, m) for m in dict.fromkeys(models) if (image_id, m) not in done)
        return out

    def add_records(self, run_id: str, inferences: pd.DataFrame, detections: pd.DataFrame) -> int:
        """Add record tables (`core.records` schema) to an existing run in ONE transaction; returns the pairs added.

        Idempotent: only the (image_id, model) pairs the run does not have yet are inserted, with their detections;
        pairs already there are left as they are. StoreError for rows of another run, a pair twice in `inferences`,
        or detections of a pair `inferences` does not have.
        """
        with self._write() as conn:
            return self.insert_records(conn, run_id, inferences, detections)

    def insert_records(
        self, conn: sqlite3.Connection, run_id: str, inferences: pd.DataFrame, detections: pd.DataFrame
    ) -> int:
        """`add_records` inside the caller's write transaction `conn` (an import adds the run and its records in one);
        returns the records added."""
        inf = coerce_inferences(inferences)
        det = coerce_detections(detections)
        for name, df in (("inferences", inf), ("detections", det)):
            if len(df) and not (df["run_id"] == run_id).fillna(False).all():
                raise StoreError(f"{name} holds rows of another run than {run_id}")
        pairs = list(zip(inf["image_id"].fillna(""), inf["model"], strict=True))
        identified = [p for p in pairs if p[0]]
        if len(set(identified)) != len(identified):
            raise StoreError(f"inferences for run {run_id} hold an (image, model) pair twice")
        det_pairs = set(det[["image_id", "model"]].drop_duplicates().itertuples(index=False, name=None))
        if not det_pairs <= set(identified):
            raise StoreError(f"detections for run {run_id} hold boxes of a pair with no inferences row")
        done = self._done_pairs(conn, run_id)
        # rows without a content id (unreadable images) are not pairs: each is added as its own error row
        keep = [not p[0] or p not in done for p in pairs]
        if not any(keep):
            return 0
        new = {p for p, k in zip(pairs, keep, strict=True) if k and p[0]}
        conn.executemany(_INSERT_INFERENCE, (r for r, k in zip(sql_rows(inf), keep, strict=True) if k))
        if det_pairs <= new:  # every box is new (a whole run, an import): no filter per box
            conn.executemany(_INSERT_DETECTION, sql_rows(det))
        else:
            keep_box = np.fromiter((p in new for p in zip(det["image_id"], det["model"], strict=True)), bool, len(det))
            mine = det.loc[keep_box]
            conn.executemany(_INSERT_DETECTION, sql_rows(mine))
        return sum(keep)


# --- runner hook ---------------------------------------------------------------------------------------------------


def record_into(
    store: RunsMixin,
    run_id: str,
    threshold: float,
    *,
    created_at: str | None = None,
    sources: Sequence[ImageSource] = (),
) -> Callable[[DetectionResult, int, int], None]:
    """An `on_result` for `core.execution.runner.run`: each finished (image, model) goes into the store at once, in its own
    transaction, so a killed process loses at most the result in flight.

    The run must exist (`store.start_run`) and be the one `runner.run(..., run_id=run_id)` makes. Every row gets
    `created_at` (default: now, once). With `sources` (the run's images), each image's bytes are kept in the store
    and listed in the run (under each name it came with) the first time one of its results arrives. Two files with the
    same content are one image: the first one's record is kept, the second name is linked to it.
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

    recorded: set[tuple[str, str]] = set()
    named: set[tuple[str, str]] = set()

    def on_result(result: DetectionResult, done: int = 0, total: int = 0) -> None:
        image_id = result.image_id
        if sources and image_id and (image_id, result.image_name) not in named:
            source = find(result)
            if source is not None:  # the bytes once, and every name this content came under
                store.put_image(replace(source, name=result.image_name), run_id=run_id)
            kept.add(image_id)
            named.add((image_id, result.image_name))
        if image_id and (image_id, result.model) in recorded:
            return  # the same content under another file name: one record per (image, model)
        store.add_result(run_id, result, threshold=threshold, created_at=stamp)
        if image_id:
            recorded.add((image_id, result.model))

    return on_result
