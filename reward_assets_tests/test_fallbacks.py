"""The documented fallbacks when no approved model can serve: churn scored by recency and
frequency, send times from segment then global rates, and the registry keeping an
approved version in service after a rejected retrain."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reward_assets.churn.fallback import SOURCE, decile_rates, fallback_scores
from reward_assets.defs.ml.gates import serving_or_reason
from reward_assets.defs.resources import OpsStoreResource, SettingsResource
from reward_assets.engagement.send_time import DEFAULT_SEND_HOUR, preferences_without_model
from reward_assets_tests.test_engagement import AS_OF, load_world, population, simulate


def _features(n: int = 1000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    recency = rng.integers(0, 89, n)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i:04d}" for i in range(n)],
            "has_purchased": True,
            "recency_days": recency,
            "frequency_90d": rng.poisson(np.maximum(8 - recency / 12, 0.2)),
        }
    )


def test_churn_fallback_bands_the_riskiest_by_recency_and_frequency():
    features = pd.concat(
        [
            _features(),
            pd.DataFrame(
                {
                    "customer_id": ["lapsed", "never"],
                    "has_purchased": [True, False],
                    "recency_days": [200, 30],
                    "frequency_90d": [0, 0],
                }
            ),
        ],
        ignore_index=True,
    )
    scores = fallback_scores(features, calibration=None).set_index("customer_id")

    assert scores.loc["lapsed", "risk_band"] == "lapsed"
    assert scores.loc["never", "risk_band"] == "never_purchased"
    active = scores.drop(["lapsed", "never"]).join(features.set_index("customer_id"))
    assert (active.source == SOURCE).all()
    shares = active.risk_band.value_counts(normalize=True)
    assert shares["high"] == pytest.approx(0.1, abs=0.02)
    assert shares["medium"] == pytest.approx(0.2, abs=0.02)
    by_band = active.groupby("risk_band").recency_days.mean()
    assert by_band["high"] > by_band["medium"] > by_band["low"]
    # Without labelled history the score is a rank: no probability for a rule to misread.
    assert active.churn_probability.isna().all()
    assert active.driver_1.str.startswith("recency_days=").all()


def test_churn_fallback_probability_is_the_labelled_rate_of_the_score_decile():
    labelled = _features(seed=1)
    # Churn follows recency: the deciles' observed rates rise with the score.
    labelled["churned"] = labelled.recency_days > 45
    cuts, rates = decile_rates(labelled)
    assert rates[0] < 0.2 and rates[-1] > 0.8
    scores = fallback_scores(_features(seed=2), (cuts, rates))
    assert scores.churn_probability.between(0, 1).all()
    high, low = (scores[scores.risk_band == b].churn_probability.mean() for b in ("high", "low"))
    assert high > 0.8 > 0.3 > low
    assert decile_rates(labelled.assign(churned=True)) is None  # one outcome: no calibration


def test_send_time_fallback_without_any_email_uses_the_default_hour(duckdb_warehouse):
    customers = population([("a", "UTC", "gold", 9, 0.5, 3)]).drop(
        columns=["preferred_hour", "engagement"]
    )
    no_events = pd.DataFrame(
        {
            "customer_id": pd.Series([], dtype=str),
            "event_type": pd.Series([], dtype=str),
            "occurred_at": pd.Series([], dtype="datetime64[us]"),
            "message_id": pd.Series([], dtype=str),
            "campaign": pd.Series([], dtype=str),
        }
    )
    load_world(duckdb_warehouse, customers, no_events)

    prefs = preferences_without_model(duckdb_warehouse, AS_OF)

    assert prefs.best_local_hour.tolist() == [DEFAULT_SEND_HOUR] * 3
    assert prefs.source.tolist() == ["default"] * 3
    assert prefs.expected_open_rate.tolist() == [0.0] * 3
    # The default hour is moved out of quiet hours that cover it.
    late = preferences_without_model(duckdb_warehouse, AS_OF, quiet_hours=(9, 12))
    assert late.best_local_hour.tolist() == [12] * 3


def test_send_time_fallback_takes_the_segment_then_the_global_hour(duckdb_warehouse):
    people = population(
        [
            ("busy", "UTC", "gold", 18, 0.9, 40),  # enough opens: their segment's hour
            ("quiet", "UTC", "bronze", 9, 0.01, 2),  # too few: the global hour
        ]
    )
    events = simulate(people, np.where(people.customer_id.str.startswith("busy"), 30, 3))
    load_world(duckdb_warehouse, people.drop(columns=["preferred_hour", "engagement"]), events)

    prefs = preferences_without_model(duckdb_warehouse, AS_OF).set_index("customer_id")

    busy = prefs[prefs.index.str.startswith("busy")]
    assert (busy.source == "segment").all()
    assert busy.best_local_hour.between(17, 19).all()
    quiet = prefs[prefs.index.str.startswith("quiet")]
    assert (quiet.source == "global").all()
    assert quiet.best_local_hour.between(17, 19).all()  # the busy segment dominates
    assert prefs.expected_open_rate.between(0, 1).all()
    assert busy.expected_open_rate.iloc[0] > quiet.expected_open_rate.iloc[0]
    assert (prefs.confidence == 0).all() and prefs.best_weekday.isna().all()


def test_scoring_serves_the_approved_version_or_says_why_there_is_none():
    ops = OpsStoreResource(settings=SettingsResource())
    with ops.registry() as registry:
        bad = registry.register("churn_model", "b" * 64, lambda d: None, {}, [], {}, AS_OF)
        registry.decide("churn_model", bad.version, False, ["lift interval includes zero"])

    record, reason = serving_or_reason(ops, "churn_model")
    assert record is None
    assert f"last version {bad.version} was rejected (lift interval includes zero)" in reason
    assert "never been trained" in serving_or_reason(ops, "engagement_model")[1]

    with ops.registry() as registry:
        good = registry.register("churn_model", "a" * 64, lambda d: None, {}, [], {}, AS_OF)
        registry.decide("churn_model", good.version, True, [])
        worse = registry.register("churn_model", "c" * 64, lambda d: None, {}, [], {}, AS_OF)
        registry.decide("churn_model", worse.version, False, ["lift interval includes zero"])
    # A rejected retrain after an approved one: the approved version keeps serving.
    record, reason = serving_or_reason(ops, "churn_model")
    assert (record.version, reason) == (good.version, None)
