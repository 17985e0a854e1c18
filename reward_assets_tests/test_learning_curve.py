"""The learning curve: nested stratified samples, doubling sizes, where growing stops."""

import numpy as np

from reward_assets.ml.learning_curve import (
    TOLERANCE,
    TRAINING_MAX_ROWS,
    doubling_sizes,
    learning_curve,
    stratified_order,
)
from reward_assets.settings import Settings


def test_the_setting_defaults_to_the_functions_default():
    assert Settings().training_max_rows == TRAINING_MAX_ROWS


def test_sizes_double_up_to_the_cap():
    assert doubling_sizes(2000) == [250, 500, 1000, 2000]
    assert doubling_sizes(1_000_000) == [125_000, 250_000, 500_000, 1_000_000]
    assert doubling_sizes(3, points=4) == [1, 3]


def test_every_prefix_keeps_each_strata_share_and_the_order_is_seeded():
    rng = np.random.default_rng(0)
    strata = rng.choice([0, 1, 2], size=10_000, p=[0.7, 0.25, 0.05])
    order = stratified_order(strata, seed=3)
    assert sorted(order) == list(range(strata.size))
    np.testing.assert_array_equal(order, stratified_order(strata, seed=3))
    assert not np.array_equal(order, stratified_order(strata, seed=4))
    shares = np.bincount(strata, minlength=3)
    for size in (37, 250, 1000, 6001):
        counts = np.bincount(strata[order[:size]], minlength=3)
        # Within a row (and rounding) of the stratum's share of the prefix.
        assert np.all(np.abs(counts - size * shares / strata.size) <= 1.5), (size, counts)


def test_below_the_cap_one_fit_on_every_row():
    calls = []

    def fit(rows):
        calls.append(rows)
        return "model", 0.7

    curve = learning_curve(np.zeros(100, dtype=int), 100, fit, seed=1)
    assert len(calls) == 1
    np.testing.assert_array_equal(calls[0], np.arange(100))
    assert (curve.sizes, curve.chosen, curve.available, curve.model) == ([100], 100, 100, "model")


def _saturating(rows: np.ndarray) -> tuple[np.ndarray, float]:
    """A metric that gains 0.04, then 0.0005 per doubling (and 0.06 after, never reached)."""
    return rows, {2000: 0.70, 4000: 0.74, 8000: 0.7405, 16_000: 0.80}[rows.size]


def test_growing_stops_when_a_doubling_gains_under_the_tolerance():
    strata = np.arange(20_000) % 5
    curve = learning_curve(strata, 16_000, _saturating, seed=2)
    assert curve.sizes == [2000, 4000, 8000]
    assert curve.chosen == curve.rows.size == 8000
    np.testing.assert_array_equal(curve.model, curve.rows)
    assert np.all(np.diff(curve.rows) > 0)
    recorded = curve.metrics("auc")
    assert recorded["sizes"] == curve.sizes and recorded["chosen_rows"] == 8000
    assert recorded["scores"] == [0.70, 0.74, 0.7405]
    assert recorded["rows_available"] == 20_000 and recorded["tolerance"] == TOLERANCE
    frame = curve.frame("auc")
    assert frame["rows"].tolist() == curve.sizes
    assert frame["chosen"].tolist() == [False, False, True]

    flat = learning_curve(strata, 8000, lambda rows: (rows, 0.7 + rows.size / 1e8), seed=2)
    assert flat.sizes == [1000, 2000] and flat.chosen == 2000
    # The samples are nested: the chosen one holds the first.
    assert set(stratified_order(strata, 2)[:1000]) <= set(flat.model)


def test_an_undefined_metric_or_a_fit_at_chance_never_stops_the_curve():
    strata = np.zeros(5000, dtype=int)
    curve = learning_curve(strata, 4000, lambda rows: (rows, float("nan")), 0)
    assert curve.sizes == [500, 1000, 2000, 4000]
    # Too few rows to split on: 0.5 twice, then the trees learn.
    scores = {500: 0.5, 1000: 0.5, 2000: 0.7, 4000: 0.7001}
    curve = learning_curve(strata, 4000, lambda rows: (rows, scores[rows.size]), 0)
    assert curve.sizes == [500, 1000, 2000, 4000] and curve.scores[-1] == 0.7001
