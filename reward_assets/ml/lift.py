"""Whether a model beats its baseline on validation by more than chance: the paired
bootstrap of the ROC-AUC difference.

Both scores rank the same validation rows; each resample draws the rows again (Poisson
weights, which for thousands of rows are the multinomial draw to within noise and need no
sampling of indices), and the AUC difference is taken on the same resample for both, so
the rows' shared difficulty cancels. The gate asks for the 95% interval of the difference
to exclude zero: a lift the validation rows could show by luck does not approve a model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp

RESAMPLES = 200
CHUNK = 25  # resamples per pass, so memory stays rows x CHUNK

# P(X <= k) of a Poisson(1) variable X in units of 2**-32, for each k where it is below
# 2**32: k up to 11, and P(X > 12) is under 2**-32, so no draw exceeds 12.
_POISSON_CDF = np.round(np.cumsum([math.exp(-1) / math.factorial(k) for k in range(20)]) * 2**32)
_POISSON_CDF = _POISSON_CDF[_POISSON_CDF < 2**32].astype(np.uint32)


@dataclass(frozen=True)
class Lift:
    model_auc: float
    baseline_auc: float
    lift: float
    lift_low: float  # 2.5th percentile of the bootstrapped difference
    lift_high: float  # 97.5th percentile
    resamples: int

    @property
    def significant(self) -> bool:
        return self.lift_low > 0

    def metrics(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{key}": value for key, value in asdict(self).items()}

    def describe(self, baseline: str) -> str:
        return (
            f"validation ROC-AUC {self.model_auc:.3f} vs {baseline} {self.baseline_auc:.3f}: "
            f"lift {self.lift:+.3f}, 95% interval [{self.lift_low:+.3f}, {self.lift_high:+.3f}]"
        )


class _Ranks:
    """One score's rows grouped by tied value, lowest first, split by class: an AUC under
    any row weights is then one weighted count per group and class and a cumulative sum.

    Neighbouring groups of one class only are merged: whatever the weights, a run of
    negative-only groups adds nothing but its sum to the negatives below what follows, and
    a run of positive-only groups has the same negatives below each. The AUC is the same
    to the bit with a fraction of the groups (a few per class alternation)."""

    def __init__(self, target: np.ndarray, score: np.ndarray):
        _, group = np.unique(score, return_inverse=True)
        group = group.ravel()
        has_positive = np.bincount(group, target.astype(float)) > 0
        has_negative = np.bincount(group, (~target).astype(float)) > 0
        # 0: negative rows only, 1: positive only, 2: both (such a group stays alone).
        kind = np.where(has_positive & has_negative, 2, has_positive.astype(int))
        run = np.cumsum((np.diff(kind, prepend=-1) != 0) | (kind == 2)) - 1
        # Bin 2r holds run r's negative rows, 2r + 1 its positive ones.
        self.bins = run[group] * 2 + target
        self.size = 2 * int(run[-1] + 1)

    @staticmethod
    def auc(counts: np.ndarray) -> np.ndarray:
        """ROC-AUC under each column of `counts` (size, k), the weights summed per bin;
        ties count one half, as in sklearn."""
        neg, pos = counts[0::2], counts[1::2]
        below = np.cumsum(neg, axis=0)
        below -= neg
        with np.errstate(invalid="ignore", divide="ignore"):
            return (np.einsum("gk,gk->k", pos, below) + 0.5 * np.einsum("gk,gk->k", pos, neg)) / (
                pos.sum(axis=0) * neg.sum(axis=0)
            )


class _Bins:
    """Every score's bins side by side, so that one sparse product sums a batch of
    resamples' row weights per bin for all of them: one pass over the weights, read in
    order, where a weighted count per score and resample scattered into a million bins."""

    def __init__(self, ranks: list[_Ranks], rows: int):
        self.ranks = ranks
        self.starts = np.cumsum([0, *(r.size for r in ranks)])
        self.indicator = sp.csr_matrix(
            (
                np.ones(rows * len(ranks)),
                (
                    np.concatenate(
                        [r.bins + s for r, s in zip(ranks, self.starts[:-1], strict=True)]
                    ),
                    np.tile(np.arange(rows), len(ranks)),
                ),
            ),
            shape=(int(self.starts[-1]), rows),
        )

    def aucs(self, weights: np.ndarray) -> list[np.ndarray]:
        """Each score's ROC-AUC under each row of `weights` (k, rows)."""
        # The weights are whole numbers, so every per-bin sum, and every sum the AUC takes
        # of them, is exact (far below 2^53): the result does not depend on the order the
        # terms are added in.
        counts = self.indicator @ np.ascontiguousarray(weights.T, dtype=float)
        return [
            _Ranks.auc(counts[start : start + r.size])
            for r, start in zip(self.ranks, self.starts[:-1], strict=True)
        ]


def poisson_ones(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Poisson(1) draws as uint8: a 32-bit integer draw counts the CDF steps it reaches, so
    each probability is exact to 2**-32. 40% of the time of `rng.poisson` (uniforms
    multiplied until their product falls below 1/e), which was half of a lift's time at
    800,000 validation rows."""
    draws = rng.integers(0, 2**32, size=shape, dtype=np.uint32)
    counts = np.zeros(shape, dtype=np.uint8)
    for step in _POISSON_CDF:
        counts += draws >= step
    return counts


def auc_lift(
    target: np.ndarray,
    model: np.ndarray,
    baseline: np.ndarray,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Lift:
    """The model's ROC-AUC over the baseline's on the same rows, with a 95% interval.

    Higher scores mean the positive class for both. Needs both classes in `target`.
    """
    return auc_lifts([(target, model, baseline)], resamples, seed)[0]


def auc_lifts(
    labels: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> list[Lift]:
    """`auc_lift` of each (target, model, baseline) over the same rows, under the same
    resamples: the weights a seed draws depend on the number of rows alone, so they are
    drawn once for all and each lift is the one `auc_lift` gives it alone."""
    ranks = []
    for target, model, baseline in labels:
        target = np.asarray(target, dtype=bool)
        if target.all() or not target.any():
            raise ValueError("ROC-AUC needs both classes among the validation rows")
        ranks += [
            _Ranks(target, np.asarray(model, float)),
            _Ranks(target, np.asarray(baseline, float)),
        ]
    rows = len(labels[0][0])
    bins = _Bins(ranks, rows)
    point = [float(auc[0]) for auc in bins.aucs(np.ones((1, rows)))]
    rng = np.random.default_rng(seed)
    differences: list[list[np.ndarray]] = [[] for _ in labels]
    for done in range(0, resamples, CHUNK):
        weights = poisson_ones(rng, (min(CHUNK, resamples - done), rows))
        aucs = bins.aucs(weights)
        for label, difference in enumerate(differences):
            difference.append(aucs[2 * label] - aucs[2 * label + 1])
    lifts = []
    for label, difference in enumerate(differences):
        model_auc, baseline_auc = point[2 * label], point[2 * label + 1]
        lift = np.concatenate(difference)
        lift = lift[np.isfinite(lift)]
        low, high = np.quantile(lift, [0.025, 0.975])
        lifts.append(
            Lift(
                model_auc,
                baseline_auc,
                model_auc - baseline_auc,
                float(low),
                float(high),
                lift.size,
            )
        )
    return lifts
