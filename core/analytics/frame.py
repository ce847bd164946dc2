"""RunFrame: one run's records held column by column, strings coded as integers, plus its score histograms.

Why not pandas over the whole detections table: at 2 million boxes a pandas frame with string columns takes about a
gigabyte and each group-by a second or more; the same boxes as integer codes and float arrays take ~70 MB, and every
aggregation the pages need is one boolean mask and one `np.bincount` (10-30 ms on two cores). Strings are coded once,
in Arrow (`pyarrow.compute.index_in`), never per row in Python.

Boxes are sorted by (image, model), stable, so one image's boxes are a slice (`image_slice`) and rows come back in the
order they were stored. `hist[model, label, k]` counts the boxes with `score` in `[k/100, (k+1)/100)` (k = 100: score
1.0), so the boxes at or above a threshold t = k/100 are `hist[..., k:].sum()`: exactly `score >= t`, since the edges
are the same doubles the slider's value rounds to (`threshold_bin`; other thresholds fall back to a mask).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.config import DETECTION_COLUMNS
from core.records import coerce_detections, coerce_inferences, latest_run, ok_mask

SCORE_BINS = 100  # histogram bins per unit score: thresholds on a 0.01 grid are exact cumulative sums
BIN_EDGES = np.arange(SCORE_BINS + 1, dtype=np.float64) / SCORE_BINS  # k/100, correctly rounded like the literal 0.k


def threshold_bin(threshold: float) -> int | None:
    """The histogram bin k whose left edge is exactly `threshold` (k/100), or None when it is off the 0.01 grid."""
    k = round(float(threshold) * SCORE_BINS)
    if 0 <= k <= SCORE_BINS and BIN_EDGES[k] == float(threshold):
        return k
    return None


def _chunks(values: pa.ChunkedArray | pa.Array | list[pa.Array]) -> list[pa.Array]:
    if isinstance(values, list):
        return values
    return list(values.chunks) if isinstance(values, pa.ChunkedArray) else [values]


def _dictionary_chunk(chunk: pa.Array) -> bool:
    """A dictionary-encoded chunk whose codes can be used as they are (no nulls in the indices)."""
    return pa.types.is_dictionary(chunk.type) and chunk.indices.null_count == 0


def _dictionary_codes(values: pa.ChunkedArray | pa.Array | list[pa.Array], dictionary: pa.Array) -> np.ndarray:
    """Positions of `values` in `dictionary` (every value must be there) as int32, computed in Arrow. A dictionary-
    encoded chunk (a Parquet segment's string columns) maps its small dictionary and takes by index: the millions
    of strings are never materialised (that cast once cost hundreds of MB of peak memory at 2 million boxes)."""
    parts = []
    for chunk in _chunks(values):
        if _dictionary_chunk(chunk):
            mapping = _dictionary_codes(chunk.dictionary.cast(pa.string()), dictionary)
            parts.append(mapping[chunk.indices.to_numpy(zero_copy_only=False)])
        else:
            idx = pc.index_in(chunk.cast(pa.string()), value_set=dictionary).fill_null(-1)  # -1: unused entry
            parts.append(np.asarray(idx.to_numpy(zero_copy_only=False), dtype=np.int32))
    return np.concatenate(parts).astype(np.int32, copy=False) if parts else np.empty(0, np.int32)


def _first_seen(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Distinct values in order of first appearance (Arrow's `unique` keeps that order); a dictionary chunk gives
    its values in order of their first index, without decoding the column."""
    firsts = []
    for chunk in _chunks(values):
        if _dictionary_chunk(chunk):
            idx = chunk.indices.to_numpy(zero_copy_only=False)
            present, first = np.unique(idx, return_index=True)
            firsts.append(chunk.dictionary.cast(pa.string()).take(pa.array(present[np.argsort(first)])))
        else:
            firsts.append(pc.unique(chunk.cast(pa.string())))
    if not firsts:
        return pa.array([], type=pa.string())
    return pc.unique(pa.concat_arrays(firsts))


@dataclass(frozen=True, eq=False)
class RunFrame:
    """The records of one view (a stored run, or a session's latest run per image and model), ready to aggregate.

    `inferences` is the (small) inferences table as stored. Per box: `img` (index into `image_ids`), `model` (into
    `models`), `label` (into `labels`/`label_ids`), `run` (into `run_ids`), `score`, `boxes` (x1, y1, x2, y2).
    """

    inferences: pd.DataFrame
    image_ids: np.ndarray  # object: image_id per image code (inference images first, in order of appearance)
    models: tuple[str, ...]
    labels: np.ndarray  # object: label name per label code
    label_ids: np.ndarray  # int64: label_id per label code
    run_ids: np.ndarray  # object
    img: np.ndarray
    model: np.ndarray
    label: np.ndarray
    run: np.ndarray
    score: np.ndarray
    boxes: np.ndarray
    hist: np.ndarray = field(repr=False)  # [model, label, bin] box counts
    _starts: np.ndarray = field(repr=False)  # first box of image i is _starts[i], last + 1 is _starts[i + 1]

    @property
    def n_boxes(self) -> int:
        return int(self.score.size)

    @property
    def nbytes(self) -> int:
        """Memory held by the box arrays and histograms (the inferences table not counted)."""
        arrays = (self.img, self.model, self.label, self.run, self.score, self.boxes, self.hist, self._starts)
        return int(sum(a.nbytes for a in arrays))

    @classmethod
    def from_arrow(cls, inferences: pd.DataFrame, detections: pa.Table) -> RunFrame:
        """From the inferences frame and an Arrow table with DETECTION_COLUMNS (one run per (image, model))."""
        inferences = coerce_inferences(inferences).reset_index(drop=True)

        def column(name: str) -> list[pa.Array]:  # dictionary chunks stay encoded (see _dictionary_codes)
            return _chunks(detections.column(name))

        def inf_column(name: str) -> pa.Array:
            return pa.array(inferences[name].fillna("").astype(object).to_numpy(), type=pa.string())

        det_ids = column("image_id")
        image_ids = pc.unique(pa.concat_arrays([_first_seen(inf_column("image_id")), *map(_first_seen, det_ids)]))
        models = pc.unique(pa.concat_arrays([_first_seen(inf_column("model")), *map(_first_seen, column("model"))]))
        label_chunks = [c if _dictionary_chunk(c) else c.cast(pa.string()).fill_null("") for c in column("label")]
        labels = pc.unique(pa.concat_arrays([pa.array([], pa.string()), *map(_first_seen, label_chunks)]))
        run_ids = pc.unique(pa.concat_arrays([_first_seen(inf_column("run_id")), *map(_first_seen, column("run_id"))]))
        img = _dictionary_codes(det_ids, image_ids)
        model = _dictionary_codes(detections.column("model"), models).astype(np.int16)
        label = _dictionary_codes(label_chunks, labels)  # chunks may differ in type (dictionary or plain)
        label = label.astype(np.int16)
        run = _dictionary_codes(detections.column("run_id"), run_ids).astype(np.int16)
        score = detections.column("score").to_numpy().astype(np.float64, copy=False)
        boxes = np.column_stack(
            [detections.column(c).to_numpy().astype(np.float64, copy=False) for c in ("x1", "y1", "x2", "y2")]
        )
        label_id_col = detections.column("label_id").to_numpy()
        label_ids = np.zeros(len(labels), dtype=np.int64)
        if len(label):
            label_ids[label] = label_id_col  # one label_id per label name (the last write wins; they agree)
        order = np.argsort(img, kind="stable")
        img, model, label, run, score, boxes = (
            img[order],
            model[order],
            label[order],
            run[order],
            score[order],
            boxes[order],
        )
        starts = np.searchsorted(img, np.arange(len(image_ids) + 1), side="left")
        bins = np.clip(np.searchsorted(BIN_EDGES, score, side="right") - 1, 0, SCORE_BINS)
        n_models, n_labels = max(len(models), 1), max(len(labels), 1)
        flat = (model.astype(np.int64) * n_labels + label) * (SCORE_BINS + 1) + bins
        hist = np.bincount(flat, minlength=n_models * n_labels * (SCORE_BINS + 1)).reshape(n_models, n_labels, -1)
        return cls(
            inferences=inferences,
            image_ids=np.asarray(image_ids.to_pylist(), dtype=object),
            models=tuple(models.to_pylist()),
            labels=np.asarray(labels.to_pylist(), dtype=object),
            label_ids=label_ids,
            run_ids=np.asarray(run_ids.to_pylist(), dtype=object),
            img=img,
            model=model,
            label=label,
            run=run,
            score=score,
            boxes=boxes,
            hist=hist,
            _starts=starts,
        )

    @classmethod
    def from_frames(cls, inferences: pd.DataFrame, detections: pd.DataFrame) -> RunFrame:
        """From pandas record tables (a session's): only the latest run of each (image, model) is kept."""
        det = coerce_detections(latest_run(coerce_detections(detections)))
        table = pa.Table.from_pandas(det[list(DETECTION_COLUMNS)], preserve_index=False)
        return cls.from_arrow(inferences, table)

    # -- lookups -----------------------------------------------------------------------------------------------------

    def image_code(self, image_id: str) -> int | None:
        hits = np.flatnonzero(self.image_ids == image_id)
        return int(hits[0]) if hits.size else None

    def model_codes(self, models: list[str] | tuple[str, ...] | None) -> np.ndarray:
        """Codes of the named models (unknown names skipped); all models for None."""
        if models is None:
            return np.arange(len(self.models))
        return np.array([self.models.index(m) for m in models if m in self.models], dtype=np.int64)

    def label_codes(self, classes: list[str] | tuple[str, ...] | None) -> np.ndarray | None:
        """Codes of the named classes; None (no filter) for None or empty."""
        if not classes:
            return None
        wanted = set(classes)
        return np.array([i for i, name in enumerate(self.labels) if name in wanted], dtype=np.int64)

    def image_slice(self, image_id: str) -> slice:
        code = self.image_code(image_id)
        if code is None:
            return slice(0, 0)
        return slice(int(self._starts[code]), int(self._starts[code + 1]))

    def ok_inferences(self) -> pd.DataFrame:
        return self.inferences[ok_mask(self.inferences)] if len(self.inferences) else self.inferences

    def rows(self, index: np.ndarray | slice) -> pd.DataFrame:
        """Detection rows (DETECTION_COLUMNS, schema dtypes) of the boxes at `index`, in stored order."""
        return rows_of(self.columns(index))

    def columns(self, index: np.ndarray | slice) -> dict[str, np.ndarray]:
        """The boxes at `index` as the arrays `rows_of` turns into rows: codes, scores and boxes, with the (small)
        dictionaries they index. Cheap to pickle (no string per box): what a worker process is sent."""
        return {
            "run_ids": self.run_ids, "image_ids": self.image_ids, "models": np.asarray(self.models, dtype=object),
            "label_ids": self.label_ids, "labels": self.labels, "run": self.run[index], "img": self.img[index],
            "model": self.model[index], "label": self.label[index], "score": self.score[index],
            "boxes": self.boxes[index],
        }  # fmt: skip


def rows_of(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """Detection rows (DETECTION_COLUMNS, schema dtypes) from `RunFrame.columns`."""
    c = columns
    boxes = c["boxes"]
    frame = pd.DataFrame(
        {
            "run_id": c["run_ids"][c["run"]] if c["run_ids"].size else np.array([], dtype=object),
            "image_id": c["image_ids"][c["img"]],
            "model": c["models"][c["model"]] if c["models"].size else [],
            "label_id": c["label_ids"][c["label"]] if c["label_ids"].size else np.array([], dtype=np.int64),
            "label": c["labels"][c["label"]] if c["labels"].size else np.array([], dtype=object),
            "score": c["score"],
            "x1": boxes[:, 0],
            "y1": boxes[:, 1],
            "x2": boxes[:, 2],
            "y2": boxes[:, 3],
        }
    )
    return coerce_detections(frame)
