"""The Gallery page's logic: the filtered, sorted image list, navigation callbacks, per-image ground truth and the
thumbnail grid. The page reads widgets and renders; what it shows is decided here."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.analytics import RunFrame
from core.images import ImageSource, LoadedImage
from core.store import REVIEW_COLUMNS
from dashboard import cache, evaluation, runviews, state, views
from dashboard.text import md

GT_SORT = "GT errors"  # false positives + missed boxes against the session's ground truth (Evaluate page)
GRID_SIZE = 24  # thumbnails per grid page
GRID_COLUMNS = 6


def reviews_of(run_ids: dict[str, str]) -> pd.DataFrame:
    """Current reviews of the runs the shown images belong to."""
    store = cache.store()
    parts = [store.reviews(r) for r in sorted(set(run_ids.values())) if store.has_run(r)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(REVIEW_COLUMNS))


def image_list(
    rf: RunFrame,
    models: list[str],
    threshold: float,
    classes: list[str],
    sort_by: str,
    descending: bool,
    name_filter: str,
    verdicts: list[str],
) -> pd.DataFrame:
    """The images the Gallery steps through: image table with verdicts, sorted, filtered by name and verdict."""
    inf = rf.inferences
    table = runviews.image_table(rf, models, threshold, classes or None, disagree=sort_by == "disagreement")
    table = views.with_verdicts(table, reviews_of(views.review_runs(inf, state.viewed_run())))
    if sort_by == GT_SORT:
        gt_info = evaluation.session_info()
        gt_errors = evaluation.gt_errors(
            gt_info["digest"], gt_info["data"], gt_info["name"], inf, state.detections(), tuple(models), threshold
        )
        table = table.assign(gt_errors=table["image_id"].map(gt_errors))
        table = table.sort_values("gt_errors", ascending=not descending, na_position="last", kind="stable")
    else:
        table = views.sort_images(table, sort_by, descending)
    if name_filter:
        table = table[table["image_name"].str.contains(name_filter, case=False, regex=False)]
    if verdicts:
        table = table[table["verdict"].isin(verdicts)]
    return table


def current_image(ids: list[str]) -> str:
    """The shown image: the session's, else the first of `ids` (remembered)."""
    current = st.session_state.get(views.GALLERY_IMAGE_KEY)
    if current not in ids:
        current = st.session_state[views.GALLERY_IMAGE_KEY] = ids[0]
    return current


def step(ids: list[str], delta: int) -> None:
    """Previous/Next (a callback: it runs before the widgets are drawn again)."""
    current = st.session_state.get(views.GALLERY_IMAGE_KEY)
    at = ids.index(current) if current in ids else 0
    st.session_state[views.GALLERY_IMAGE_KEY] = ids[max(0, min(len(ids) - 1, at + delta))]


def picked() -> None:
    """The image selectbox changed."""
    st.session_state[views.GALLERY_IMAGE_KEY] = st.session_state["gallery_pick"]


def image_size(inf: pd.DataFrame, image_id: str) -> tuple[int, int] | None:
    """(width, height) recorded for an image's successful inferences, if known."""
    rows = inf[(inf["image_id"] == image_id) & (inf["error"] == "")]
    if len(rows) and rows[["width", "height"]].notna().all(axis=None):
        return int(rows["width"].iloc[-1]), int(rows["height"].iloc[-1])
    return None


def image_ground_truth(
    inf: pd.DataFrame, image_id: str, name: str, image: LoadedImage | None
) -> tuple[object | None, tuple[int, int] | None]:
    """(the session's ground truth matched to this image by file name and size, or None; the image's size)."""
    session_gt = evaluation.session_gt()
    if session_gt is None or image is None or not image.ok:
        return None, None
    size = image_size(inf, image_id)
    return evaluation.for_image(session_gt, image_id, name, size), size


def thumbnail_grid(table: pd.DataFrame, refs: dict[str, ImageSource]) -> None:
    """A page of GRID_SIZE thumbnails (with captions and Open buttons) of the listed images."""
    pages = max(1, -(-len(table) // GRID_SIZE))
    page = st.number_input("Page", 1, pages, 1, key="gallery_page") if pages > 1 else 1
    chunk = table.iloc[(page - 1) * GRID_SIZE : page * GRID_SIZE]
    cols = st.columns(GRID_COLUMNS)
    for i, r in enumerate(chunk.itertuples(index=False)):
        col = cols[i % GRID_COLUMNS]
        thumb = cache.thumbnail(r.image_id, refs[r.image_id]) if r.image_id in refs else None
        if thumb:
            col.image(thumb, width="stretch")
        col.caption(f"{md(r.image_name)}: {views.summary(r)}")
        if col.button("Open", key=f"gallery_open_{r.image_id}"):
            st.session_state[views.GALLERY_IMAGE_KEY] = r.image_id
            st.rerun()
