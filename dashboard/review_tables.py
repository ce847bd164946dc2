"""The Reviews page's tables for people: one row per pair with its counts, its win rate as "62% (48-74%)", the
agreement statistic named with its value; never a raw None. The frames keep their raw columns (hidden by the column
settings) so that what is shown and what is computed stay one table."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from core.compare.reviews import PAIR_KEY
from core.config import REVIEW_CONFIDENCE

NOT_DECIDED = "no A or B verdict yet"


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and math.isfinite(float(x))


def win_rate_text(rate: object, low: object, high: object) -> str:
    """A win rate and its interval as people read it: "62% (48-74%)"."""
    if not _finite(rate):
        return NOT_DECIDED
    if not (_finite(low) and _finite(high)):
        return f"{float(rate) * 100:.0f}%"
    return f"{float(rate) * 100:.0f}% ({float(low) * 100:.0f}-{float(high) * 100:.0f}%)"


def agreement_text(statistic: object, value: object, reviewers: object) -> str:
    """The agreement statistic named with its value ("Cohen's kappa 0.40"), or why there is none."""
    if not statistic or (_finite(reviewers) and int(reviewers) < 2):
        return "one reviewer: no agreement to measure"
    if not _finite(value):
        return f"{statistic}: not defined (too few shared images or one verdict only)"
    return f"{statistic} {float(value):.2f}"


def pair_table(pairs: pd.DataFrame, agreement: pd.DataFrame) -> pd.DataFrame:
    """`core.compare.reviews.pair_results` with `win_rate_text` and the pair's `agreement` (text) added."""
    out = pairs.copy()
    out["win_rate_text"] = [
        win_rate_text(r, lo, hi) for r, lo, hi in zip(out["win_rate"], out["win_low"], out["win_high"], strict=True)
    ]
    texts = {
        tuple(row[k] for k in PAIR_KEY): agreement_text(row["statistic"], row["value"], row["reviewers"])
        for row in agreement.to_dict("records")
    }
    out["agreement"] = [texts.get(tuple(row[k] for k in PAIR_KEY), "") for row in out.to_dict("records")]
    return out


def agreement_table(agreement: pd.DataFrame) -> pd.DataFrame:
    """`core.compare.reviews.reviewer_agreement` with the statistic and its value as one text (`value_text`)."""
    out = agreement.copy()
    out["value_text"] = [
        agreement_text(s, v, n) for s, v, n in zip(out["statistic"], out["value"], out["reviewers"], strict=True)
    ]
    return out


_text, _num = st.column_config.TextColumn, st.column_config.NumberColumn
_HIDDEN = dict.fromkeys((*PAIR_KEY, "win_rate", "win_low", "win_high", "statistic", "value"))
PCT = f"{REVIEW_CONFIDENCE:.0%}"
COUNTS = {
    "pair": _text("Pair", width="large"),
    "label": _text("Class", width="small"),
    "n": _num("Verdicts", format="localized", width="small"),
    "wins": _num("A better", width="small"),
    "losses": _num("B better", width="small"),
    "ties": _num("Both fine", width="small"),
    "both_wrong": _num("Both wrong", width="small"),
    "win_rate_text": _text("A win rate", help=f"A's wins / (A's + B's wins), {PCT} Wilson interval", width="medium"),
    "agreement": _text("Agreement", width="medium"),
}
PAIR_CONFIG = _HIDDEN | COUNTS
PAIR_ORDER = ("pair", "n", "wins", "losses", "ties", "both_wrong", "win_rate_text", "agreement")
CLASS_ORDER = ("pair", "label", "n", "wins", "losses", "ties", "both_wrong", "win_rate_text")
AGREEMENT_CONFIG = _HIDDEN | {
    "pair": _text("Pair", width="large"),
    "value_text": _text("Agreement", width="large"),
    "reviewers": _num("Reviewers", width="small"),
    "images": _num("Images judged by two or more", width="medium"),
}
AGREEMENT_ORDER = ("pair", "value_text", "reviewers", "images")
