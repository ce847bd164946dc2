"""Per-class thresholds: a score threshold per (model, class), the global one for the rest, applied to a RunFrame's
boxes in one vectorised step.

`ClassThresholds` is what the Gallery and Compare pass where they pass a plain float threshold (the Evaluate page's
operating points, or a thresholds JSON loaded by the user): `row_thresholds` turns it into one threshold per box by
indexing a small [model code, label code] grid with the frame's code arrays (no loop over boxes). It is frozen and
hashable (a memo key), and formats as text (`f"score ≥ {t:.2f}"` reads "score ≥ per-class thresholds (Evaluate; others
0.50)"), so captions and titles written for a float say what is in force.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from core.analytics.frame import RunFrame


@dataclass(frozen=True)
class ClassThresholds:
    """Thresholds per (model, class name); `default` (the global threshold) for every other box."""

    default: float
    table: tuple[tuple[str, str, float], ...] = ()  # (model, class, threshold), finite thresholds only
    source: str = "Evaluate"  # where they came from, for captions: "Evaluate" or a file name

    @classmethod
    def of(
        cls, per_model: Mapping[str, Mapping[str, float | None]], default: float, source: str = "Evaluate"
    ) -> ClassThresholds:
        """From {model: {class: threshold}} (the session's kept thresholds); None/NaN thresholds are left out."""
        table = tuple(
            (str(m), str(c), float(t))
            for m, classes in sorted(per_model.items())
            for c, t in sorted(classes.items())
            if t is not None and math.isfinite(float(t))
        )
        return cls(float(default), table, source)

    def __format__(self, spec: str) -> str:
        return f"per-class thresholds ({self.source}; others {format(self.default, spec or '.2f')})"

    def grid(self, models: tuple[str, ...], labels: np.ndarray) -> np.ndarray:
        """[model code, label code] -> threshold (the default where none is given)."""
        out = np.full((max(len(models), 1), max(len(labels), 1)), self.default, dtype=np.float64)
        model_code = {m: k for k, m in enumerate(models)}
        label_code = {str(lab): k for k, lab in enumerate(labels)}
        for model, label, t in self.table:  # a few entries per model: the boxes are never looped over
            if model in model_code and label in label_code:
                out[model_code[model], label_code[label]] = t
        return out


Threshold = float | ClassThresholds


def global_threshold(threshold: Threshold) -> float:
    """The plain float threshold: the threshold itself, or the per-class thresholds' default."""
    return threshold.default if isinstance(threshold, ClassThresholds) else float(threshold)


def row_thresholds(rf: RunFrame, threshold: Threshold, index: np.ndarray | slice | None = None) -> np.ndarray | float:
    """Each box's threshold (of the boxes at `index`, all when None): the float itself, or the per-class grid
    indexed by the boxes' model and label codes."""
    if not isinstance(threshold, ClassThresholds):
        return float(threshold)
    grid = threshold.grid(rf.models, rf.labels)
    if index is None:
        return grid[rf.model, rf.label]
    return grid[rf.model[index], rf.label[index]]


def above(rf: RunFrame, threshold: Threshold, index: np.ndarray | slice | None = None) -> np.ndarray:
    """Mask of the boxes (at `index`, all when None) whose score is at or above their threshold."""
    score = rf.score if index is None else rf.score[index]
    return score >= row_thresholds(rf, threshold, index)
