import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from reward_assets.ml.lift import _Bins, _Ranks, auc_lift, auc_lifts, poisson_ones


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


def test_resample_weights_are_poisson_ones():
    draws = poisson_ones(np.random.default_rng(8), (4, 2_500_000)).ravel()
    frequencies = np.bincount(draws, minlength=13) / draws.size
    assert draws.max() <= 12
    for k in range(7):
        expected = math.exp(-1) / math.factorial(k)
        # Five standard errors of a binomial frequency over 10M draws.
        assert abs(frequencies[k] - expected) < 5 * math.sqrt(expected / draws.size)


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="both classes"):
        auc_lift(np.zeros(10, bool), np.arange(10.0), np.arange(10.0))


def test_bootstrap_aucs_are_the_weighted_roc_auc_of_each_resample_despite_ties():
    rng = np.random.default_rng(4)
    target = rng.random(3000) < 0.2
    coarse = np.round(target * 0.3 + rng.random(target.size), 1)  # runs and mixed ties
    fine = target * 0.3 + rng.random(target.size)  # nearly all groups one row
    weights = rng.poisson(1.0, size=(5, target.size))
    bins = _Bins([_Ranks(target, coarse), _Ranks(target, fine)], target.size)
    for score, aucs in zip((coarse, fine), bins.aucs(weights), strict=True):
        expected = [roc_auc_score(target, score, sample_weight=row) for row in weights]
        assert aucs == pytest.approx(expected, abs=1e-12)


def test_lifts_drawn_together_are_each_the_lift_drawn_alone():
    target, rng = _scores(5)
    clicked = target & (rng.random(target.size) < 0.2)
    labels = [
        (target, target * 0.5 + rng.random(target.size), np.round(rng.random(target.size), 2)),
        (clicked, clicked * 0.5 + rng.random(target.size), np.round(rng.random(target.size), 1)),
    ]
    together = auc_lifts(labels, seed=7)
    assert together == [auc_lift(*label, seed=7) for label in labels]
    assert together[0] != together[1]
