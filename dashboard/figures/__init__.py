"""Pure figure builders: the records tables of DESIGN.md in, plotly figures out (no streamlit here).

One module per chart family: `common` (colours, names, marks, helpers), `latency`, `detections`, `agreement`,
`evaluation`, `overlays`, `cards`. Everything public is re-exported here (`from dashboard import figures`).

Conventions every builder keeps:
- one colour per model (`model_color`, from its name: the same on every page and in every session) and per class
  (`class_colors`: a class's own colour, never two classes of one image in the same colour);
- one look (`apply_look`: font, title, margins, grid, hover), put on every builder's figure here;
- a figure with nothing to show says why in one sentence (`empty_figure`), which pages show as text (`empty_message`);
- a chart of detections drawn from any row with untrained weights (`core.config.WEIGHTS_UNTRAINED`) carries a visible
  `UNTRAINED_MARK` annotation (`mark_untrained`); builders fed only detections take an `untrained` flag (see
  `untrained_models`);
- rows with a non-empty `error` are left out of latency statistics;
- empty tables (with the schema's columns) give a figure, never an exception.
"""

from __future__ import annotations

import functools

import plotly.graph_objects as go

from dashboard.figures.agreement import AGREEMENT_MAX_BARS, agreement_figure, most_disagreeing
from dashboard.figures.cards import MODEL_CARD_COLUMNS, accuracy_vs_speed, model_card
from dashboard.figures.common import (
    CLASS_PALETTE,
    EMPTY_ANNOTATION_NAME,
    LOG_SCALE_SPREAD,
    MODEL_PALETTE,
    STAGE_COLORS,
    STAGE_NAMES,
    UNTRAINED_ANNOTATION_NAME,
    apply_look,
    class_color,
    class_colors,
    display_name,
    empty_figure,
    empty_message,
    log_ticks,
    mark_untrained,
    model_color,
    plain,
    successful,
    untrained_models,
)
from dashboard.figures.detections import (
    MERGE_MIN_POINTS,
    MERGE_X_CELLS,
    MERGE_Y_CELLS,
    WEBGL_MIN_POINTS,
    class_counts_chart,
    count_curves,
    count_points,
    count_vs_threshold,
    merge_close_points,
    score_histograms,
    speed_vs_count,
)
from dashboard.figures.evaluation import PARETO_NAME, frontier, pareto_front, per_class_ap, pr_curves_chart
from dashboard.figures.latency import (
    LATENCY_STATS_COLUMNS,
    OUTLIERS_PER_MODEL,
    latency_box,
    latency_breakdown,
    latency_medians,
    latency_outliers,
    latency_stats,
)
from dashboard.figures.overlays import (
    JPEG_QUALITY,
    OUTCOME_STYLES,
    OVERLAY_MARGIN,
    OVERLAY_WIDTH,
    display_size,
    image_data_uri,
    outcome_overlay_grid,
    overlay_figure,
    overlay_grid,
)

__all__ = [
    "CLASS_PALETTE", "EMPTY_ANNOTATION_NAME", "JPEG_QUALITY", "apply_look", "class_colors", "empty_message", "LOG_SCALE_SPREAD", "MODEL_CARD_COLUMNS", "MODEL_PALETTE", "OUTCOME_STYLES",
    "OVERLAY_MARGIN", "OVERLAY_WIDTH", "PARETO_NAME", "STAGE_COLORS", "STAGE_NAMES", "UNTRAINED_ANNOTATION_NAME",
    "accuracy_vs_speed", "agreement_figure", "class_color", "class_counts_chart", "count_curves", "count_points",
    "count_vs_threshold", "display_size", "empty_figure", "frontier", "image_data_uri", "latency_box", "latency_breakdown",
    "latency_medians", "mark_untrained", "model_card", "model_color", "outcome_overlay_grid",
    "overlay_figure", "overlay_grid", "pareto_front", "per_class_ap", "plain", "pr_curves_chart", "score_histograms",
    "speed_vs_count", "successful", "untrained_models", "LATENCY_STATS_COLUMNS", "OUTLIERS_PER_MODEL",
    "WEBGL_MIN_POINTS", "display_name", "latency_outliers", "latency_stats", "log_ticks", "AGREEMENT_MAX_BARS",
    "most_disagreeing", "MERGE_MIN_POINTS", "MERGE_X_CELLS", "MERGE_Y_CELLS", "merge_close_points",
]  # fmt: skip


def _with_look(builder):  # noqa: ANN001, ANN202 - a figure builder, wrapped
    @functools.wraps(builder)
    def build(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        fig = builder(*args, **kwargs)
        return apply_look(fig) if isinstance(fig, go.Figure) else fig

    return build


# every public figure builder gives its figure the app's look
for _name in (
    "accuracy_vs_speed", "agreement_figure", "class_counts_chart", "count_vs_threshold", "empty_figure", "frontier",
    "latency_box", "latency_breakdown", "latency_medians", "outcome_overlay_grid", "overlay_figure", "overlay_grid",
    "per_class_ap", "pr_curves_chart", "score_histograms", "speed_vs_count",
):  # fmt: skip
    globals()[_name] = _with_look(globals()[_name])
