"""The Gallery page's logic: the filtered, sorted image list, the paginated thumbnail grid, the open image and its
navigation callbacks, per-image ground truth. The page reads widgets and renders; what it shows is decided here.

The grid shows one page of GALLERY_PAGE_ROWS x GALLERY_PAGE_COLUMNS images: their thumbnails are files kept in the
store (core.images.thumbs, made once), so a page sends about 24 small JPEGs to the browser whatever the run's size. Opening an
image (its Open button, a link with `?image=`, a point picked on Compare) sets GALLERY_IMAGE_KEY and shows the detail
view; "Back to grid" clears it and shows the grid page holding that image."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.analytics import RunFrame, queries
from core.analytics.thresholds import ClassThresholds, Threshold, global_threshold
from core.config import GALLERY_PAGE_COLUMNS, GALLERY_PAGE_ROWS
from core.evaluate.errors import ERROR_NAMES, MAIN_ERRORS
from core.images import ImageSource, LoadedImage, thumbs
from core.inference.models import short_name
from core.records import models_in
from core.store import REVIEW_COLUMNS
from dashboard import cache, evaluation, groundtruth, runviews, state, tiles, views
from dashboard import errors as error_views
from dashboard.figures.overlays import with_highlights
from dashboard.text import md

GT_SORT = "GT errors"  # false positives + missed boxes against the session's ground truth (Evaluate page)
PAGE_SIZE = GALLERY_PAGE_ROWS * GALLERY_PAGE_COLUMNS  # thumbnails per grid page
PAGE_KEY = "gallery_page"
IMAGES_PARAM = "images"  # query param: the only images to list (a link from Evaluate)
ERROR_PARAM, SERIES_PARAM = "error", "series"  # query params of a TIDE error bin's link: its type and model
FAILED_MARK = "⚠️"  # before the caption of an image some model failed on


def reviews_of(run_ids: dict[str, str]) -> pd.DataFrame:
    """Current reviews of the runs the shown images belong to."""
    store = cache.store()
    parts = [store.reviews(r) for r in sorted(set(run_ids.values())) if store.has_run(r)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(REVIEW_COLUMNS))


def image_list(
    rf: RunFrame,
    models: list[str],
    threshold: Threshold,
    classes: list[str],
    sort_by: str,
    descending: bool,
    name_filter: str,
    verdicts: list[str],
) -> pd.DataFrame:
    """The images the Gallery steps through: image table with verdicts, sorted, filtered by name and verdict.
    (GT errors are counted at the global threshold, per-class thresholds or not.)"""
    inf = rf.inferences
    table = runviews.image_table(rf, models, threshold, classes or None, disagree=sort_by == "disagreement")
    table = views.with_verdicts(table, reviews_of(views.review_runs(inf, state.viewed_run())))
    if sort_by == GT_SORT:
        gt_info = groundtruth.session_info()
        frame_eval = evaluation.frame_evaluation(gt_info["digest"], gt_info["data"], gt_info["name"], rf)
        gt_errors = evaluation.gt_errors(frame_eval, models, global_threshold(threshold))
        table = table.assign(gt_errors=table["image_id"].map(gt_errors))
        table = table.sort_values("gt_errors", ascending=not descending, na_position="last", kind="stable")
    else:
        table = views.sort_images(table, sort_by, descending)
    if name_filter:
        table = table[table["image_name"].str.contains(name_filter, case=False, regex=False)]
    if verdicts:
        table = table[table["verdict"].isin(verdicts)]
    only = only_images()
    if only is not None:
        table = table[table["image_id"].isin(only)]
    return table


def shown_counts(table: pd.DataFrame, image_id: str) -> dict[str, int]:
    """Boxes shown per model on one listed image (its image_list row's `per_model`: threshold and classes applied)."""
    rows = table.loc[table["image_id"] == image_id, "per_model"]
    return dict(rows.iloc[0]) if len(rows) else {}


def only_images() -> list[str] | None:
    """The images a link from another page limits the Gallery to (`?images=id,id,...`: an error bin, a confusion
    cell, the worst images on Evaluate), or None."""
    raw = st.query_params.get(IMAGES_PARAM)
    return [i for i in raw.split(",") if i] if raw else None


def linked_error() -> tuple[str, str] | None:
    """(error type, model) of the TIDE error bin whose link opened the Gallery (`?error=loc&series=MODEL`), or None."""
    error, series = st.query_params.get(ERROR_PARAM), st.query_params.get(SERIES_PARAM)
    return (error, series) if error in MAIN_ERRORS and series and only_images() is not None else None


def _show_all() -> None:
    for param in (IMAGES_PARAM, ERROR_PARAM, SERIES_PARAM):
        st.query_params.pop(param, None)


def only_note() -> None:
    """Say that the grid is limited to a linked set of images (which error type of which model, for a TIDE bin),
    with a button that shows them all again."""
    only = only_images()
    if only is not None:
        c1, c2 = st.columns([4, 1], vertical_alignment="center")
        linked = linked_error()
        what = (
            f"with {ERROR_NAMES[linked[0]]} errors of {md(linked[1])} (TIDE)" if linked else "of the link you followed"
        )
        c1.caption(f"Showing only the {len(only)} images {what} (from Evaluate).")
        c2.button("Show all images", key="gallery_all", on_click=_show_all)


def highlight_errors(fig: object, image_id: str, models: list[str], size: tuple[int, int]) -> object:
    """The overlay with the boxes of the linked TIDE error bin (`linked_error`) on this image outlined in its
    model's panel, against the session's ground truth; `fig` as it is when there is nothing to outline."""
    linked, gt_info = linked_error(), groundtruth.session_info()
    if linked is None or gt_info is None or linked[1] not in models:
        return fig
    error, series = linked
    boxes = error_views.error_boxes_of(gt_info["digest"], gt_info["data"], gt_info["name"], series, error, image_id)
    st.caption(f"{len(boxes)} {ERROR_NAMES[error]} error{'s' * (len(boxes) != 1)} of {md(series)} on this image "
               "(TIDE), outlined in dashed yellow.")  # fmt: skip
    return with_highlights(fig, size, boxes, col=models.index(series) + 1, name=f"{ERROR_NAMES[error]} errors")


def shown_boxes(rf: RunFrame, image_id: str, threshold: Threshold) -> tuple[pd.DataFrame, float]:
    """(one image's boxes, the float threshold the figures still apply to them): every box and the threshold, or,
    with per-class thresholds, only the boxes at or above theirs (and 0)."""
    if isinstance(threshold, ClassThresholds):
        return queries.image_boxes(rf, image_id, threshold), 0.0
    return queries.image_boxes(rf, image_id), float(threshold)


def opened_image(ids: list[str]) -> str | None:
    """The open image (detail view), or None for the grid; an open image the filters no longer list is closed."""
    current = st.session_state.get(views.GALLERY_IMAGE_KEY)
    if current is not None and current not in ids:
        st.session_state.pop(views.GALLERY_IMAGE_KEY, None)
        return None
    return current


def open_image(image_id: str) -> None:
    """A thumbnail's Open button (a callback)."""
    st.session_state[views.GALLERY_IMAGE_KEY] = image_id


def back_to_grid(ids: list[str]) -> None:
    """Close the open image and show the grid page that holds it (a callback)."""
    current = st.session_state.pop(views.GALLERY_IMAGE_KEY, None)
    st.query_params.pop("image", None)  # else the URL would open it again (widgets.adopt_gallery_params)
    if current in ids:
        st.session_state[PAGE_KEY] = ids.index(current) // PAGE_SIZE + 1


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
    session_gt = groundtruth.session_gt()
    if session_gt is None or image is None or not image.ok:
        return None, None
    size = image_size(inf, image_id)
    return groundtruth.for_image(session_gt, image_id, name, size), size


def page_count(n_images: int) -> int:
    return max(1, -(-n_images // PAGE_SIZE))


def page_rows(table: pd.DataFrame, page: int) -> pd.DataFrame:
    """Rows of grid page `page` (1-based, clamped to the pages there are)."""
    page = min(max(1, page), page_count(len(table)))
    return table.iloc[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]


def failures(inf: pd.DataFrame, image_ids: list[str], models: list[str]) -> dict[str, list[str]]:
    """image_id -> the models that failed on it, for the few images of one grid page."""
    bad = inf[(inf["error"] != "") & inf["image_id"].isin(image_ids) & inf["model"].isin(models)]
    return {str(i): models_in(g) for i, g in bad.groupby("image_id", sort=False)}


NAME_CHARS = 22  # an image name in a tile's caption and button: longer ones keep their start and end


def short_text(text: str, limit: int = NAME_CHARS) -> str:
    """`text` in at most `limit` characters: its start and end around an ellipsis when longer."""
    text = str(text)
    if len(text) <= limit:
        return text
    head = (limit - 1) * 2 // 3
    return f"{text[:head]}…{text[len(text) - (limit - 1 - head) :]}"


def caption(row: object, failed: list[str]) -> str:
    """A thumbnail's caption: name (shortened to fit the tile), boxes per model at the threshold (a line each, short
    names), the models that failed."""
    counts = "  \n".join(f"{md(short_name(m))}: {n}" for m, n in row.per_model.items())
    text = f"**{md(short_text(row.image_name))}**  \n{counts}"
    if failed:
        text += f"  \n{FAILED_MARK} failed: {md(', '.join(short_name(m) for m in failed))}"
    return text


def thumbnail_image(
    image_id: str, refs: dict[str, ImageSource], size: tuple[int, int] | None = None, boxes: tuple = ()
) -> tuple[bytes, str]:
    """(the tile st.image shows: the kept thumbnail with `boxes` drawn, fitted into one tile size, else the
    placeholder; why there is no thumbnail)."""
    thumb = cache.store().thumbnail(image_id, refs.get(image_id))
    if not thumb.ok:
        return tiles.placeholder_tile(thumbs.placeholder()), thumb.error
    try:
        return tiles.tile_jpeg(str(thumb.path), thumb.path.stat().st_mtime, size, boxes), ""
    except OSError as exc:
        return tiles.placeholder_tile(thumbs.placeholder()), str(exc)


def grid(
    table: pd.DataFrame,
    inf: pd.DataFrame,
    models: list[str],
    refs: dict[str, ImageSource],
    *,
    rf: RunFrame | None = None,
    threshold: Threshold = 0.0,
    classes: list[str] | None = None,
) -> None:
    """The page chooser and one page of tiles (the first model's boxes drawn at the threshold), each with its caption
    and one Open button naming the image it opens."""
    pages = page_count(len(table))
    st.session_state[PAGE_KEY] = min(max(1, int(st.session_state.get(PAGE_KEY, 1))), pages)
    c1, c2 = st.columns([1, 5], vertical_alignment="bottom")
    page = int(c1.number_input(f"Page (of {pages})", 1, pages, key=PAGE_KEY))
    rows = page_rows(table, page)
    first = (page - 1) * PAGE_SIZE
    drawn = models[0] if models and rf is not None else None
    shows = f" Boxes drawn: {md(short_name(drawn))}, score ≥ {threshold:.2f}." if drawn else ""
    c2.caption(f"Images {first + 1:,}–{first + len(rows):,} of {len(table):,}, {PAGE_SIZE} per page.{shows}")
    failed = failures(inf, rows["image_id"].astype(str).tolist(), models)
    sizes = image_sizes(inf, rows["image_id"].astype(str).tolist()) if drawn else {}
    cols: list = []
    for i, r in enumerate(rows.itertuples(index=False)):
        if i % GALLERY_PAGE_COLUMNS == 0:  # one row of columns per grid row: the rows line up whatever the shapes
            cols = st.columns(GALLERY_PAGE_COLUMNS)
        col = cols[i % GALLERY_PAGE_COLUMNS]
        boxes = ()
        if drawn:
            det, floor = shown_boxes(rf, r.image_id, threshold)
            boxes = tiles.tile_boxes(det, drawn, floor, classes)
        shown, why = thumbnail_image(r.image_id, refs, sizes.get(r.image_id), boxes)
        col.image(shown, width=tiles.TILE_SIZE[0])  # its own size: never stretched past the thumbnail's pixels
        col.caption(caption(r, failed.get(r.image_id, [])) + (f"  \n_{md(why)}_" if why else ""))
        col.button(
            f"Open {short_text(r.image_name, 14)}", key=f"gallery_open_{i}", on_click=open_image, args=(r.image_id,),
            width="stretch", help=f"Open {r.image_name} with every model's boxes",
        )  # fmt: skip


def image_sizes(inf: pd.DataFrame, image_ids: list[str]) -> dict[str, tuple[int, int]]:
    """image_id -> (width, height) recorded for the few images of one grid page."""
    rows = inf[inf["image_id"].isin(image_ids) & (inf["error"] == "")].dropna(subset=["width", "height"])
    last = rows.drop_duplicates("image_id", keep="last")
    return {str(i): (int(w), int(h)) for i, w, h in zip(last["image_id"], last["width"], last["height"], strict=True)}
