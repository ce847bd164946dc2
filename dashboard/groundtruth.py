"""The session's ground truth, shared by every page (no widgets): which file is in use, parsed once, what it holds;
and importing another detector's COCO results against it.

The ground truth a user picked on the Evaluate page (the bundled gallery annotations by default, or an uploaded COCO
JSON) lives in session state under `GT_KEY` as its bytes with their content hash, so that every page of the session
(Evaluate's metrics, the Gallery's true/false-positive overlay and "GT errors" sort, Compare's runtime AP) uses the same
file; parsing and validating it is cached by that hash (`ground_truth`). Evaluating runs against it is
dashboard.evaluation's.
"""

from __future__ import annotations

import io

import pandas as pd
import streamlit as st

from core.config import GALLERY_ANNOTATIONS
from core.evaluate import GroundTruth, GroundTruthError, load_ground_truth, with_images
from core.evaluate.external import import_coco_results
from core.images import content_id
from core.text import fmt_ids
from dashboard import cache, state
from dashboard.text import md

GT_KEY = "detlens_gt"  # session: {"digest", "name", "source", "data"} of the ground truth in use
GALLERY, UPLOAD = "gallery", "upload"
GALLERY_NAME = f"{GALLERY_ANNOTATIONS.parent.name}/{GALLERY_ANNOTATIONS.name}"
GT_UPLOAD_HELP = (
    "images (id, file_name, width, height), annotations (bbox [x, y, w, h] in pixels) and categories. Images match "
    "ours by file name; categories map to the models' classes by name."
)
IMPORT_NOTE = (
    "A COCO results JSON from any detector (a YOLO, a served model): a list of image_id (the ground truth's image ids), "
    "category_id (COCO ids), bbox [x, y, w, h] in pixels and score. It becomes a run in the run store (weights, device "
    "and precision 'external'); images the results do not mention count as images where the detector found nothing."
)
LABEL_ID_CHOICES = {"coco": "COCO's (torchvision label ids)", "gt": "the ground truth's own"}


@st.cache_resource(show_spinner=False, max_entries=8)
def ground_truth(key: str, _data: bytes, name: str = "") -> GroundTruth:
    """The validated ground truth (not yet matched to images), parsed once per content hash `key`; shared, not copied
    per call (tens of thousands of boxes take a second to unpickle): never mutate it (`with_images` copies).

    Raises GroundTruthError (one line; errors are not cached, so a fixed file is read again).
    """
    buf = io.BytesIO(_data)
    buf.name = name
    return load_ground_truth(buf)


@st.cache_data(show_spinner=False, max_entries=1)
def gallery_bytes() -> bytes:
    """The bundled gallery annotations (gallery/annotations.json)."""
    return GALLERY_ANNOTATIONS.read_bytes()


def session_info() -> dict | None:
    """The session's ground truth as {"digest", "name", "source", "data"}, or None when none is loaded."""
    info = st.session_state.get(GT_KEY)
    return info if isinstance(info, dict) and info.get("data") else None


def use(data: bytes, name: str, source: str) -> GroundTruth:
    """Validate `data` and make it the session's ground truth; GroundTruthError (one line) leaves none loaded."""
    key = content_id(data)  # the same content hash as an image's id
    try:
        gt = ground_truth(key, data, name)
    except GroundTruthError:
        forget()
        raise
    st.session_state[GT_KEY] = {"digest": key, "name": name, "source": source, "data": data}
    return gt


def forget() -> None:
    st.session_state.pop(GT_KEY, None)


def session_gt() -> GroundTruth | None:
    """The session's ground truth (validated), or None when none is loaded or it no longer validates."""
    info = session_info()
    if info is None:
        return None
    try:
        return ground_truth(info["digest"], info["data"], info.get("name", ""))
    except GroundTruthError:
        return None


def gt_summary(gt: GroundTruth) -> list[str]:
    """Escaped captions: what the ground truth holds, how many categories map to label ids, the unmapped ones."""
    dropped = f"; {gt.dropped_annotations} boxes of unmapped categories left out" if gt.dropped_annotations else ""
    out = [
        f"{md(gt.source or 'ground truth')}: {gt.n_images} images, {gt.n_boxes} boxes, "
        f"{len(gt.category_map)} of {len(gt.raw['categories'])} categories mapped to model label ids{dropped}."
    ]
    if gt.unmapped_categories:
        out.append("Categories no model class carries: " + md(fmt_ids(gt.unmapped_categories)))
    return out


def own_numbering(gt: GroundTruth) -> bool:
    """Whether the ground truth's category ids differ from the model label ids (results may then use either)."""
    return any(k != v for k, v in gt.category_map.items())


def category_table(gt: GroundTruth) -> pd.DataFrame:
    """GT category id and name -> model label id and name (NA for names no model class carries)."""
    names = gt.class_names
    rows = [
        {
            "GT id": c["id"],
            "GT name": c["name"],
            "label id": gt.category_map.get(c["id"]),
            "model label": names.get(gt.category_map[c["id"]], "") if c["id"] in gt.category_map else "",
        }
        for c in gt.raw["categories"]
    ]
    frame = pd.DataFrame(rows, columns=["GT id", "GT name", "label id", "model label"])
    return frame.astype({"GT id": "int64", "GT name": "string", "label id": "Int64", "model label": "string"})


def for_image(gt: GroundTruth, image_id: str, name: str, size: tuple[int, int] | None) -> GroundTruth | None:
    """`gt` matched to one image (file name and, when known, size), or None when the image has no ground truth."""
    matched = with_images(gt, {image_id: name}, image_sizes={image_id: size} if size else None)
    return matched if image_id in matched.image_id_map else None


# --- importing another detector's results -------------------------------------------------------------------------------


def import_results(
    data: bytes, file_name: str, model_name: str, gt: GroundTruth, latency_ms: float | None, label_ids: str
) -> str:
    """Import a COCO results file as a run and show it (`adopt_imported`); the message to flash.

    Raises ExternalResultsError or StoreError (one line) and leaves the store as it was.
    """
    buf = io.BytesIO(data)
    buf.name = file_name
    run_id = import_coco_results(
        cache.store(),
        buf,
        model_name=model_name,
        gt=gt,
        images=state.images(),
        latency_ms=latency_ms,
        label_ids=label_ids,
        threshold=state.threshold(),
    )
    return adopt_imported(run_id, " ".join(model_name.split()))


def adopt_imported(run_id: str, name: str) -> str:
    """Show an imported run: beside this session's results, or instead of the stored run being viewed; the message."""
    store = cache.store()
    if state.viewed_run():
        state.view_run(run_id)
        return f"Imported {name} as run {run_id}; now viewing that run."
    inf, det, info = store.load_run(run_id)
    state.add_run(info, inf, det)
    state.add_images(list(store.run_images(run_id).values()))
    return f"Imported {name} as run {run_id} and added it to this session."
