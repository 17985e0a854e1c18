import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import xgboost as xgb

from reward_assets.churn.features import (
    FEATURE_GROUPS,
    FEATURES,
    features_as_of,
    model_matrix,
    sample_cut,
)
from reward_assets.churn.model import (
    ChurnModel,
    churn_quality,
    fit_churn,
    is_active,
    labelled_frames,
    labelled_snapshot,
    plan_dates,
    train_churn,
)
from reward_assets.ingest.clock import as_of_params
from reward_assets.ml.cells import contributions
from reward_assets.warehouse.sql_models import SQL_DIR, load_models, materialize
from reward_assets.warehouse.store import Warehouse

ON_BOTH_WAREHOUSES = pytest.mark.parametrize(
    "warehouse_fixture",
    ["duckdb_warehouse", pytest.param("pg_warehouse", marks=pytest.mark.postgres)],
)
AS_OF = dt.date(2023, 4, 1)  # as_of_end 2023-04-02 00:00; 90 days back is 2023-01-02 00:00


def _build_marts(warehouse: Warehouse, customers: pd.DataFrame, purchases: pd.DataFrame) -> None:
    """The marts tables `customer_features` reads, holding the given rows."""
    tables = {
        "marts.dim_customers": "customer_id VARCHAR, tier VARCHAR, tier_rank INTEGER, "
        "points_balance BIGINT, marketing_opt_in BOOLEAN, is_holdout BOOLEAN, "
        "signup_at TIMESTAMP",
        "marts.fct_transactions": "transaction_id VARCHAR, customer_id VARCHAR, "
        "occurred_at TIMESTAMP, amount DOUBLE PRECISION, category VARCHAR, is_refund BOOLEAN",
        "marts.fct_engagement_events": "event_id VARCHAR, customer_id VARCHAR, "
        "event_type VARCHAR, occurred_at TIMESTAMP",
        "marts.fct_redemptions": "redemption_id VARCHAR, customer_id VARCHAR, "
        "redeemed_at TIMESTAMP, points_spent BIGINT",
    }
    dim = customers.assign(
        tier="silver", tier_rank=2, points_balance=100, marketing_opt_in=True, is_holdout=False
    )
    transactions = purchases.assign(
        transaction_id=[f"t{i}" for i in range(len(purchases))],
        amount=np.where(purchases["is_refund"], -10.0, 10.0),
        category="dining",
    )
    with warehouse.begin() as conn:
        for table, columns in tables.items():
            conn.execute(sa.text(f"CREATE TABLE {table} ({columns})"))
        warehouse.append(conn, "marts.dim_customers", dim)
        warehouse.append(conn, "marts.fct_transactions", transactions)
    models = load_models(SQL_DIR)
    materialize(warehouse, models["dim_customers_history"], models, as_of_params(AS_OF))


@ON_BOTH_WAREHOUSES
def test_churn_labels_on_a_hand_built_warehouse(request, warehouse_fixture):
    warehouse = request.getfixturevalue(warehouse_fixture)
    customers = pd.DataFrame(
        {
            "customer_id": [
                "stays",
                "churns",
                "refund_only_after",
                "never_bought",
                "lapsed",
                "signed_up_later",
                "edge_of_active_window",
                "buys_at_horizon_end",
                "buys_last_minute_of_horizon",
                "first_buy_just_after_as_of",
            ],
            "signup_at": pd.to_datetime(["2022-06-01"] * 5 + ["2023-04-02"] + ["2022-06-01"] * 4),
        }
    )
    purchases = pd.DataFrame(
        [
            ("stays", "2023-03-10 12:00", False),
            ("stays", "2023-04-20 12:00", False),
            ("churns", "2023-04-01 23:59", False),
            ("refund_only_after", "2023-03-20 12:00", False),
            ("refund_only_after", "2023-04-10 12:00", True),
            ("lapsed", "2023-01-01 23:59", False),
            ("lapsed", "2023-04-20 12:00", False),
            ("signed_up_later", "2023-04-10 12:00", False),
            ("edge_of_active_window", "2023-01-02 00:00", False),
            ("buys_at_horizon_end", "2023-03-01 12:00", False),
            ("buys_at_horizon_end", "2023-06-01 00:00", False),
            ("buys_last_minute_of_horizon", "2023-03-01 12:00", False),
            ("buys_last_minute_of_horizon", "2023-05-31 23:59", False),
            ("first_buy_just_after_as_of", "2023-04-02 00:00", False),
        ],
        columns=["customer_id", "occurred_at", "is_refund"],
    ).astype({"occurred_at": "datetime64[us]"})
    _build_marts(warehouse, customers, purchases)

    labels = labelled_snapshot(warehouse, AS_OF, horizon_days=60)

    expected = {
        "stays": False,
        "churns": True,
        "refund_only_after": True,  # a refund is not a purchase
        "edge_of_active_window": True,  # bought on the first day of the 90-day window
        "buys_at_horizon_end": True,  # 2023-06-01 00:00 is the first moment after it
        "buys_last_minute_of_horizon": False,
    }
    assert dict(zip(labels.customer_id, labels.churned, strict=True)) == expected
    assert labels.churned.dtype == bool

    # The label's population (SQL) and the one scoring reads off customer_features agree,
    # and each labelled row is the customer's customer_features row.
    features = features_as_of(warehouse, AS_OF)
    assert set(features.loc[is_active(features), "customer_id"]) == set(expected)
    pd.testing.assert_frame_equal(
        labels.drop(columns="churned").sort_values("customer_id", ignore_index=True),
        features[is_active(features)].sort_values("customer_id", ignore_index=True),
    )

    # A shorter activity window drops the customer who last bought at its old edge.
    shorter = labelled_snapshot(warehouse, AS_OF, horizon_days=60, active_days=60)
    assert set(shorter.customer_id) == set(expected) - {"edge_of_active_window"}
    assert set(features.loc[is_active(features, 60), "customer_id"]) == set(shorter.customer_id)


@ON_BOTH_WAREHOUSES
def test_purchase_windows_gaps_and_missing_history(request, warehouse_fixture):
    warehouse = request.getfixturevalue(warehouse_fixture)
    customers = pd.DataFrame(
        {"customer_id": ["regular", "early"], "signup_at": pd.to_datetime(["2022-12-01"] * 2)}
    )
    purchases = pd.DataFrame(
        [
            ("early", "2023-01-01 09:00", False),  # the first day of data
            ("regular", "2023-02-01 12:00", False),
            ("regular", "2023-02-11 10:00", False),
            ("regular", "2023-02-11 15:00", False),  # same day: one purchase day
            ("regular", "2023-03-13 12:00", False),
            ("regular", "2023-03-14 12:00", True),
            ("regular", "2023-04-02 12:00", False),  # after AS_OF: never counted
        ],
        columns=["customer_id", "occurred_at", "is_refund"],
    ).astype({"occurred_at": "datetime64[us]"})
    _build_marts(warehouse, customers, purchases)

    row = features_as_of(warehouse, AS_OF).set_index("customer_id").loc["regular"]

    expected = {
        "purchases_total": 4,
        "purchase_days_total": 3,
        "purchases_30d": 1,
        "purchases_60d": 4,
        "purchase_days_60d": 3,
        "purchases_90d": 4,  # the 90-day window starts 2023-01-02, inside the data
        "spend_30d": 10.0,
        "spend_total": 40.0,
        "avg_basket": 10.0,
        "refund_share": 0.25,
        "mean_gap_days": 20.0,  # 10 and 30 days between purchase days
        "last_gap_days": 30,
        "recency_days": 19,
        "recency_gap_ratio": 19 / 20,
        "history_days": 91,
    }
    assert {k: float(row[k]) for k in expected} == pytest.approx(expected)
    # 180 days reach before the first day of data: missing, not a short count.
    for column in ("purchases_180d", "purchase_days_180d", "spend_180d"):
        assert pd.isna(row[column]), column
    early = features_as_of(warehouse, AS_OF).set_index("customer_id").loc["early"]
    assert pd.isna(early["mean_gap_days"]) and pd.isna(early["recency_gap_ratio"])


@ON_BOTH_WAREHOUSES
def test_training_dates_sample_customers_whose_rows_are_everyones(request, warehouse_fixture):
    warehouse = request.getfixturevalue(warehouse_fixture)
    rng = np.random.default_rng(5)
    ids = np.array([f"s{i:04d}" for i in range(600)])
    days = pd.date_range("2023-01-01", "2023-06-30")
    who, day = np.nonzero(rng.random((ids.size, days.size)) < 0.03)
    purchases = pd.DataFrame(
        {"customer_id": ids[who], "occurred_at": days[day] + pd.Timedelta(hours=12)}
    ).assign(is_refund=False)
    # The first day of data is one customer's, whose id's MD5 puts them outside any sample
    # under 15/16 of the customers.
    early = next(
        f"early{i}" for i in range(100) if hashlib.md5(f"early{i}".encode()).hexdigest() >= "f"
    )
    early_purchase = pd.DataFrame(
        {
            "customer_id": [early],
            "occurred_at": [pd.Timestamp("2022-12-20 09:00")],
            "is_refund": False,
        }
    )
    customers = pd.DataFrame(
        {"customer_id": [*ids, early], "signup_at": pd.Timestamp("2022-12-01")}
    )
    _build_marts(warehouse, customers, pd.concat([early_purchase, purchases], ignore_index=True))
    as_of = dt.date(2023, 6, 30)

    def ordered(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.sort_values(["as_of", "customer_id"], ignore_index=True)

    # A sample without the first day's customer would date the data's start later: every
    # customer's rows are computed instead.
    everyone = labelled_frames(warehouse, as_of)
    cap = len(everyone.train) // 3
    unsampled = labelled_frames(warehouse, as_of, max_train_rows=cap)
    assert everyone.customer_share == unsampled.customer_share == 1.0
    pd.testing.assert_frame_equal(ordered(unsampled.train), ordered(everyone.train))

    with warehouse.begin() as conn:
        conn.execute(
            sa.text("DELETE FROM marts.fct_transactions WHERE customer_id = :c"), {"c": early}
        )
    everyone = labelled_frames(warehouse, as_of)
    sampled = labelled_frames(warehouse, as_of, max_train_rows=cap)
    assert 0 < sampled.customer_share < 1
    assert cap <= len(sampled.train) < len(everyone.train)
    pd.testing.assert_frame_equal(ordered(sampled.validation), ordered(everyone.validation))
    # Each sampled customer's rows, at every training date, are theirs among everyone's.
    theirs = everyone.train[everyone.train.customer_id.isin(sampled.train.customer_id)]
    pd.testing.assert_frame_equal(ordered(sampled.train), ordered(theirs))
    # The sample is the customers whose id's MD5 is under the cut, on either engine.
    cut = sample_cut(sampled.customer_share)
    chosen = {
        c for c in everyone.train.customer_id if hashlib.md5(c.encode()).hexdigest()[:8] < cut
    }
    assert set(sampled.train.customer_id) == chosen
    training = fit_churn(
        sampled.train, sampled.validation, max_train_rows=cap, customer_share=sampled.customer_share
    )
    assert training.metrics["training_customer_share"] == sampled.customer_share


def test_plan_dates_keep_training_labels_before_validation():
    first, end = dt.date(2023, 3, 1), dt.date(2023, 8, 27)
    training, validation = plan_dates(first, end, horizon_days=60)
    assert validation == end - dt.timedelta(days=60)
    assert training == [
        validation - dt.timedelta(days=60),
        validation - dt.timedelta(days=74),
        validation - dt.timedelta(days=88),
    ]
    assert all(d + dt.timedelta(days=60) <= validation for d in training)

    # 2023-04-01 has 32 days of data: not enough when 45 are required.
    short, _ = plan_dates(first, end, horizon_days=60, min_history_days=45)
    assert short == training[:2]

    with pytest.raises(ValueError, match="no training as-of date"):
        plan_dates(first, dt.date(2023, 6, 1), horizon_days=60)


def _synthetic_snapshot(rng: np.random.Generator, n: int, as_of: dt.date) -> pd.DataFrame:
    """customer_features-shaped rows whose churn depends on recency, the 30-day trend and
    whether the customer ever opened an email."""
    recent = rng.poisson(3, n)
    previous = rng.poisson(3, n)
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i:05d}" for i in range(n)],
            "as_of": pd.Timestamp(as_of),
            "has_purchased": True,
            "tier_rank": rng.integers(1, 5, n),
            "recency_days": rng.integers(0, 90, n),
            "purchases_30d": recent,
            "purchases_prev_30d": previous,
            "redemptions_90d": rng.poisson(1, n),
            "emails_sent_90d": rng.poisson(6, n),
            "open_rate_90d": np.where(rng.random(n) < 0.3, np.nan, rng.random(n)),
            "click_rate_90d": rng.random(n) * 0.3,
            "days_since_engagement": pd.array(
                np.where(rng.random(n) < 0.5, None, rng.integers(0, 200, n)), dtype="Int64"
            ),
        }
    )
    trend = (recent - previous) / (recent + previous + 1)
    logit = -3.0 + 0.05 * frame.recency_days - trend + 0.8 * frame.open_rate_90d.isna()
    frame["churned"] = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    return frame


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(0)
    train = pd.concat(
        [
            _synthetic_snapshot(rng, 4000, dt.date(2023, 1, 1)),
            _synthetic_snapshot(rng, 4000, dt.date(2023, 1, 15)),
        ],
        ignore_index=True,
    )
    validation = _synthetic_snapshot(rng, 3000, dt.date(2023, 3, 15))
    return train, validation, fit_churn(train, validation, seed=7)


def test_model_matrix_derives_the_trend_and_keeps_missing_values():
    names = ["recency_days", "trend_30d", "days_since_engagement", "recency_gap_ratio"]
    frame = pd.DataFrame(
        {
            "recency_days": [1, 2],
            "purchases_30d": [0, 6],
            "purchases_prev_30d": [4, 2],
            "days_since_engagement": pd.array([None, 5], dtype="Int64"),
            "recency_gap_ratio": [np.inf, 0.5],  # a zero mean gap: undefined, not infinite
        }
    )
    matrix = model_matrix(frame, names)
    assert list(matrix.columns) == names
    np.testing.assert_allclose(matrix.trend_30d, [-4 / 5, 4 / 9])
    assert np.isnan(matrix.days_since_engagement.iloc[0])
    assert matrix.days_since_engagement.iloc[1] == 5.0
    assert np.isnan(matrix.recency_gap_ratio.iloc[0])


def test_fit_learns_the_signal_and_reports_its_metrics(synthetic):
    train, validation, training = synthetic
    metrics = training.metrics
    assert metrics["roc_auc"] > metrics["baseline_roc_auc"] > 0.5
    assert 0.0 < metrics["brier"] < metrics["base_rate"] * (1 - metrics["base_rate"])
    assert metrics["train_rows"] == len(train)
    assert metrics["validation_rows"] == len(validation)
    assert metrics["train_as_of_dates"] == ["2023-01-01", "2023-01-15"]
    assert metrics["validation_as_of"] == "2023-03-15"
    assert metrics["base_rate"] == pytest.approx(validation.churned.mean())
    assert set(training.feature_importance) == set(training.features) <= set(FEATURES)
    # Chosen on the latest training date: the recency group always, and the email group,
    # which carries part of the planted signal (never opening), joins.
    assert set(FEATURE_GROUPS["recency"]) <= set(training.features)
    assert "open_rate_90d" in training.features
    assert [step["group"] for step in metrics["feature_selection"]["steps"]][0] == "recency"
    assert max(training.feature_importance, key=training.feature_importance.get) in {
        "recency_days",
        "trend_30d",
    }
    assert training.params["seed"] == 7 and training.params["tree_method"] == "hist"
    json.dumps(metrics)  # metadata must be JSON


def test_fit_is_deterministic_and_fingerprints_its_inputs(synthetic):
    train, validation, training = synthetic
    shuffled = train.sample(frac=1.0, random_state=1)
    again = fit_churn(shuffled, validation, seed=7)
    assert again.fingerprint == training.fingerprint
    assert len(training.fingerprint) == 64
    np.testing.assert_array_equal(
        again.model.predict(model_matrix(validation, training.model.features)),
        training.model.predict(model_matrix(validation, training.model.features)),
    )
    assert fit_churn(train, validation, seed=8).fingerprint != training.fingerprint
    flipped = train.assign(churned=train.churned.to_numpy().copy())
    flipped.loc[0, "churned"] = not flipped.loc[0, "churned"]
    assert fit_churn(flipped, validation, seed=7).fingerprint != training.fingerprint


def test_below_the_cap_the_model_is_the_fit_on_every_row(synthetic):
    train, validation, training = synthetic
    assert training.curve.sizes == [len(train)] and training.metrics["train_rows"] == len(train)
    assert training.metrics["learning_curve"]["chosen_rows"] == len(train)
    rows = train.sort_values(["as_of", "customer_id"], ignore_index=True)
    names = training.features
    booster = xgb.train(
        {k: v for k, v in training.params.items() if k != "num_boost_round"},
        xgb.DMatrix(model_matrix(rows, names), label=rows.churned.astype(int), feature_names=names),
        num_boost_round=training.params["num_boost_round"],
    )
    valid = xgb.DMatrix(model_matrix(validation, names), feature_names=names)
    np.testing.assert_array_equal(training.model.booster.predict(valid), booster.predict(valid))
    at_the_cap = fit_churn(train, validation, seed=7, max_train_rows=len(train))
    assert at_the_cap.fingerprint == training.fingerprint


def test_above_the_cap_the_learning_curve_sizes_a_stratified_sample(synthetic):
    train, validation, _ = synthetic
    capped = fit_churn(train, validation, seed=7, max_train_rows=4000)
    curve = capped.metrics["learning_curve"]
    assert curve["sizes"] == [500, 1000, 2000, 4000][: len(curve["sizes"])]
    assert len(curve["sizes"]) == len(curve["scores"]) >= 2
    assert curve["rows_available"] == len(train) and curve["max_rows"] == 4000
    assert capped.metrics["train_rows"] == curve["chosen_rows"] == curve["sizes"][-1]
    gains = np.diff(curve["scores"])
    # It stopped where a doubling gained too little, or at the cap.
    assert (gains[:-1] >= curve["tolerance"]).all()
    assert gains[-1] < curve["tolerance"] or curve["chosen_rows"] == 4000
    # Stratified by date and outcome: the sample keeps each date's churn rate.
    chosen = train.sort_values(["as_of", "customer_id"], ignore_index=True)
    chosen = chosen.iloc[capped.curve.rows]
    for day, rows in chosen.groupby("as_of"):
        everyone = train[train.as_of == day]
        assert len(rows) == pytest.approx(len(chosen) * len(everyone) / len(train), abs=1)
        assert rows.churned.sum() == pytest.approx(len(rows) * everyone.churned.mean(), abs=1.5)
    assert churn_quality(capped.metrics) == []
    again = fit_churn(train, validation, seed=7, max_train_rows=4000)
    assert again.fingerprint == capped.fingerprint


def test_shuffled_training_labels_fail_the_quality_check(synthetic):
    train, validation, training = synthetic
    assert churn_quality(training.metrics) == []
    rng = np.random.default_rng(3)
    shuffled = train.assign(churned=rng.permutation(train.churned.to_numpy()))
    failures = churn_quality(fit_churn(shuffled, validation, seed=7).metrics)
    assert any("recency-only baseline" in reason for reason in failures)


def test_churn_quality_names_each_failure():
    beats = {"roc_auc": 0.8, "baseline_roc_auc": 0.7, "lift": 0.1, "lift_low": 0.02}
    assert churn_quality({**beats, "lift_high": 0.18}) == []
    luck = {"roc_auc": 0.74, "baseline_roc_auc": 0.7, "lift": 0.04, "lift_low": -0.01}
    failures = churn_quality({**luck, "lift_high": 0.09}, min_auc=0.75)
    assert len(failures) == 2
    assert "[-0.010, +0.090] includes zero" in failures[0]
    assert "under the floor 0.75" in failures[1]
    # The floor is off by default: beating the baseline is enough, however low the AUC.
    assert churn_quality({**beats, "roc_auc": 0.6, "lift_high": 0.18}) == []
    assert churn_quality({**beats, "lift_high": 0.18}, min_auc=0.85) != []


def test_scores_bands_and_drivers(synthetic):
    _, validation, training = synthetic
    model = training.model
    inactive = validation.head(3).assign(
        customer_id=["never", "lapsed", "edge"],
        has_purchased=[False, True, True],
        recency_days=[5, 90, 89],
    )
    scores = model.score(pd.concat([validation, inactive], ignore_index=True))

    assert list(scores.columns) == [
        "customer_id",
        "churn_probability",
        "risk_band",
        "driver_1",
        "driver_2",
        "driver_3",
        "source",
        "computed_as_of",
        "inputs_key",
    ]
    assert set(scores.customer_id) == set(validation.customer_id) | {"never", "lapsed", "edge"}
    outside = scores.set_index("customer_id").loc[["never", "lapsed"]]
    assert outside.risk_band.tolist() == ["never_purchased", "lapsed"]
    assert outside.source.tolist() == ["rule", "rule"]
    assert set(scores.source) == {"model", "rule"}
    assert outside.churn_probability.isna().all()
    scores = scores[~scores.customer_id.isin(["never", "lapsed"])]
    assert scores.churn_probability.between(0, 1).all()
    medium, high = model.band_thresholds
    expected_band = np.select(
        [scores.churn_probability >= high, scores.churn_probability >= medium],
        ["high", "medium"],
        "low",
    )
    assert (scores.risk_band == expected_band).all()
    assert set(scores.risk_band) == {"low", "medium", "high"}

    # driver_k is the k-th largest positive contribution xgboost gives, with its value.
    matrix = model_matrix(validation, training.model.features)
    contributions = model.booster.predict(
        xgb.DMatrix(matrix, feature_names=model.features), pred_contribs=True
    )[:, :-1]
    ranked = np.argsort(-contributions, axis=1, kind="stable")[:, :3]
    scored = scores.set_index("customer_id").loc[validation.customer_id]
    for k in range(3):
        positive = np.take_along_axis(contributions, ranked[:, k : k + 1], axis=1)[:, 0] > 0
        names = np.array(model.features)[ranked[:, k]]
        drivers = scored[f"driver_{k + 1}"].to_numpy()
        assert positive.any()
        assert pd.isna(drivers[~positive]).all()
        assert (pd.Series(drivers[positive]).str.split("=").str[0] == names[positive]).all()
    recency = scored.driver_1.str.startswith("recency_days=").fillna(False).to_numpy()
    assert recency.any()
    shown = scored.driver_1[recency].str.split("=").str[1].astype(float)
    np.testing.assert_array_equal(shown, validation.recency_days[recency].to_numpy())
    # A missing value shows as such, not as a number.
    missing = validation.open_rate_90d.isna().to_numpy()
    named = pd.Series(scored[["driver_1", "driver_2", "driver_3"]].to_numpy()[missing].ravel())
    open_rate = named[named.str.startswith("open_rate_90d=").fillna(False)]
    assert len(open_rate) > 0
    assert (open_rate == "open_rate_90d=missing").all()


def test_saved_model_loads_and_scores_the_same(synthetic, tmp_path):
    _, validation, training = synthetic
    training.model.save(tmp_path)
    assert json.loads((tmp_path / "booster.json").read_text())
    assert {p.name for p in tmp_path.iterdir()} == {"booster.json", "churn_model.json"}
    loaded = ChurnModel.load(tmp_path)
    assert loaded.features == training.model.features
    assert loaded.band_thresholds == training.model.band_thresholds
    pd.testing.assert_frame_equal(loaded.score(validation), training.model.score(validation))


# ------------------------------------------------------------------ the seeded worlds


@pytest.fixture(scope="module")
def seeded_churn(seeded_world):
    warehouse = seeded_world.warehouse()
    try:
        training = train_churn(warehouse)
        validation_day = dt.date.fromisoformat(training.metrics["validation_as_of"])
        train = pd.concat(
            [
                labelled_snapshot(warehouse, dt.date.fromisoformat(day))
                for day in training.metrics["train_as_of_dates"]
            ],
            ignore_index=True,
        )
        validation = labelled_snapshot(warehouse, validation_day)
        latest = features_as_of(warehouse, validation_day + dt.timedelta(days=60))
    finally:
        warehouse.dispose()
    return training, train, validation, latest


def test_churn_model_meets_the_quality_bar(seeded_churn, seeded_world):
    training, _, _, _ = seeded_churn
    metrics = training.metrics
    assert metrics["roc_auc"] >= 0.80, (seeded_world.name, metrics)
    assert metrics["roc_auc"] > metrics["baseline_roc_auc"], (seeded_world.name, metrics)
    # The planted churn is not just "has not bought for a while".
    assert 0.65 <= metrics["baseline_roc_auc"] <= 0.80, (seeded_world.name, metrics)
    assert churn_quality(metrics) == []
    assert metrics["pr_auc"] > metrics["base_rate"]
    validation_day = dt.date.fromisoformat(metrics["validation_as_of"])
    assert len(metrics["train_as_of_dates"]) == 3
    for day in metrics["train_as_of_dates"]:
        assert dt.date.fromisoformat(day) + dt.timedelta(days=60) <= validation_day


def test_a_sampled_fit_still_meets_the_bar_on_seeded_data(seeded_churn):
    training, train, validation, _ = seeded_churn
    cap = len(train) // 4
    sampled = fit_churn(train, validation, max_train_rows=cap)
    curve = sampled.metrics["learning_curve"]
    assert curve["rows_available"] == len(train) > cap >= curve["chosen_rows"]
    assert curve["sizes"] == sorted(curve["sizes"]) and len(set(curve["sizes"])) >= 2
    assert sampled.metrics["train_rows"] == curve["chosen_rows"]
    assert sampled.metrics["validation_rows"] == len(validation)  # the gate sees every row
    assert churn_quality(sampled.metrics) == [], sampled.metrics


def test_shuffled_labels_fail_on_seeded_data(seeded_churn):
    training, train, validation, _ = seeded_churn
    rng = np.random.default_rng(11)
    shuffled = train.assign(churned=rng.permutation(train.churned.to_numpy()))
    again = fit_churn(train, validation)
    assert again.fingerprint == training.fingerprint  # the fixture rebuilt the same frames
    assert churn_quality(fit_churn(shuffled, validation).metrics) != []


def test_seeded_scores_cover_every_customer_and_band_the_active(seeded_churn):
    training, _, validation, latest = seeded_churn
    everyone = training.model.score(latest)
    assert len(everyone) == len(latest) and everyone.customer_id.is_unique
    active = set(latest.loc[is_active(latest), "customer_id"])
    scores = everyone[everyone.customer_id.isin(active)]
    assert len(scores) == len(active) > 0
    assert set(scores.risk_band) == {"low", "medium", "high"}
    assert set(everyone.risk_band) - set(scores.risk_band) <= {"lapsed", "never_purchased"}
    assert scores.loc[scores.risk_band == "high", "driver_1"].notna().all()

    # On the labelled validation date, the bands order the churn that followed.
    banded = (
        training.model.score(validation)
        .dropna(subset=["churn_probability"])
        .merge(validation[["customer_id", "churned"]], on="customer_id")
    )
    rate = banded.groupby("risk_band").churned.mean()
    assert rate["high"] > rate["medium"] > rate["low"]
    assert rate["high"] > 3 * rate["low"]


def test_data_after_the_as_of_date_does_not_change_training(seeded_world, tmp_path):
    source = Path(seeded_world.warehouse_url.removeprefix("duckdb:///"))
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(source, copy)
    if source.with_suffix(".duckdb.wal").exists():
        shutil.copy(source.with_suffix(".duckdb.wal"), copy.with_suffix(".duckdb.wal"))
    full, cut = Warehouse(seeded_world.warehouse_url), Warehouse(f"duckdb:///{copy}")
    try:
        last = pd.Timestamp(full.scalar("SELECT MAX(occurred_at) FROM marts.fct_transactions"))
        as_of = last.date() - dt.timedelta(days=10)
        before = train_churn(full, as_of=as_of)
        with cut.begin() as conn:
            end = {"end": dt.datetime.combine(as_of, dt.time()) + dt.timedelta(days=1)}
            for table, column in [
                ("marts.fct_transactions", "occurred_at"),
                ("marts.fct_engagement_events", "occurred_at"),
                ("marts.fct_redemptions", "redeemed_at"),
            ]:
                conn.execute(sa.text(f"DELETE FROM {table} WHERE {column} >= :end"), end)
        after = train_churn(cut, as_of=as_of)
    finally:
        full.dispose()
        cut.dispose()
    assert after.fingerprint == before.fingerprint
    assert after.metrics == before.metrics


@pytest.mark.parametrize("depth", [3, 7])
def test_contributions_tree_by_tree_are_xgboosts_to_the_bit(depth):
    """`cells.contributions` explains each tree once per pattern of its splits and sums
    the trees as XGBoost does: the same float32 values as `pred_contribs`, missing values
    and values on a threshold included, and trees of more split nodes than one int64
    pattern holds."""
    rng = np.random.default_rng(7)
    n = 5_000
    frame = pd.DataFrame(
        {
            "a": rng.integers(0, 30, n).astype(float),
            "b": np.round(rng.random(n), 2),
            "c": np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 5, n)),
        }
    )
    target = (frame.a / 30 + frame.b + rng.normal(0, 0.3, n) > 1).astype(int)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": depth, "min_child_weight": 0},
        xgb.DMatrix(frame, label=target, feature_names=list(frame.columns)),
        num_boost_round=30,
    )
    direct = booster.predict(
        xgb.DMatrix(frame, feature_names=list(frame.columns)), pred_contribs=True
    )[:, :-1]
    splits = json.loads(bytes(booster.save_raw("json")))["learner"]["gradient_booster"]
    inner = max(sum(c != -1 for c in t["left_children"]) for t in splits["model"]["trees"])
    assert inner > 30 if depth == 7 else inner <= 7
    shared = contributions(booster, frame.to_numpy(), list(frame.columns))
    assert shared.dtype == direct.dtype
    assert np.array_equal(shared, direct)
