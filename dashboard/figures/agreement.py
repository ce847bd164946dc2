"""Agreement between two models without ground truth: boxes both found, only A, only B, per image."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.compare.matching import Agreement
from dashboard.figures.common import (
    display_name,
    empty_figure,
    mark_untrained,
    model_color,
    plain_array,
)

AGREEMENT_MAX_BARS = 60  # past this many images, the bars are the images the models disagree on most


def most_disagreeing(per_image: pd.DataFrame, n: int = AGREEMENT_MAX_BARS) -> pd.DataFrame:
    """The `n` rows of `per_image` with the most boxes only one model found (only_a + only_b), then the most boxes
    both found; ties keep the table's order. All rows, in their order, when there are at most `n`."""
    if len(per_image) <= n:
        return per_image
    key = pd.DataFrame({"diff": per_image["only_a"] + per_image["only_b"], "both": per_image["both"]})
    order = key.sort_values(["diff", "both"], ascending=False, kind="stable").index[:n]
    return per_image.loc[order]


def agreement_figure(
    agreement: Agreement, *, names: Mapping[str, str] | None = None, untrained: bool = False
) -> go.Figure:
    """Stacked bars per image: boxes both models found, found only by A, only by B.

    Past AGREEMENT_MAX_BARS images only the images with the most disagreement get a bar (`most_disagreeing`; ten
    thousand bars of a few pixels say nothing, and weigh megabytes in the browser); the title says how many of how many.
    `names` maps image ids to display names for the x tick labels; bars carry the image id in customdata.
    """
    per_image = most_disagreeing(agreement.per_image)
    if per_image.empty:
        return empty_figure("No images to compare.", untrained=untrained)
    ids = per_image["image_id"].astype(str).to_numpy(dtype=object)
    names = names or {}
    ticks = plain_array(names.get(i, i[:12]) for i in ids)
    custom = np.column_stack([ids, plain_array(names.get(i, i) for i in ids)])  # one array shared by the traces
    series = (
        ("both", "both", "#2CA02C"),
        ("only_a", f"only {display_name(agreement.model_a)}", model_color(agreement.model_a)),
        ("only_b", f"only {display_name(agreement.model_b)}", model_color(agreement.model_b)),
    )
    fig = go.Figure()
    for column, name, color in series:
        fig.add_trace(
            go.Bar(
                x=ids,
                y=per_image[column].to_numpy(),
                name=name,
                marker={"color": color},
                customdata=custom,
                hovertemplate="%{customdata[1]}<br>" + name + ": %{y}<extra></extra>",
            )
        )
    share = "n/a" if math.isnan(agreement.agreement) else f"{agreement.agreement:.0%}"
    shown = len(agreement.per_image)
    subset = f"<br>the {len(per_image)} of {shown} images with the most boxes only one model found" * (
        len(per_image) < shown
    )
    fig.update_layout(
        barmode="stack",
        title={
            "text": f"Agreement {display_name(agreement.model_a)} vs {display_name(agreement.model_b)}: {share} "
            f"(score ≥ {agreement.threshold:.2f}, IoU ≥ {agreement.iou:.2f}){subset}"
        },
        yaxis_title="boxes",
        xaxis={"type": "category", "tickmode": "array", "tickvals": ids, "ticktext": ticks},
    )
    return mark_untrained(fig, untrained)
