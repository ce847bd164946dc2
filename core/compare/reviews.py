"""Results of a team review (no streamlit): wins per pair of series, agreement between reviewers, per-class breakdown,
disagreements; plus the review queue and the blind Left/Right order.

Input is a run's current reviews (`Store.reviews(run_id)`: one verdict per image, pair and reviewer, the pair in
sorted order). A *pair* is (model_a, model_b, run_a, run_b): run_a is the run the row is stored under (`run_id`),
run_b model_b's run when it is another one (a cross-run pair: the same model in two runs, say), else ''. Its label
(`pair_label`) is "a vs b", or "a (run X) vs b (run Y)" across runs. Every current verdict counts once: with three reviewers, an image gives
three verdicts. "A better" is a win for model_a, "B better" a loss, "both fine" a tie, "both wrong" its own count; the
win rate is wins / (wins + losses) (ties and "both wrong" say nothing about which is better) with its Wilson score
interval (statsmodels). Agreement per pair over its images: Cohen's kappa (statsmodels) when exactly two reviewers
judged it, on the images both judged; Krippendorff's alpha (nominal, the `krippendorff` package) for three or more,
missing verdicts allowed.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.config import REVIEW_CONFIDENCE, REVIEW_VERDICTS

PAIR_KEY: tuple[str, ...] = ("model_a", "model_b", "run_a", "run_b")
_COUNT_COLUMNS: tuple[str, ...] = ("n", "wins", "losses", "ties", "both_wrong", "win_rate", "win_low", "win_high")
PAIR_COLUMNS: tuple[str, ...] = ("pair", *PAIR_KEY, *_COUNT_COLUMNS)
AGREEMENT_COLUMNS: tuple[str, ...] = ("pair", *PAIR_KEY, "reviewers", "images", "statistic", "value")
CLASS_COLUMNS: tuple[str, ...] = ("pair", *PAIR_KEY, "label", *_COUNT_COLUMNS)
DISAGREEMENT_COLUMNS: tuple[str, ...] = ("image_id", "pair", *PAIR_KEY, "verdicts")
_COUNTS = {"A better": "wins", "B better": "losses", "both fine": "ties", "both wrong": "both_wrong"}


def pair_label(model_a: str, model_b: str, run_a: str = "", run_b: str = "") -> str:
    """A pair as people read it: "a vs b" within a run, "a (run X) vs b (run Y)" across two runs."""
    if run_b and run_b != run_a:
        return f"{model_a} (run {run_a}) vs {model_b} (run {run_b})"
    return f"{model_a} vs {model_b}"


def with_pair_key(reviews: pd.DataFrame) -> pd.DataFrame:
    """Reviews with PAIR_KEY columns: run_a from `run_id`, run_b '' for a same-run pair (either absent: '')."""
    out = reviews.copy()
    out["run_a"] = out["run_id"].astype("string").fillna("") if "run_id" in out else ""
    out["run_b"] = out["run_b"].astype("string").fillna("") if "run_b" in out else ""
    return out


def _pairs(reviews: pd.DataFrame, *extra: str):
    """(key, group) per pair (and `extra` columns), the key starting with PAIR_KEY's values."""
    return with_pair_key(reviews).groupby([*PAIR_KEY, *extra], sort=True)


def _key(key: tuple) -> dict[str, object]:
    return {"pair": pair_label(*key[:4]), **dict(zip(PAIR_KEY, key[:4], strict=True))}


def runs_of(reviews: pd.DataFrame) -> list[str]:
    """Every run the reviews name (run_id and run_b), sorted: the runs whose detections `per_class` needs."""
    named = [*reviews.get("run_id", pd.Series(dtype="string")), *reviews.get("run_b", pd.Series(dtype="string"))]
    return sorted({str(r) for r in named if isinstance(r, str) and r})


def wilson_interval(successes: int, trials: int, confidence: float = REVIEW_CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of a proportion (statsmodels); (nan, nan) without trials."""
    if trials <= 0:
        return math.nan, math.nan
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, trials, alpha=1 - confidence, method="wilson")
    return float(low), float(high)


def _counts(verdicts: pd.Series) -> dict[str, float]:
    counts = {name: int((verdicts == verdict).sum()) for verdict, name in _COUNTS.items()}
    decided = counts["wins"] + counts["losses"]
    low, high = wilson_interval(counts["wins"], decided)
    rate = counts["wins"] / decided if decided else math.nan
    return {"n": int(len(verdicts)), **counts, "win_rate": rate, "win_low": low, "win_high": high}


def pair_results(reviews: pd.DataFrame) -> pd.DataFrame:
    """Per pair (PAIR_COLUMNS): verdict counts from model_a's side and its win rate with the Wilson interval."""
    rows = [{**_key(key), **_counts(group["verdict"])} for key, group in _pairs(reviews)]
    return pd.DataFrame(rows, columns=list(PAIR_COLUMNS))


def cohens_kappa(first: list[str], second: list[str]) -> float:
    """Cohen's kappa of two reviewers' verdicts on the same images (statsmodels); nan when undefined (no images, or
    both always gave one and the same verdict)."""
    if not first:
        return math.nan
    from statsmodels.stats.inter_rater import cohens_kappa as sm_kappa

    index = {v: i for i, v in enumerate(sorted(set(first) | set(second)))}
    table = np.zeros((len(index), len(index)))
    for x, y in zip(first, second, strict=True):
        table[index[x], index[y]] += 1
    if len(index) < 2:
        return math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float(sm_kappa(table, return_results=False))
    return value if math.isfinite(value) else math.nan


def krippendorff_alpha(matrix: pd.DataFrame) -> float:
    """Krippendorff's alpha (nominal) of a reviewers x images table of verdicts (missing: NA); nan when undefined."""
    import krippendorff

    codes = {v: float(i) for i, v in enumerate(REVIEW_VERDICTS)}
    data = matrix.apply(lambda col: col.map(codes)).to_numpy(dtype=float)
    if np.count_nonzero(~np.isnan(data)) < 2 or len(np.unique(data[~np.isnan(data)])) < 2:
        return math.nan
    try:
        return float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    except ValueError:  # no unit judged by two reviewers
        return math.nan


def reviewer_agreement(reviews: pd.DataFrame) -> pd.DataFrame:
    """Per pair (AGREEMENT_COLUMNS): reviewers, images judged by two or more, and kappa (two reviewers) or alpha."""
    rows = []
    for key, group in _pairs(reviews):
        matrix = group.pivot_table(index="reviewer", columns="image_id", values="verdict", aggfunc="last")
        shared = int((matrix.notna().sum(axis=0) >= 2).sum())
        if len(matrix) < 2:
            statistic, value = "", math.nan
        elif len(matrix) == 2:
            both = matrix.loc[:, matrix.notna().all(axis=0)]
            statistic = "Cohen's kappa"
            value = cohens_kappa(both.iloc[0].astype(str).tolist(), both.iloc[1].astype(str).tolist())
        else:
            statistic, value = "Krippendorff's alpha", krippendorff_alpha(matrix)
        rows.append({**_key(key), "reviewers": len(matrix), "images": shared, "statistic": statistic, "value": value})
    return pd.DataFrame(rows, columns=list(AGREEMENT_COLUMNS))


def per_class(reviews: pd.DataFrame, detections: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per pair and class (CLASS_COLUMNS): the verdicts on the images where model_a or model_b found that class at
    or above `threshold` (an image with two classes counts for both). `detections` hold those of every run the
    reviews name (`runs_of`), each model's boxes taken from its own run."""
    found = detections[detections["score"] >= threshold][["run_id", "image_id", "model", "label"]].drop_duplicates()
    side = list(zip(found["run_id"].astype(str), found["model"].astype(str), strict=True))
    rows = []
    for key, group in _pairs(reviews):
        a, b, run_a, run_b = key
        # a boolean array, not a list: an empty list of booleans would select columns, not rows
        mask = np.fromiter((s in {(run_a, a), (run_b or run_a, b)} for s in side), dtype=bool, count=len(side))
        labels = found.loc[mask, ["image_id", "label"]].drop_duplicates()
        joined = group.merge(labels, on="image_id", how="inner")
        for label, by_class in joined.groupby("label", sort=True):
            rows.append({**_key(key), "label": str(label), **_counts(by_class["verdict"])})
    return pd.DataFrame(rows, columns=list(CLASS_COLUMNS))


def disagreements(reviews: pd.DataFrame) -> pd.DataFrame:
    """Images (DISAGREEMENT_COLUMNS) where reviewers of a pair gave different verdicts ("reviewer: verdict; ...")."""
    rows = []
    for key, group in _pairs(reviews, "image_id"):
        if group["verdict"].nunique() > 1:
            said = "; ".join(f"{r}: {v}" for r, v in zip(group["reviewer"], group["verdict"], strict=True))
            rows.append({"image_id": key[-1], **_key(key), "verdicts": said})
    frame = pd.DataFrame(rows, columns=list(DISAGREEMENT_COLUMNS))
    return frame.sort_values(["image_id", *PAIR_KEY], kind="stable", ignore_index=True)


@dataclass
class ReviewSummary:
    """Everything the Reviews page and `python -m core reviews` show for one run."""

    run_id: str
    pairs: pd.DataFrame
    agreement: pd.DataFrame
    classes: pd.DataFrame
    disagreements: pd.DataFrame
    reviewers: dict[str, str] = field(default_factory=dict)  # reviewer -> "signed-in" | "typed"

    @property
    def unverified(self) -> list[str]:
        """Reviewers known only by a typed name."""
        return sorted(r for r, how in self.reviewers.items() if how != "signed-in")

    def to_json(self) -> str:
        def records(df: pd.DataFrame) -> list[dict]:
            return json.loads(df.to_json(orient="records"))  # NaN -> null

        return json.dumps(
            {
                "run_id": self.run_id,
                "confidence": REVIEW_CONFIDENCE,
                "reviewers": self.reviewers,
                "pairs": records(self.pairs),
                "agreement": records(self.agreement),
                "per_class": records(self.classes),
                "disagreements": records(self.disagreements),
            },
            indent=2,
        )


def summarize(run_id: str, reviews: pd.DataFrame, detections: pd.DataFrame, threshold: float) -> ReviewSummary:
    """The whole result of a run's current reviews."""
    reviewers: dict[str, str] = {}
    for name, identity in zip(reviews["reviewer"], reviews["identity"], strict=True):
        if reviewers.get(str(name)) != "signed-in":  # signed in once: verified
            reviewers[str(name)] = str(identity)
    return ReviewSummary(
        run_id=run_id,
        pairs=pair_results(reviews),
        agreement=reviewer_agreement(reviews),
        classes=per_class(reviews, detections, threshold),
        disagreements=disagreements(reviews),
        reviewers=dict(sorted(reviewers.items())),
    )


# --- the review queue and the blind order ---------------------------------------------------------------------------


def left_is_a(run_id: str, image_id: str, reviewer: str, model_a: str, model_b: str) -> bool:
    """Whether model_a is shown on the Left: a fair coin per (run, image, reviewer, pair), the same on every visit."""
    key = "\0".join((run_id, image_id, reviewer, *sorted((model_a, model_b))))
    return hashlib.sha256(key.encode("utf-8")).digest()[0] % 2 == 0


def review_queue(
    image_ids: list[str],
    reviews: pd.DataFrame,
    reviewer: str,
    pair: tuple[str, str],
    skipped: list[str] = (),
    *,
    run_b: str = "",
) -> list[str]:
    """The images in review order for `reviewer` and `pair` (sorted order; `run_b` for a cross-run pair, with the
    reviews of its run A): those not yet judged by the reviewer (skipped ones after the rest, in the order skipped),
    then those where the pair's reviewers disagree."""
    keyed = with_pair_key(reviews)
    mine = reviews[(keyed["model_a"] == pair[0]) & (keyed["model_b"] == pair[1]) & (keyed["run_b"] == run_b)]
    done = set(mine.loc[mine["reviewer"] == reviewer, "image_id"])
    skip = [i for i in dict.fromkeys(skipped) if i in image_ids and i not in done]
    todo = [i for i in image_ids if i not in done and i not in skip]
    split = set(disagreements(mine)["image_id"])
    return [*todo, *skip, *(i for i in image_ids if i in split and i in done)]
