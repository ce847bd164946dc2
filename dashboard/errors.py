"""The Evaluate page's error analysis, cached (no widgets): TIDE, the confusion matrix, slices and worst images, the
paired bootstrap, calibration and operating points of the viewed records against the session's ground truth.

Everything is remembered with the viewed RunFrame (`cache.memo`, keyed by the ground truth's hash and the options),
so a rerun that changes neither costs nothing. The series are the viewed models (`core.evaluate.series.from_frames`).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.analytics import RunFrame
from core.evaluate.boxlevel import Confusion, confusion, match_series, worst_images
from core.evaluate.calibration import Calibration, calibration
from core.evaluate.errors import ERROR_NAMES, MAIN_ERRORS, SPECIAL_ERRORS
from core.evaluate.operating import OperatingPoint, operating_points
from core.evaluate.report import ErrorReport, error_report
from core.evaluate.series import SeriesSet, from_frames
from core.evaluate.significance import Comparison, compare
from core.evaluate.slices import folder_tags, read_tags, size_slices, tag_slices
from dashboard import groundtruth, state
from dashboard.cache import memo

THRESHOLDS_KEY = "per_class_thresholds"  # session: {series: {class: threshold}} chosen on the Evaluate page
GALLERY_LINK_MAX = 200  # images a Gallery link carries at most (the URL holds their ids)


def series_view(key: str, data: bytes, name: str) -> SeriesSet:
    """The viewed models as series against the ground truth (SeriesError when none has ground truth)."""
    return memo(state.frame(), _series_view, key, name, data)


def _series_view(rf: RunFrame, key: str, name: str, data: bytes) -> SeriesSet:
    gt = groundtruth.ground_truth(key, data, name)
    return from_frames(gt, rf.inferences, rf.rows(slice(None)))


def _ss(rf: RunFrame, key: str, name: str, data: bytes) -> SeriesSet:
    return memo(rf, _series_view, key, name, data)


def reports(key: str, data: bytes, name: str, series: tuple[str, ...]) -> list[ErrorReport]:
    """TIDE of each series (all, per class, per size)."""
    return memo(state.frame(), _reports, key, name, data, series)


def _reports(rf: RunFrame, key: str, name: str, data: bytes, series: tuple[str, ...]) -> list[ErrorReport]:
    ss = _ss(rf, key, name, data)
    return [error_report(ss, s) for s in series]


def tide_frame(reports_: list[ErrorReport]) -> pd.DataFrame:
    """series, error (tidecv's names), dAP, count: what `figures.errors.tide_bars` draws."""
    rows = []
    for r in reports_:
        for k in (*MAIN_ERRORS, *SPECIAL_ERRORS):
            rows.append((r.series, ERROR_NAMES[k], r.result.dap[k], r.result.counts.get(k, pd.NA)))
    return pd.DataFrame(rows, columns=["series", "error", "dAP", "count"])


def summary_table(reports_: list[ErrorReport]) -> pd.DataFrame:
    """One row per series: AP50, every dAP, the error counts."""
    rows = []
    for r in reports_:
        row = {"series": r.series, "AP50": r.result.ap50}
        row |= {ERROR_NAMES[k]: r.result.dap[k] for k in (*MAIN_ERRORS, *SPECIAL_ERRORS)}
        row |= {f"n {ERROR_NAMES[k]}": r.result.counts[k] for k in MAIN_ERRORS}
        rows.append(row)
    return pd.DataFrame(rows)


def per_class_table(report: ErrorReport) -> pd.DataFrame:
    """Per class: AP50 and each dAP (NaN where a fix leaves the class empty)."""
    rows = [{"class": c, **{("AP50" if k == "ap50" else ERROR_NAMES[k]): v for k, v in figs.items()}}
            for c, figs in report.per_class.items()]  # fmt: skip
    return pd.DataFrame(rows)


def per_size_table(report: ErrorReport) -> pd.DataFrame:
    """Per COCO size: TIDE on that size's boxes."""
    rows = [{"size": s, "AP50": r.ap50, **{ERROR_NAMES[k]: r.dap[k] for k in (*MAIN_ERRORS, *SPECIAL_ERRORS)}}
            for s, r in report.per_size.items()]  # fmt: skip
    return pd.DataFrame(rows)


def _series_matches(rf: RunFrame, key: str, name: str, data: bytes, series: str):  # noqa: ANN202
    ss = _ss(rf, key, name, data)
    return match_series(ss, ss.get(series))


def confusion_of(key: str, data: bytes, name: str, series: str, threshold: float) -> Confusion:
    return memo(state.frame(), _confusion, key, name, data, series, float(threshold))


def _confusion(rf: RunFrame, key: str, name: str, data: bytes, series: str, threshold: float) -> Confusion:
    ss = _ss(rf, key, name, data)
    return confusion(ss, memo(rf, _series_matches, key, name, data, series), threshold)


def worst_of(key: str, data: bytes, name: str, series: str, threshold: float, by: str, n: int) -> pd.DataFrame:
    rf = state.frame()
    ss = _ss(rf, key, name, data)
    frame = worst_images(ss, memo(rf, _series_matches, key, name, data, series), threshold, by=by, n=n)
    return frame.assign(image_id=frame["image"].map(ss.image_keys))


def slices_of(key: str, data: bytes, name: str, series: str, tags_csv: bytes | None) -> pd.DataFrame:
    """Sizes, folders and (with a CSV) tags of one series (SeriesError for an unusable CSV)."""
    return memo(state.frame(), _slices, key, name, data, series, tags_csv)


def _slices(rf: RunFrame, key: str, name: str, data: bytes, series: str, tags_csv: bytes | None) -> pd.DataFrame:
    ss = _ss(rf, key, name, data)
    s = ss.get(series)
    tags = folder_tags(ss)
    if tags_csv:
        tags |= read_tags(tags_csv, ss)
    parts = [size_slices(ss, s)]
    if len(tags) > 1 or tags_csv:
        parts.append(tag_slices(ss, s, tags))
    return pd.concat(parts, ignore_index=True)


def compare_of(key: str, data: bytes, name: str, a: str, b: str, resamples: int, seed: int,
               tags_csv: bytes | None = None) -> Comparison:  # fmt: skip
    """The paired bootstrap of b against a (per class, size, folder and tag)."""
    return memo(state.frame(), _compare, key, name, data, a, b, int(resamples), int(seed), tags_csv)


def _compare(rf: RunFrame, key, name, data, a, b, resamples, seed, tags_csv) -> Comparison:  # noqa: ANN001
    ss = _ss(rf, key, name, data)
    tags = folder_tags(ss)
    if tags_csv:
        tags |= read_tags(tags_csv, ss)
    return compare(ss, a, b, resamples=resamples, seed=seed, slices=tags if len(tags) > 1 or tags_csv else None)


def comparison_table(c: Comparison) -> pd.DataFrame:
    """Rows: metric, then per class and per slice AP; columns a, b, diff, low, high."""
    rows = [{"name": k, **iv.to_json()} for k, iv in c.metrics.items()]
    rows += [{"name": f"AP {cls}", **m["AP"].to_json()} for cls, m in c.per_class.items()]
    rows += [{"name": f"AP {sl}", **m["AP"].to_json()} for sl, m in c.per_slice.items()]
    return pd.DataFrame(rows, columns=["name", "a", "b", "diff", "low", "high"])


def calibration_of(key: str, data: bytes, name: str, series: str) -> Calibration:
    return memo(state.frame(), _calibration, key, name, data, series)


def _calibration(rf: RunFrame, key: str, name: str, data: bytes, series: str) -> Calibration:
    m = memo(rf, _series_matches, key, name, data, series)
    return calibration(m.d_score[~m.ignored], m.tp[~m.ignored])


def operating_of(key: str, data: bytes, name: str, series: str, objective: str, target: float,
                 threshold: float) -> list[OperatingPoint]:  # fmt: skip
    return memo(state.frame(), _operating, key, name, data, series, objective, float(target), float(threshold))


def _operating(rf, key, name, data, series, objective, target, threshold) -> list[OperatingPoint]:  # noqa: ANN001
    ss = _ss(rf, key, name, data)
    m = memo(rf, _series_matches, key, name, data, series)
    keep = ~m.ignored
    return operating_points(m.d_score[keep], m.d_cls[keep], m.tp[keep], m.g_cls[~m.g_crowd], ss.class_names,
                            objective=objective, target=target, global_threshold=threshold)  # fmt: skip


def points_table(points: list[OperatingPoint]) -> pd.DataFrame:
    return pd.DataFrame([p.__dict__ for p in points])


def use_thresholds(series: str, points: list[OperatingPoint]) -> None:
    """Keep the per-class thresholds of a series in the session (THRESHOLDS_KEY)."""
    st.session_state.setdefault(THRESHOLDS_KEY, {})[series] = {p.label: p.threshold for p in points}


def gallery_params(ss: SeriesSet, image_ids: list[int], extra: dict[str, str] | None = None) -> dict[str, str] | None:
    """Query params opening these ground-truth images in the Gallery (our image ids; the first GALLERY_LINK_MAX),
    with `extra` params (a TIDE bin's `error` and `series`)."""
    ours = [ss.image_keys[i] for i in image_ids if i in ss.image_keys][:GALLERY_LINK_MAX]
    return {"images": ",".join(ours), **(extra or {})} if ours else None


def error_boxes_of(key: str, data: bytes, name: str, series: str, error: str, image_id: str) -> list[tuple]:
    """The boxes of one TIDE error type of a series on one of our images, to highlight: (x1, y1, x2, y2, text) in
    original pixels: the detection of a Cls, Loc, Both, Dupe or Bkg error, the ground-truth box of a Miss."""
    return memo(state.frame(), _error_boxes, key, name, data, series, error, image_id)


def _error_boxes(rf: RunFrame, key: str, name: str, data: bytes, series: str, error: str, image_id: str) -> list:
    ss = _ss(rf, key, name, data)
    if series not in ss.series or error not in MAIN_ERRORS:
        return []
    gt_ids = [g for g, ours in ss.image_keys.items() if ours == image_id]
    (report,) = memo(rf, _reports, key, name, data, (series,))
    rows = report.error_boxes()
    rows = rows[(rows["error"] == error) & rows["image"].isin(gt_ids)]
    s, names, anns = ss.series[series], ss.class_names, ss.coco["annotations"]
    out = []
    for row, gt in zip(rows["row"].tolist(), rows["gt"].tolist(), strict=True):
        if row >= 0:
            x1, y1, x2, y2 = map(float, s.boxes[row])
            text = f"{ERROR_NAMES[error]}: {names.get(int(s.cls[row]), s.cls[row])} {s.score[row]:.2f}"
        else:
            x, y, w, h = map(float, anns[gt]["bbox"])
            x1, y1, x2, y2 = x, y, x + w, y + h
            text = f"{ERROR_NAMES[error]}: {names.get(anns[gt]['category_id'], anns[gt]['category_id'])}"
        out.append((x1, y1, x2, y2, text))
    return out
