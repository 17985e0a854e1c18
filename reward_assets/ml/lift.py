"""Whether a model beats its baseline on validation by more than chance: the paired
bootstrap of the ROC-AUC difference.

Both scores rank the same validation rows; each resample draws the rows again (Poisson
weights, which for thousands of rows are the multinomial draw to within noise and need no
sampling of indices), and the AUC difference is taken on the same resample for both, so
the rows' shared difficulty cancels. The gate asks for the 95% interval of the difference
to exclude zero: a lift the validation rows could show by luck does not approve a model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

RESAMPLES = 200
CHUNK = 25  # resamples per pass, so memory stays rows x CHUNK


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
    any row weights is then one weighted count per resample and a cumulative sum."""

    def __init__(self, target: np.ndarray, score: np.ndarray):
        values, group = np.unique(score, return_inverse=True)
        # Bin 2g holds group g's negative rows, 2g + 1 its positive ones.
        self.bins = group.ravel() * 2 + target
        self.size = 2 * values.size

    def auc(self, weights: np.ndarray) -> np.ndarray:
        """ROC-AUC under each row of `weights` (k, n); ties count one half, as in sklearn."""
        # The weights are whole numbers, so every per-group sum is exact and the AUC does
        # not depend on the order the rows are added in.
        counts = np.stack([np.bincount(self.bins, row, self.size) for row in weights])
        neg, pos = counts[:, 0::2], counts[:, 1::2]
        below = np.cumsum(neg, axis=1) - neg
        with np.errstate(invalid="ignore", divide="ignore"):
            return (pos * (below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


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
    target = np.asarray(target, dtype=bool)
    model, baseline = np.asarray(model, float), np.asarray(baseline, float)
    if target.all() or not target.any():
        raise ValueError("ROC-AUC needs both classes among the validation rows")
    ones = np.ones((1, target.size))
    ranked_model, ranked_baseline = _Ranks(target, model), _Ranks(target, baseline)
    model_auc = float(ranked_model.auc(ones)[0])
    baseline_auc = float(ranked_baseline.auc(ones)[0])
    rng = np.random.default_rng(seed)
    differences = []
    for done in range(0, resamples, CHUNK):
        weights = rng.poisson(1.0, size=(min(CHUNK, resamples - done), target.size))
        differences.append(ranked_model.auc(weights) - ranked_baseline.auc(weights))
    lift = np.concatenate(differences)
    lift = lift[np.isfinite(lift)]
    low, high = np.quantile(lift, [0.025, 0.975])
    return Lift(
        model_auc, baseline_auc, model_auc - baseline_auc, float(low), float(high), lift.size
    )
