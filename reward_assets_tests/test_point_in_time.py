"""Point-in-time customer attributes: `dim_customers_history` keeps each load's tier,
balance and consent with the dates they held, and `customer_features` (so churn training
on a past as-of date) reads the version valid on that date, never today's."""

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from reward_assets.churn.features import features_as_of
from reward_assets.churn.model import labelled_snapshot
from reward_assets.ingest.clock import as_of_params
from reward_assets.quality.checks import checks_path, load_checks, run_checks
from reward_assets.quality.publish import build_model
from reward_assets.warehouse.sql_models import SQL_DIR, load_models
from reward_assets.warehouse.staging import Staged
from reward_assets.warehouse.store import Warehouse

FIRST_LOAD, SECOND_LOAD = dt.date(2023, 3, 1), dt.date(2023, 5, 1)
PAST = dt.date(2023, 3, 20)  # between the loads: the first load's attributes held


def _customers(tier_of_a: str, rank_of_a: int, balance_of_a: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "tier": [tier_of_a, "bronze"],
            "tier_rank": [rank_of_a, 1],
            "points_balance": [balance_of_a, 10],
            "marketing_opt_in": [True, False],
            "is_holdout": [False, False],
            "signup_at": pd.to_datetime(["2022-06-01", "2022-07-01"]),
        }
    )


def _load(warehouse: Warehouse, customers: pd.DataFrame, as_of: dt.date, data_dir):
    """A load of the customer snapshot: dim_customers replaced, the history built on it."""
    with warehouse.begin() as conn:
        conn.execute(sa.text("DELETE FROM marts.dim_customers"))
        warehouse.append(conn, "marts.dim_customers", customers)
    models = load_models(SQL_DIR)
    for name in ("dim_customers_history", "customer_features"):
        audited = build_model(warehouse, models[name], models, as_of_params(as_of), data_dir)
        assert audited.published, (name, audited.blocked_by)


def _history(warehouse: Warehouse) -> list[tuple]:
    frame = warehouse.frame(
        "SELECT customer_id, tier, points_balance, valid_from, valid_to "
        "FROM marts.dim_customers_history ORDER BY customer_id, valid_from"
    )
    day = lambda value: None if pd.isna(value) else str(value)[:10]  # noqa: E731
    return [
        (r.customer_id, r.tier, int(r.points_balance), day(r.valid_from), day(r.valid_to))
        for r in frame.itertuples()
    ]


@pytest.mark.parametrize(
    "warehouse_fixture",
    ["duckdb_warehouse", pytest.param("pg_warehouse", marks=pytest.mark.postgres)],
)
def test_a_tier_change_between_loads_is_read_as_of_the_date(request, warehouse_fixture, tmp_path):
    warehouse = request.getfixturevalue(warehouse_fixture)
    with warehouse.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE marts.dim_customers (customer_id VARCHAR, tier VARCHAR, "
                "tier_rank INTEGER, points_balance BIGINT, marketing_opt_in BOOLEAN, "
                "is_holdout BOOLEAN, signup_at TIMESTAMP)"
            )
        )
        conn.execute(
            sa.text(
                "CREATE TABLE marts.fct_transactions (transaction_id VARCHAR, "
                "customer_id VARCHAR, occurred_at TIMESTAMP, amount DOUBLE PRECISION, "
                "category VARCHAR, is_refund BOOLEAN)"
            )
        )
        conn.execute(
            sa.text(
                "CREATE TABLE marts.fct_engagement_events (event_id VARCHAR, "
                "customer_id VARCHAR, event_type VARCHAR, occurred_at TIMESTAMP)"
            )
        )
        conn.execute(
            sa.text(
                "CREATE TABLE marts.fct_redemptions (redemption_id VARCHAR, customer_id VARCHAR, "
                "redeemed_at TIMESTAMP, points_spent BIGINT)"
            )
        )
        # 'a' buys before the past date and not after: active then, churned by the label.
        conn.execute(
            sa.text(
                "INSERT INTO marts.fct_transactions VALUES "
                "('t1', 'a', TIMESTAMP '2023-03-10 12:00:00', 10.0, 'dining', FALSE)"
            )
        )

    _load(warehouse, _customers("silver", 2, 100), FIRST_LOAD, tmp_path)
    _load(warehouse, _customers("gold", 3, 900), SECOND_LOAD, tmp_path)
    # A second run of the same day's load changes nothing.
    _load(warehouse, _customers("gold", 3, 900), SECOND_LOAD, tmp_path)

    assert _history(warehouse) == [
        ("a", "silver", 100, "2022-06-01", "2023-05-01"),
        ("a", "gold", 900, "2023-05-01", None),
        ("b", "bronze", 10, "2022-07-01", None),
    ]
    past = features_as_of(warehouse, PAST).set_index("customer_id")
    assert past.loc["a", ["tier", "tier_rank", "points_balance"]].tolist() == ["silver", 2, 100]
    now = features_as_of(warehouse, SECOND_LOAD).set_index("customer_id")
    assert now.loc["a", ["tier", "tier_rank", "points_balance"]].tolist() == ["gold", 3, 900]
    # What churn trains on at the past date: the tier the customer had then.
    training = labelled_snapshot(warehouse, PAST, horizon_days=30)
    assert training[["customer_id", "tier", "churned"]].values.tolist() == [["a", "silver", True]]

    # A feature row reading a version that starts after its as-of date is caught.
    models = load_models(SQL_DIR)
    with warehouse.begin() as conn:
        conn.execute(
            sa.text("UPDATE marts.dim_customers_history SET valid_from = :late"),
            {"late": dt.date(2023, 6, 1)},
        )
        conn.execute(sa.text("UPDATE marts.dim_customers_history SET valid_to = NULL"))
    audited = build_model(
        warehouse, models["customer_features"], models, as_of_params(SECOND_LOAD), tmp_path
    )
    assert not audited.published
    assert "no_look_ahead" in audited.blocked_by
    # The overlapping versions that edit made are caught by the history's own checks.
    table = "marts.dim_customers_history"
    outcomes = run_checks(
        warehouse,
        load_checks(checks_path(models["dim_customers_history"])),
        Staged(table, table, warehouse.row_count(table)),
        as_of_params(SECOND_LOAD),
    )
    assert not outcomes["one_current_version"].passed
    assert not outcomes["versions_do_not_overlap"].passed
