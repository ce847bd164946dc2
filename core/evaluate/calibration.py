"""Does a score of 0.8 mean 80 %? Reliability diagram and expected calibration error (ECE) of a series' detections.

A detection is correct when it matches a ground-truth box of its class at IoU 0.5 (`core.evaluate.boxlevel`'s greedy
matching: a duplicate is not correct; one on a crowd region is left out). Scores fall in `bins` equal-width bins on
[0, 1] (the last bin holds 1.0); per bin the mean score (confidence) and the share correct (accuracy); ECE is the
mean over detections of |accuracy - confidence| of their bin: sum over bins of n_b / N * |acc_b - conf_b|.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

CALIBRATION_BINS = 10


@dataclass
class Calibration:
    """The reliability diagram's bins (`lower`, `upper`, `count`, `confidence`, `accuracy`) and the ECE."""

    bins: pd.DataFrame
    ece: float
    n: int


def calibration(score: np.ndarray, correct: np.ndarray, bins: int = CALIBRATION_BINS) -> Calibration:
    """Reliability bins and ECE of detections with these scores and correctness (NaN ECE without detections)."""
    score = np.asarray(score, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    k = np.clip(np.floor(score * bins).astype(np.int64), 0, bins - 1)
    count = np.bincount(k, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(k, weights=score, minlength=bins) / count
        accuracy = np.bincount(k, weights=correct.astype(np.float64), minlength=bins) / count
    n = len(score)
    gap = np.where(count > 0, np.abs(accuracy - confidence), 0.0)
    ece = float((count * gap).sum() / n) if n else math.nan
    edges = np.arange(bins + 1) / bins
    frame = pd.DataFrame({"lower": edges[:-1], "upper": edges[1:], "count": count, "confidence": confidence,
                          "accuracy": accuracy})  # fmt: skip
    return Calibration(frame, ece, n)
