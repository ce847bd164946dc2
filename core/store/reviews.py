"""Team reviews: a reviewer's verdict and note per image and pair of series of a run, with the whole history kept.

A pair is unordered: it is stored as (model_a, model_b) in sorted order, and a verdict given with the models the other
way round is flipped ("A better" <-> "B better") before it is stored, so that (image, pair, reviewer) has one current
verdict whatever order a page showed them in. Every save is a new row (nothing is updated in place); the latest row per
(image, pair, reviewer) is the current verdict, and a REVIEW_WITHDRAWN row (undo) leaves none. Two reviewers saving at
the same moment each insert their own row under the write lock: neither overwrites the other.
"""

from __future__ import annotations

import sqlite3

import pandas as pd

from core.config import REVIEW_FLIPPED, REVIEW_IDENTITIES, REVIEW_VERDICTS, REVIEW_WITHDRAWN
from core.records import now_iso
from core.store.common import REVIEW_COLUMNS, StoreError, _frame, _one_line
from core.store.runs import RunsMixin

MAX_REVIEWER_CHARS = 80
MAX_NOTE_CHARS = 2000
_KEY = "image_id, model_a, model_b, reviewer"  # one current verdict per key (within a run)


def canonical_pair(model_a: str, model_b: str, verdict: str) -> tuple[str, str, str]:
    """(model_a, model_b, verdict) with the models in sorted order and the verdict in those terms."""
    if model_b and (not model_a or model_b < model_a):
        return model_b, model_a, REVIEW_FLIPPED.get(verdict, verdict)
    return model_a, model_b, verdict


def canonicalise_reviews(conn: sqlite3.Connection, run_id: str | None = None) -> None:
    """Rewrite stored rows whose pair is not in sorted order (stores and zips made before pairs were unordered)."""
    where = "model_b != '' AND (model_a = '' OR model_b < model_a)" + (" AND run_id = ?" if run_id else "")
    conn.execute(
        "UPDATE reviews SET model_a = model_b, model_b = model_a, verdict = CASE verdict "
        "WHEN 'A better' THEN 'B better' WHEN 'B better' THEN 'A better' ELSE verdict END "
        f"WHERE {where}",
        (run_id,) if run_id else (),
    )


class ReviewsMixin(RunsMixin):
    """The `reviews` table (verdicts name the run's models, hence the runs part)."""

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
    ) -> None:
        """Record a reviewer's verdict on one image of a run (REVIEW_VERDICTS, or REVIEW_WITHDRAWN to take the
        current one back). The reviewer's latest row per (image, pair) is the current verdict; earlier ones stay in
        the history.

        "A" and "B" are `model_a`/`model_b`, by default the run's first two models; the pair is stored in sorted
        order with the verdict flipped to match. `identity` says how the reviewer was known (REVIEW_IDENTITIES):
        "typed" (a name typed in, unverified) or "signed-in" (OpenID Connect).
        """
        reviewer = _one_line(reviewer or "", MAX_REVIEWER_CHARS)
        if not reviewer:
            raise StoreError("a review needs a reviewer name")
        if verdict not in (*REVIEW_VERDICTS, REVIEW_WITHDRAWN):
            raise StoreError(f"unknown verdict {verdict!r}: one of {', '.join(REVIEW_VERDICTS)}")
        if identity not in REVIEW_IDENTITIES:
            raise StoreError(f"unknown reviewer identity {identity!r}: one of {', '.join(REVIEW_IDENTITIES)}")
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
            a, b, verdict = canonical_pair(a, b, verdict)
            conn.execute(
                "INSERT INTO reviews (run_id, image_id, model_a, model_b, reviewer, verdict, note, created_at, "
                "identity) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, image_id, a, b, reviewer, verdict, note, now_iso(), identity),
            )

    def reviews(self, run_id: str, *, history: bool = False) -> pd.DataFrame:
        """The run's reviews (REVIEW_COLUMNS): the current verdict per (image, pair, reviewer), withdrawn ones left
        out, sorted by image, pair and reviewer; with `history`, every row (withdrawals included) in the order
        saved."""
        cols = ", ".join(REVIEW_COLUMNS)
        with self._read() as conn:
            self._require_run(conn, run_id)
            if history:
                sql = f"SELECT {cols} FROM reviews WHERE run_id = ? ORDER BY id"
                params: tuple = (run_id,)
            else:
                sql = (
                    f"SELECT {cols} FROM ("
                    f"  SELECT {cols}, ROW_NUMBER() OVER (PARTITION BY {_KEY} ORDER BY id DESC) AS k"
                    f"  FROM reviews WHERE run_id = ?"
                    f") WHERE k = 1 AND verdict != ? ORDER BY {_KEY}"
                )
                params = (run_id, REVIEW_WITHDRAWN)
            rows = conn.execute(sql, params).fetchall()
        return _frame(rows, REVIEW_COLUMNS).astype("string")
