"""Team reviews: a reviewer's verdict and note per image of a run, with the whole history kept."""

from __future__ import annotations

import pandas as pd

from core.config import REVIEW_VERDICTS
from core.records import now_iso
from core.store.common import REVIEW_COLUMNS, StoreError, _frame, _one_line
from core.store.runs import RunsMixin

MAX_REVIEWER_CHARS = 80
MAX_NOTE_CHARS = 2000


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
