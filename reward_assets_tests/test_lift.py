import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from reward_assets.ml.lift import auc_lift


def _scores(seed: int, n: int = 4000):
    rng = np.random.default_rng(seed)
    target = rng.random(n) < 0.3
    return target, rng


def test_point_estimates_are_scikit_learns_and_a_real_lift_excludes_zero():
    target, rng = _scores(1)
    model = target * 0.8 + rng.random(target.size)
    baseline = np.round(target * 0.2 + rng.random(target.size), 1)  # coarse: many ties
    lift = auc_lift(target, model, baseline)
    assert lift.model_auc == pytest.approx(roc_auc_score(target, model), abs=1e-12)
    assert lift.baseline_auc == pytest.approx(roc_auc_score(target, baseline), abs=1e-12)
    assert lift.lift_low < lift.lift < lift.lift_high
    assert lift.significant and lift.lift_low > 0.1


def test_a_model_no_better_than_its_baseline_is_not_significant():
    target, rng = _scores(2)
    signal = target * 0.5 + rng.random(target.size)
    noisy = signal + rng.normal(0, 0.01, target.size)  # the same ranking up to noise
    lift = auc_lift(target, noisy, signal, seed=3)
    assert lift.lift_low < 0 < lift.lift_high
    assert not lift.significant
    # Seeded: the same inputs give the same interval.
    assert auc_lift(target, noisy, signal, seed=3) == lift


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="both classes"):
        auc_lift(np.zeros(10, bool), np.arange(10.0), np.arange(10.0))
