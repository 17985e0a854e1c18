"""Training on a sample sized by what validation needs, and the learning curve that shows it.

A fit costs time in proportion to its rows, and past some size more rows no longer move
the validation metric. Up to `max_rows` training rows a model trains on all of them. Above
it, the model is fitted on nested, stratified, seeded samples of `max_rows` / 8, / 4, / 2
and `max_rows` rows, each measured on the same validation rows, and growing stops as soon
as a doubling gains less than `TOLERANCE` over a fit that ranks better than chance; the
last fit is the model. The curve costs at most twice its last fit. The metric is a ROC-AUC
(chance 0.5): a sample too small for the trees to split on scores 0.5 at one size and the
next, and that flat start says nothing of larger samples.

`TOLERANCE`: a doubling that adds under 0.001 of validation ROC-AUC adds a quarter or less
of what the gate can resolve: on the 100,000-customer benchmark world the paired
bootstrap's 95% interval of the lift (`ml/lift.py`) is +-0.004 (churn, 80k validation rows)
and +-0.006 (opens, 69k sends). There, with the cap at 100,000, the doublings from 12,500
rows added 0.003, 0.005 and then 0.0006 (churn) and 0.004, 0.005, 0.001 (opens).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import pandas as pd

Model = TypeVar("Model")
# TRAINING_MAX_ROWS's default (settings.py): the largest training set fitted in full.
TRAINING_MAX_ROWS = 1_000_000
TOLERANCE = 0.001
CHANCE = 0.5
CURVE_POINTS = 4


@dataclass(frozen=True)
class Curve(Generic[Model]):
    available: int  # training rows there were
    sizes: list[int]  # rows of each fit, increasing
    scores: list[float]  # the validation metric of each fit (NaN when undefined)
    model: Model  # the last fit
    rows: np.ndarray  # its rows, sorted positions in the training rows
    max_rows: int

    @property
    def chosen(self) -> int:
        return self.sizes[-1]

    def metrics(self, metric: str) -> dict:
        """The curve for the registry's metrics (and so the manifest)."""
        return {
            "rows_available": self.available,
            "max_rows": self.max_rows,
            "tolerance": TOLERANCE,
            "metric": metric,
            "sizes": list(self.sizes),
            "scores": [None if math.isnan(s) else s for s in self.scores],
            "chosen_rows": self.chosen,
        }

    def frame(self, metric: str) -> pd.DataFrame:
        """One row per fit, for the asset's metadata."""
        scores = np.array(self.scores, dtype=float)
        return pd.DataFrame(
            {
                "rows": self.sizes,
                "share_of_available": np.array(self.sizes) / self.available,
                metric: scores,
                "gain": np.concatenate([[np.nan], np.diff(scores)]),
                "chosen": [size == self.chosen for size in self.sizes],
            }
        )


def doubling_sizes(max_rows: int, points: int = CURVE_POINTS) -> list[int]:
    """max_rows / 2^k, increasing, for k below `points` (and sizes of at least one row)."""
    return sorted({max(max_rows >> k, 1) for k in range(points)})


def stratified_order(strata: np.ndarray, seed: int) -> np.ndarray:
    """A seeded order of the rows whose every prefix holds each stratum in its share (to
    within a row): stratum s's k-th row, in a seeded shuffle, sits at (k + 1/2) / n_s, and
    rows are taken in that order. Every sample is a prefix, so larger samples hold smaller."""
    rng = np.random.default_rng(seed)
    strata = np.asarray(strata)
    position = np.empty(strata.size, dtype=float)
    for stratum in np.unique(strata):
        rows = np.flatnonzero(strata == stratum)
        position[rng.permutation(rows)] = (np.arange(rows.size) + 0.5) / rows.size
    return np.lexsort((rng.random(strata.size), position))


def learning_curve(
    strata: np.ndarray,
    max_rows: int,
    fit: Callable[[np.ndarray], tuple[Model, float]],
    seed: int,
) -> Curve[Model]:
    """`fit(rows)` -> (model, validation ROC-AUC) on the training rows at `rows`; `strata`
    labels each training row (the outcome, say) for the sampling."""
    available = len(strata)
    if available <= max_rows:
        everything = np.arange(available)
        model, score = fit(everything)
        return Curve(available, [available], [score], model, everything, max_rows)
    order = stratified_order(strata, seed)
    sizes: list[int] = []
    scores: list[float] = []
    for size in doubling_sizes(max_rows):
        rows = np.sort(order[:size])
        model, score = fit(rows)
        gain = score - scores[-1] if scores else math.nan
        sizes.append(size)
        scores.append(score)
        # False when either score is undefined: keep growing.
        if gain < TOLERANCE and scores[-2] > CHANCE:
            break
    return Curve(available, sizes, scores, model, rows, max_rows)
