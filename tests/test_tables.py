"""Tables that fit: review results for people (win rate with its interval, the agreement statistic named, no raw
None), and the Reviews page showing them."""

from __future__ import annotations

import math

import pytest

from dashboard.review_tables import NOT_DECIDED, agreement_text, win_rate_text
from tests.test_review_pages import RUN, A, B, open_page, stored_pair_run


@pytest.mark.parametrize(
    ("rate", "low", "high", "expected"),
    [
        (0.62, 0.48, 0.74, "62% (48-74%)"),
        (1.0, 0.5101, 1.0, "100% (51-100%)"),
        (0.5, math.nan, math.nan, "50%"),
        (math.nan, math.nan, math.nan, NOT_DECIDED),
        (None, None, None, NOT_DECIDED),
    ],
)
def test_win_rate_text(rate, low, high, expected):
    assert win_rate_text(rate, low, high) == expected


@pytest.mark.parametrize(
    ("statistic", "value", "reviewers", "expected"),
    [
        ("Cohen's kappa", 0.4, 2, "Cohen's kappa 0.40"),
        ("Krippendorff's alpha", -0.125, 3, "Krippendorff's alpha -0.12"),
        ("Cohen's kappa", math.nan, 2, "Cohen's kappa: not defined (too few shared images or one verdict only)"),
        ("", math.nan, 1, "one reviewer: no agreement to measure"),
    ],
)
def test_agreement_text_names_the_statistic(statistic, value, reviewers, expected):
    assert agreement_text(statistic, value, reviewers) == expected


def test_reviews_page_shows_one_row_per_pair_with_its_interval_and_named_agreement(private_run_store):
    from core.store import Store

    ids = stored_pair_run(private_run_store)
    store = Store(private_run_store)
    for image, (ana, bo) in zip(ids, [("A better", "A better"), ("A better", "B better"), ("B better", "B better")],
                                strict=True):  # fmt: skip
        store.add_review(RUN, image, "ana", ana, model_a=A, model_b=B)
        store.add_review(RUN, image, "bo", bo, model_a=A, model_b=B)
    at = open_page("pages/reviews.py")
    assert not at.exception
    pairs = next(d for d in at.dataframe if "win_rate_text" in d.value.columns and "label" not in d.value.columns)
    # 3 wins in 6 decisive verdicts: the 95% Wilson interval by hand, p = 0.5, n = 6, z = 1.96:
    # centre 0.5, half-width 1.96 * sqrt(0.25/6 + 1.96²/144) / (1 + 1.96²/6) = 0.312 -> 19%..81%
    assert pairs.value["win_rate_text"].tolist() == ["50% (19-81%)"]
    assert pairs.value["agreement"].tolist() == ["Cohen's kappa 0.40"]  # by hand: po = 2/3, pe = 4/9
    assert list(pairs.proto.column_order)[:2] == ["pair", "n"]  # the columns a user came for first
    for frame in at.dataframe:  # never a raw None in a shown text column
        shown = frame.value[[c for c in frame.value.columns if frame.value[c].dtype == object]]
        assert not shown.isna().any().any()
