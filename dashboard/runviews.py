"""What the pages show, computed on the viewed RunFrame (core.analytics) and remembered with it (cache.memo).

A stored run and this session's own rows are both a RunFrame (dashboard.state.frame), so every page takes this one
path: nothing builds the whole detections table: counts are bincounts, charts get pre-aggregated frames, and only the
boxes at or above the threshold (a few per image) are ever turned into rows, for matching. A threshold is a float or
per-class thresholds (core.analytics.thresholds.ClassThresholds); the float case is as it always was.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from core.analytics import RunFrame, queries
from core.analytics.thresholds import ClassThresholds, Threshold
from core.compare import agreement
from core.compare.matching import Agreement
from core.config import RUNTIME_SCORE_TOL
from core.records import coco_results, models_in
from dashboard import cache, figures, views
from dashboard.cache import memo


def _threshold_key(threshold: Threshold) -> Threshold:
    """The threshold as a memo key: a float, or the (hashable) per-class thresholds."""
    return threshold if isinstance(threshold, ClassThresholds) else float(threshold)


def image_table(
    rf: RunFrame,
    models: Sequence[str],
    threshold: Threshold,
    classes: Sequence[str] | None = None,
    *,
    disagree: bool = True,
) -> pd.DataFrame:
    """One row per image the models processed: image_name, `detections` (boxes with score >= threshold of the chosen
    classes, all models), median `latency_ms` of its successful rows, failed `errors`, `disagreement` (boxes left
    unmatched between consecutive models, as matching.disagreement_per_image) and `per_model` (model -> boxes).
    `disagree=False` leaves `disagreement` 0 (it matches boxes image by image: computed only when the Gallery sorts by
    it)."""
    return memo(rf, _image_table, tuple(models), _threshold_key(threshold), tuple(classes or ()), disagree)


def _image_table(
    rf: RunFrame, models: tuple[str, ...], threshold: Threshold, classes: tuple[str, ...], disagree: bool
) -> pd.DataFrame:
    inf = rf.inferences[rf.inferences["model"].isin(list(models))]
    if inf.empty:
        return pd.DataFrame(columns=["image_id", "image_name", *views.SORT_KEYS.values()])
    ok = inf[inf["error"] == ""]
    base = inf.groupby("image_id", sort=False).agg(image_name=("image_name", "first")).reset_index()
    matrix = queries.count_matrix(rf, threshold, list(classes) or None, list(models))
    lookup = {v: k for k, v in enumerate(rf.image_ids)}
    codes = np.fromiter((lookup[i] for i in base["image_id"]), dtype=np.int64, count=len(base))
    model_codes = [rf.models.index(m) if m in rf.models else -1 for m in models]
    per_model = {
        m: (matrix[codes, c] if c >= 0 else np.zeros(len(codes), dtype=np.int64))
        for m, c in zip(models, model_codes, strict=True)
    }
    latency = ok.groupby("image_id")["total_ms"].median().rename("latency_ms")
    errors = (inf["error"] != "").groupby(inf["image_id"]).sum().rename("errors")
    table = base.set_index("image_id").join([latency, errors])
    table.insert(1, "detections", np.sum(list(per_model.values()), axis=0).astype(int) if models else 0)
    if disagree:
        ids = base["image_id"].astype(object).tolist()
        table["disagreement"] = queries.disagreement(rf, list(models), threshold, ids, list(classes) or None)
    else:
        table["disagreement"] = 0
    table["per_model"] = [
        dict(zip(models, map(int, row), strict=True)) for row in zip(*per_model.values(), strict=True)
    ]
    table = table[["image_name", "detections", "latency_ms", "errors", "disagreement", "per_model"]]
    return table.reset_index()


def pair_agreement(rf: RunFrame, model_a: str, model_b: str, threshold: Threshold) -> Agreement:
    """The boxes of two models (score >= threshold) matched on the images both processed without error."""
    return memo(rf, _pair_agreement, model_a, model_b, _threshold_key(threshold))


def _pair_agreement(rf: RunFrame, model_a: str, model_b: str, threshold: Threshold) -> Agreement:
    ok = rf.inferences[rf.inferences["error"] == ""]
    ran = [set(ok.loc[ok["model"] == m, "image_id"].astype(object)) for m in (model_a, model_b)]
    return queries.agreement(rf, model_a, model_b, threshold, sorted(ran[0] & ran[1]))


def compare_data(rf: RunFrame, threshold: Threshold) -> dict:
    """The Compare page's aggregates: speed table, class counts, 0.02 score bins, count curves, labels. The score
    bins and count curves span every threshold: per-class thresholds change the table and the class counts."""
    return memo(rf, _compare_data, _threshold_key(threshold))


def _compare_data(rf: RunFrame, threshold: Threshold) -> dict:
    return {
        "table": queries.counts_above(rf, threshold),
        "classes": queries.class_counts(rf, threshold),
        "scores": memo(rf, queries.score_histogram, 2),
        "curves": memo(rf, queries.mean_count_curve),
    }


def compare_static(rf: RunFrame) -> dict:
    """What the Compare page shows that no widget changes, built once per frame: latency box and breakdown, the model
    card and its accuracy chart, untrained models, image names. Figures are shared: st.plotly_chart copies them."""
    return memo(rf, _compare_static)


def _compare_static(rf: RunFrame) -> dict:
    inf = rf.inferences
    card = figures.model_card(inf, cache.model_table())
    return {
        "latency": figures.latency_box(inf),
        "breakdown": figures.latency_breakdown(inf),
        "latency_note": views.latency_caption(inf),
        "card": card,
        "accuracy": figures.accuracy_vs_speed(card),
        "untrained": views.untrained_models(inf),
        "names": views.image_names(inf),
        "models": models_in(inf),
    }


def label_choices(rf: RunFrame, threshold: Threshold) -> list[str]:
    """The classes with a box at or above the threshold (queries.labels_above), sorted: a class filter's options."""
    return memo(rf, queries.labels_above, _threshold_key(threshold))


# --- the Data page: filters evaluated on the frame, pages of rows, exports streamed to a file -----------------------

EXPORT_CHUNK = 100_000  # rows converted and written at a time: an export of millions of rows stays in bounded memory


def data_filter(rf: RunFrame, models: Sequence[str], name: str, errors_only: bool) -> tuple[pd.DataFrame, np.ndarray]:
    """(inference rows, indices of the boxes) the Data page's filters keep: the boxes of the kept rows' images and
    models, as the pandas page did (`det[image_id in view & model in view]`)."""
    return memo(rf, _data_filter, tuple(models), name, bool(errors_only))


def _data_filter(
    rf: RunFrame, models: tuple[str, ...], name: str, errors_only: bool
) -> tuple[pd.DataFrame, np.ndarray]:
    view = rf.inferences
    if models:
        view = view[view["model"].isin(list(models))]
    if name:
        view = view[view["image_name"].str.contains(name, case=False, regex=False).fillna(False)]
    if errors_only:
        view = view[view["error"] != ""]
    if len(view) == len(rf.inferences):
        return view, np.arange(rf.n_boxes)
    keep = queries.box_mask(rf, 0.0, models_in(view), None, view["image_id"].unique())
    return view, np.flatnonzero(keep)


def detection_page(rf: RunFrame, index: np.ndarray, page: int, size: int) -> pd.DataFrame:
    """Rows `page` (1-based) of `size` of the kept boxes."""
    return rf.rows(index[(page - 1) * size : page * size])


def _spool(write: Callable[[io.BufferedWriter], None]) -> io.BufferedRandom:
    """A temporary file (deleted when closed) that `write` fills, rewound: what st.download_button streams."""
    out = tempfile.TemporaryFile()  # noqa: SIM115 (handed to Streamlit, which reads and closes it)
    write(out)
    out.seek(0)
    return out


def csv_export(rf: RunFrame, index: np.ndarray) -> Callable[[], io.BufferedRandom]:
    """A deferred CSV of the kept boxes, written chunk by chunk (st.download_button calls it on click)."""

    def write(out: io.BufferedWriter) -> None:
        for start in range(0, max(len(index), 1), EXPORT_CHUNK):
            rf.rows(index[start : start + EXPORT_CHUNK]).to_csv(out, index=False, header=start == 0)

    return lambda: _spool(write)


def parquet_export(rf: RunFrame, index: np.ndarray) -> Callable[[], io.BufferedRandom]:
    """A deferred Parquet file of the kept boxes, one row group per chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def write(out: io.BufferedWriter) -> None:
        writer = None
        for start in range(0, max(len(index), 1), EXPORT_CHUNK):
            table = pa.Table.from_pandas(rf.rows(index[start : start + EXPORT_CHUNK]), preserve_index=False)
            writer = writer or pq.ParquetWriter(out, table.schema)
            writer.write_table(table)
        writer.close()

    return lambda: _spool(write)


def coco_export(
    rf: RunFrame, index: np.ndarray, model: str, numbering: dict[str, int]
) -> Callable[[], io.BufferedRandom]:
    """A deferred COCO results file of one model's kept boxes (records.coco_results), written chunk by chunk."""
    code = rf.models.index(model)
    index = index[rf.model[index] == code]

    def write(out: io.BufferedWriter) -> None:
        out.write(b"[")
        first = True
        for start in range(0, len(index), EXPORT_CHUNK):
            for row in coco_results(rf.rows(index[start : start + EXPORT_CHUNK]), numbering):
                out.write((b"" if first else b", ") + json.dumps(row).encode())
                first = False
        out.write(b"]")

    return lambda: _spool(write)


def models_with_boxes(rf: RunFrame, index: np.ndarray) -> list[str]:
    present = np.unique(rf.model[index])
    return [rf.models[m] for m in sorted(present, key=int)]


def runtime_rows(rf: RunFrame, threshold: float) -> pd.DataFrame:
    """core.compare.agreement.runtime_agreement of every runtime series against eager, on the boxes near the threshold only."""
    return memo(rf, _runtime_rows, float(threshold))


def _runtime_rows(rf: RunFrame, threshold: float) -> pd.DataFrame:
    refs = agreement.references(rf.inferences)
    if not refs:
        return pd.DataFrame(columns=list(agreement.SUMMARY_COLUMNS))
    models = sorted(set(refs) | set(refs.values()))
    shown = queries.boxes(rf, max(0.0, threshold - RUNTIME_SCORE_TOL), models)
    return agreement.runtime_agreement(rf.inferences, shown, threshold=threshold)
