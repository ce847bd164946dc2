"""Team reviews: a reviewer's verdict and note per image and pair of series of a run, with the whole history kept.

A pair is unordered: it is stored as (model_a, model_b) in sorted order, and a verdict given with the models the other
way round is flipped ("A better" <-> "B better") before it is stored, so that (image, pair, reviewer) has one current
verdict whatever order a page showed them in. Every save is a new row (nothing is updated in place); the latest row per
(image, pair, reviewer) is the current verdict, and a REVIEW_WITHDRAWN row (undo) leaves none. Two reviewers saving at
the same moment each insert their own row under the write lock: neither overwrites the other.

A pair can also be the same model (or two models) in two runs (fp32 vs fp16, CPU vs GPU, two checkpoints): `run_b`
names model_b's run ('' = the same run as model_a, every same-run pair and every review made before cross-run pairs).
Its two sides (run, model) are stored in sorted order too, so the row lives under the run that sorts first (`run_id`,
run A): the zip of run A carries it, deleting run A deletes it, and importing that zip into a store without run B keeps
it (it then names a run that store does not hold). `reviews(run_id, as_run_b=True)` adds the pairs where the run is B,
for the results; the image is the same content (image_id) in both runs, with a record in each.
"""

from __future__ import annotations

import sqlite3

import pandas as pd

from core.config import REVIEW_FLIPPED, REVIEW_IDENTITIES, REVIEW_VERDICTS, REVIEW_WITHDRAWN
from core.records import now_iso
from core.store.common import REVIEW_COLUMNS, StoreError, clip_line, rows_frame
from core.store.connection import StoreBase

MAX_REVIEWER_CHARS = 80
MAX_NOTE_CHARS = 2000
_KEY = "run_id, run_b, image_id, model_a, model_b, reviewer"  # one current verdict per key


def canonical_pair(model_a: str, model_b: str, verdict: str) -> tuple[str, str, str]:
    """(model_a, model_b, verdict) with the models in sorted order and the verdict in those terms."""
    if model_b and (not model_a or model_b < model_a):
        return model_b, model_a, REVIEW_FLIPPED.get(verdict, verdict)
    return model_a, model_b, verdict


def canonical_sides(run_a: str, model_a: str, run_b: str, model_b: str, verdict: str) -> tuple[str, str, str, str, str]:
    """(run_a, model_a, run_b, model_b, verdict) of a cross-run pair with the sides (run, model) in sorted order."""
    if (run_b, model_b) < (run_a, model_a):
        return run_b, model_b, run_a, model_a, REVIEW_FLIPPED.get(verdict, verdict)
    return run_a, model_a, run_b, model_b, verdict


class ReviewsMixin(StoreBase):
    """The `reviews` table: a verdict per (run, image, pair of the run's models, reviewer), with its history."""

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
        identity: str = "typed",
        run_b: str = "",
    ) -> None:
        """Record a reviewer's verdict on one image of a run (REVIEW_VERDICTS, or REVIEW_WITHDRAWN to take the
        current one back). The reviewer's latest row per (image, pair) is the current verdict; earlier ones stay in
        the history.

        "A" and "B" are `model_a`/`model_b`, by default the run's first two models; the pair is stored in sorted
        order with the verdict flipped to match. `identity` says how the reviewer was known (REVIEW_IDENTITIES):
        "typed" (a name typed in, unverified) or "signed-in" (OpenID Connect).

        `run_b` (another run: a cross-run pair) is model_b's run; the image needs a record in both runs, and the
        row goes under the run whose side sorts first, as the module docstring says.
        """
        reviewer = clip_line(reviewer or "", MAX_REVIEWER_CHARS)
        if not reviewer:
            raise StoreError("a review needs a reviewer name")
        if verdict not in (*REVIEW_VERDICTS, REVIEW_WITHDRAWN):
            raise StoreError(f"unknown verdict {verdict!r}: one of {', '.join(REVIEW_VERDICTS)}")
        if identity not in REVIEW_IDENTITIES:
            raise StoreError(f"unknown reviewer identity {identity!r}: one of {', '.join(REVIEW_IDENTITIES)}")
        note = str(note or "").strip()[:MAX_NOTE_CHARS]
        run_b = "" if run_b == run_id else str(run_b or "")
        with self._write() as conn:
            if run_b:
                return self._add_cross_run(conn, run_id, run_b, image_id, reviewer, verdict, note, identity,
                                           model_a or "", model_b or "")  # fmt: skip
            models = self._run_models(conn, run_id)
            self._require_image(conn, run_id, image_id, records_only=False)
            a = model_a if model_a is not None else (models[0] if models else "")
            b = model_b if model_b is not None else (models[1] if len(models) > 1 else "")
            for m in (a, b):
                if m and m not in models:
                    raise StoreError(f"model {m!r} is not in run {run_id!r}")
            if verdict in ("A better", "B better") and not (a and b and a != b):
                raise StoreError(f"{verdict!r} needs two different models A and B")
            a, b, verdict = canonical_pair(a, b, verdict)
            _insert(conn, (run_id, image_id, a, b, reviewer, verdict, note, now_iso(), identity, ""))
        return None

    def _add_cross_run(
        self, conn: sqlite3.Connection, run_a: str, run_b: str, image_id: str, reviewer: str, verdict: str,
        note: str, identity: str, model_a: str, model_b: str,
    ) -> None:  # fmt: skip
        """A verdict on model_a of run_a vs model_b of run_b: both named, the image recorded in both runs."""
        for run, model in ((run_a, model_a), (run_b, model_b)):
            if not model or model not in self._run_models(conn, run):
                raise StoreError(f"model {model!r} is not in run {run!r}")
            self._require_image(conn, run, image_id, records_only=True)
        run_a, model_a, run_b, model_b, verdict = canonical_sides(run_a, model_a, run_b, model_b, verdict)
        _insert(conn, (run_a, image_id, model_a, model_b, reviewer, verdict, note, now_iso(), identity, run_b))

    @staticmethod
    def _require_image(conn: sqlite3.Connection, run_id: str, image_id: str, *, records_only: bool) -> None:
        """StoreError unless the run has a record of the image (or, not `records_only`, holds it without one)."""
        sql = "SELECT 1 FROM inferences WHERE run_id = ? AND image_id = ?"
        params: tuple = (run_id, image_id)
        if not records_only:
            sql += " UNION ALL SELECT 1 FROM run_images WHERE run_id = ? AND image_id = ?"
            params += (run_id, image_id)
        if not image_id or conn.execute(sql + " LIMIT 1", params).fetchone() is None:
            raise StoreError(f"image {image_id!r} is not in run {run_id!r}")

    def reviews(self, run_id: str, *, history: bool = False, as_run_b: bool = False) -> pd.DataFrame:
        """The run's reviews (REVIEW_COLUMNS): the current verdict per (image, pair, reviewer), withdrawn ones left
        out, sorted by image, pair and reviewer; with `history`, every row (withdrawals included) in the order
        saved. The rows stored under the run (its same-run pairs and the cross-run pairs where it is run A); with
        `as_run_b`, also the cross-run pairs stored under another run where it is run B."""
        cols = ", ".join(REVIEW_COLUMNS)
        which = "(run_id = ? OR run_b = ?)" if as_run_b else "run_id = ?"
        runs: tuple = (run_id, run_id) if as_run_b else (run_id,)
        with self._read() as conn:
            self._require_run(conn, run_id)
            if history:
                sql = f"SELECT {cols} FROM reviews WHERE {which} ORDER BY id"
                params: tuple = runs
            else:
                sql = (
                    f"SELECT {cols} FROM ("
                    f"  SELECT {cols}, ROW_NUMBER() OVER (PARTITION BY {_KEY} ORDER BY id DESC) AS k"
                    f"  FROM reviews WHERE {which}"
                    f") WHERE k = 1 AND verdict != ? ORDER BY image_id, model_a, model_b, run_id, run_b, reviewer"
                )
                params = (*runs, REVIEW_WITHDRAWN)
            rows = conn.execute(sql, params).fetchall()
        return rows_frame(rows, REVIEW_COLUMNS).astype("string")


def _insert(conn: sqlite3.Connection, row: tuple) -> None:
    """One reviews row, in REVIEW_COLUMNS order."""
    conn.execute(
        f"INSERT INTO reviews ({', '.join(REVIEW_COLUMNS)}) VALUES ({', '.join('?' * len(REVIEW_COLUMNS))})", row
    )
