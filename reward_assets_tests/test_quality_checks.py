"""The data-quality checks (GX row rules, table rules in SQL) on real tables.

Each test creates the checked table directly with SQL, holding only the columns the
checks read, and runs the checks the project's own `<model>.yml` declares on it, in place
(the table is its own build; `test_write_audit_publish.py` checks builds beside a table).
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from reward_assets.quality.checks import checks_path, load_checks, run_checks
from reward_assets.warehouse.sql_models import SQL_DIR, load_models
from reward_assets.warehouse.staging import Staged, Window
from reward_assets.warehouse.store import Warehouse

MODELS = load_models(SQL_DIR)
T = dt.datetime
PARAMS = {"period_start": T(2023, 3, 1), "as_of_end": T(2023, 3, 6), "as_of": dt.date(2023, 3, 5)}

CUSTOMERS_DDL = "customer_id VARCHAR, email VARCHAR, points_balance BIGINT, signup_at TIMESTAMP"
REWARDS_DDL = "reward_id VARCHAR, points_cost BIGINT, inventory BIGINT"
TRANSACTIONS_DDL = "transaction_id VARCHAR, occurred_at TIMESTAMP"

CLEAN_CUSTOMERS = [
    ("c1", "jane.doe@example.com", 0, T(2023, 1, 1)),
    ("c2", "o'brien+rewards@mail.example.co.uk", 1200, T(2023, 2, 14, 9, 30)),
    ("c3", "x@y.org", 15, T(2023, 3, 5, 23, 59)),
    ("c4", "A.B-C_d%e@sub-domain.example.io", 7, T(2022, 12, 31)),
]
CLEAN_REWARDS = [("w1", 1, 0), ("w2", 500, None), ("w3", 2500, 40)]


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request) -> Warehouse:
    return request.getfixturevalue(
        "duckdb_warehouse" if request.param == "duckdb" else "pg_warehouse"
    )


def create(warehouse: Warehouse, table: str, ddl: str, rows: list[tuple]) -> None:
    with warehouse.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table} ({ddl})"))
        if rows:
            names = [f":v{i}" for i in range(len(rows[0]))]
            conn.execute(
                sa.text(f"INSERT INTO {table} VALUES ({', '.join(names)})"),
                [{f"v{i}": value for i, value in enumerate(row)} for row in rows],
            )


def check(warehouse: Warehouse, model: str, params=PARAMS, window=None):
    """The model's checks on its table as it stands (over `window` of `occurred_at`, as
    for a partitioned build)."""
    model = MODELS[model]
    in_place = Staged(
        model.table,
        model.table,
        warehouse.row_count(model.table),
        Window("occurred_at", *window) if window else None,
    )
    return run_checks(warehouse, load_checks(checks_path(model)), in_place, params)


def assert_only_failure(outcomes, name: str, failing_rows: int, checked_rows: int):
    assert outcomes[name].passed is False
    assert outcomes[name].failing_rows == failing_rows
    assert outcomes[name].checked_rows == checked_rows
    others = {n: o for n, o in outcomes.items() if n != name}
    assert others
    assert all(o.passed and o.failing_rows == 0 for o in others.values()), others


# --- clean data ------------------------------------------------------------------------


def test_clean_customers_pass_every_check(warehouse):
    create(warehouse, "marts.dim_customers", CUSTOMERS_DDL, CLEAN_CUSTOMERS)

    outcomes = check(warehouse, "dim_customers")

    assert set(outcomes) == {
        "customer_id_unique_not_null",
        "email_valid",
        "points_balance_non_negative",
        "signup_at_not_after_as_of",
    }
    for name, outcome in outcomes.items():
        assert (outcome.passed, outcome.failing_rows, outcome.checked_rows) == (True, 0, 4), name
        assert outcome.examples == [], name


def test_clean_rewards_pass_every_check(duckdb_warehouse):
    create(duckdb_warehouse, "marts.dim_rewards", REWARDS_DDL, CLEAN_REWARDS)

    outcomes = check(duckdb_warehouse, "dim_rewards")

    assert set(outcomes) == {
        "reward_id_unique_not_null",
        "points_cost_positive",
        "inventory_non_negative",
    }
    for name, outcome in outcomes.items():
        assert (outcome.passed, outcome.failing_rows, outcome.checked_rows) == (True, 0, 3), name


# --- planted violations ----------------------------------------------------------------


def test_duplicate_customer_ids_fail_uniqueness_counting_every_duplicate_row(duckdb_warehouse):
    rows = [*CLEAN_CUSTOMERS, ("c2", "dup@example.com", 3, T(2023, 1, 2))]
    create(duckdb_warehouse, "marts.dim_customers", CUSTOMERS_DDL, rows)

    outcomes = check(duckdb_warehouse, "dim_customers")

    # GX reports both rows that share the id as unexpected.
    assert_only_failure(outcomes, "customer_id_unique_not_null", failing_rows=2, checked_rows=5)
    assert outcomes["customer_id_unique_not_null"].examples == ["c2", "c2"]


def test_missing_customer_id_fails_the_same_check(duckdb_warehouse):
    rows = [*CLEAN_CUSTOMERS, (None, "nobody@example.com", 3, T(2023, 1, 2))]
    create(duckdb_warehouse, "marts.dim_customers", CUSTOMERS_DDL, rows)

    outcomes = check(duckdb_warehouse, "dim_customers")

    assert_only_failure(outcomes, "customer_id_unique_not_null", failing_rows=1, checked_rows=5)


def test_malformed_email_fails_with_a_masked_example(duckdb_warehouse):
    rows = [*CLEAN_CUSTOMERS, ("c5", "jane doe@x.com", 3, T(2023, 1, 2))]
    create(duckdb_warehouse, "marts.dim_customers", CUSTOMERS_DDL, rows)

    outcomes = check(duckdb_warehouse, "dim_customers")

    assert_only_failure(outcomes, "email_valid", failing_rows=1, checked_rows=5)
    assert outcomes["email_valid"].examples == ["j***@x.com"]


def test_every_bad_email_is_counted_and_none_is_shown_unmasked(duckdb_warehouse):
    bad = [
        ("c5", "jane.doe@example", 3, T(2023, 1, 2)),  # no top-level domain
        ("c6", "jane.doe.x.com", 3, T(2023, 1, 2)),  # no @
        ("c7", None, 3, T(2023, 1, 2)),  # missing
    ]
    create(duckdb_warehouse, "marts.dim_customers", CUSTOMERS_DDL, [*CLEAN_CUSTOMERS, *bad])

    outcome = check(duckdb_warehouse, "dim_customers")["email_valid"]

    assert (outcome.passed, outcome.failing_rows, outcome.checked_rows) == (False, 3, 7)
    shown = [e for e in outcome.examples if isinstance(e, str)]
    assert sorted(shown) == ["j***", "j***@example"]
    assert not any("jane" in str(example) for example in outcome.examples)


def test_negative_points_balance_fails(duckdb_warehouse):
    rows = [*CLEAN_CUSTOMERS, ("c5", "neg@example.com", -25, T(2023, 1, 2))]
    create(duckdb_warehouse, "marts.dim_customers", CUSTOMERS_DDL, rows)

    outcomes = check(duckdb_warehouse, "dim_customers")

    assert_only_failure(outcomes, "points_balance_non_negative", failing_rows=1, checked_rows=5)
    assert outcomes["points_balance_non_negative"].examples == [-25]


def test_signup_after_as_of_fails_the_warning_check(duckdb_warehouse):
    rows = [
        *CLEAN_CUSTOMERS,
        ("c5", "late@example.com", 0, PARAMS["as_of_end"] + dt.timedelta(hours=1)),
    ]
    create(duckdb_warehouse, "marts.dim_customers", CUSTOMERS_DDL, rows)

    outcomes = check(duckdb_warehouse, "dim_customers")

    assert_only_failure(outcomes, "signup_at_not_after_as_of", failing_rows=1, checked_rows=5)


def test_reward_cost_and_inventory_violations_fail_their_checks(duckdb_warehouse):
    rows = [*CLEAN_REWARDS, ("w4", 0, 5), ("w5", -10, 5), ("w6", 100, -1)]
    create(duckdb_warehouse, "marts.dim_rewards", REWARDS_DDL, rows)

    outcomes = check(duckdb_warehouse, "dim_rewards")

    assert outcomes["reward_id_unique_not_null"].passed
    cost, stock = outcomes["points_cost_positive"], outcomes["inventory_non_negative"]
    assert (cost.passed, cost.failing_rows, cost.checked_rows) == (False, 2, 6)
    assert sorted(cost.examples) == [-10, 0]
    assert (stock.passed, stock.failing_rows, stock.checked_rows) == (False, 1, 6)


# --- a staging view: the whole view, up to the last daily window -----------------------


def test_a_view_is_checked_whole_and_its_period_ends_with_the_last_daily_window(
    duckdb_warehouse,
):
    rows = [
        ("t1", T(2023, 3, 1, 9)),  # before period_start
        ("t2", T(2023, 3, 5, 12)),  # after AS_OF, loaded: legitimate
        ("t3", T(2023, 3, 9, 23, 59)),
        ("t3", T(2023, 3, 10)),  # a duplicate, at the end of the last daily window
    ]
    create(duckdb_warehouse, "staging.stg_transactions", TRANSACTIONS_DDL, rows)

    outcomes = check(duckdb_warehouse, "stg_transactions", {**PERIOD, "period_end": T(2023, 3, 10)})

    unique, period = outcomes["transaction_id_unique_not_null"], outcomes["occurred_at_in_period"]
    assert (unique.passed, unique.failing_rows, unique.checked_rows) == (False, 2, 4)
    assert (period.passed, period.failing_rows, period.checked_rows) == (False, 2, 4)
    assert sorted(period.examples) == [T(2023, 3, 1, 9), T(2023, 3, 10)]


# --- a partitioned build, a day at a time (the checks of stg_transactions) ---------------

WINDOW = (T(2023, 3, 1), T(2023, 3, 5))  # four days
PERIOD = {"period_start": T(2023, 3, 2), "as_of_end": T(2023, 3, 4), "as_of": dt.date(2023, 3, 3)}


def test_clean_partitioned_window_passes_row_rules_on_the_window_uniqueness_on_the_table(
    duckdb_warehouse,
):
    rows = [
        ("t1", T(2023, 3, 2, 0, 0)),
        ("t2", T(2023, 3, 2, 23, 59, 59)),
        ("t3", T(2023, 3, 3, 12)),
        ("t9", T(2023, 3, 5, 1)),  # after the window: outside the period rule, not unique's
    ]
    create(duckdb_warehouse, "staging.stg_transactions", TRANSACTIONS_DDL, rows)

    outcomes = check(duckdb_warehouse, "stg_transactions", PERIOD, WINDOW)

    unique, period = outcomes["transaction_id_unique_not_null"], outcomes["occurred_at_in_period"]
    assert set(outcomes) == {"transaction_id_unique_not_null", "occurred_at_in_period"}
    assert (unique.passed, unique.failing_rows, unique.checked_rows) == (True, 0, 4)
    assert (period.passed, period.failing_rows, period.checked_rows) == (True, 0, 3)


def test_partitioned_checks_find_duplicates_in_and_beyond_the_window_and_rows_outside_the_period(
    duckdb_warehouse,
):
    rows = [
        ("t1", T(2023, 3, 1, 9)),  # before period_start
        ("t2", T(2023, 3, 2, 10)),
        ("t3", T(2023, 3, 3, 8)),
        ("t3", T(2023, 3, 3, 20)),  # duplicate inside one day
        ("t4", T(2023, 3, 4, 12)),  # after as_of_end
        ("t2", T(2023, 3, 6, 12)),  # outside the window, the id of a row inside it
    ]
    create(duckdb_warehouse, "staging.stg_transactions", TRANSACTIONS_DDL, rows)

    outcomes = check(duckdb_warehouse, "stg_transactions", PERIOD, WINDOW)

    unique, period = outcomes["transaction_id_unique_not_null"], outcomes["occurred_at_in_period"]
    # Uniqueness reads the whole table; the period rule reads the window's rows only.
    assert (unique.passed, unique.failing_rows, unique.checked_rows) == (False, 4, 6)
    assert unique.examples == ["t2", "t2", "t3", "t3"]
    assert (period.passed, period.failing_rows, period.checked_rows) == (False, 2, 5)
    assert sorted(period.examples) == [T(2023, 3, 1, 9), T(2023, 3, 4, 12)]


def test_a_duplicate_in_two_batches_of_one_window_is_caught(duckdb_warehouse, monkeypatch):
    # One day per batch: the pandas batches of the row rules never hold both rows.
    monkeypatch.setattr("reward_assets.quality.checks.CHECK_BATCH_ROWS", 1)
    rows = [("t1", T(2023, 3, 1, 9)), ("t2", T(2023, 3, 2, 9)), ("t1", T(2023, 3, 4, 9))]
    create(duckdb_warehouse, "staging.stg_transactions", TRANSACTIONS_DDL, rows)

    outcomes = check(duckdb_warehouse, "stg_transactions", PARAMS, WINDOW)

    unique, period = outcomes["transaction_id_unique_not_null"], outcomes["occurred_at_in_period"]
    assert (unique.passed, unique.failing_rows, unique.checked_rows) == (False, 2, 3)
    assert unique.examples == ["t1", "t1"]
    assert (period.passed, period.checked_rows) == (True, 3)


def test_row_at_the_first_instant_after_as_of_is_outside_the_period(duckdb_warehouse):
    rows = [("t1", T(2023, 3, 3, 12)), ("t2", PERIOD["as_of_end"])]
    create(duckdb_warehouse, "staging.stg_transactions", TRANSACTIONS_DDL, rows)

    outcome = check(duckdb_warehouse, "stg_transactions", PERIOD, WINDOW)["occurred_at_in_period"]

    assert (outcome.passed, outcome.failing_rows) == (False, 1)


# --- referential integrity (SQL checks) ------------------------------------------------


def test_orphan_redemptions_fail_reward_integrity_with_their_count(duckdb_warehouse):
    create(duckdb_warehouse, "marts.dim_rewards", REWARDS_DDL, CLEAN_REWARDS)
    redemptions = [("r1", "w1"), ("r2", "w9"), ("r3", "w2"), ("r4", "w8"), ("r5", "w9")]
    create(
        duckdb_warehouse,
        "marts.fct_redemptions",
        "redemption_id VARCHAR, reward_id VARCHAR",
        redemptions,
    )

    outcome = check(duckdb_warehouse, "fct_redemptions")["reward_id_in_dim_rewards"]

    assert (outcome.passed, outcome.failing_rows, outcome.checked_rows) == (False, 3, 5)
    assert sorted((e["redemption_id"], e["reward_id"]) for e in outcome.examples) == [
        ("r2", "w9"),
        ("r4", "w8"),
        ("r5", "w9"),
    ]


def test_redemptions_of_known_rewards_pass_reward_integrity(duckdb_warehouse):
    create(duckdb_warehouse, "marts.dim_rewards", REWARDS_DDL, CLEAN_REWARDS)
    redemptions = [("r1", "w1"), ("r2", "w3"), ("r3", "w1")]
    create(
        duckdb_warehouse,
        "marts.fct_redemptions",
        "redemption_id VARCHAR, reward_id VARCHAR",
        redemptions,
    )

    outcomes = check(duckdb_warehouse, "fct_redemptions")

    assert set(outcomes) == {"reward_id_in_dim_rewards"}
    outcome = outcomes["reward_id_in_dim_rewards"]
    assert (outcome.passed, outcome.failing_rows, outcome.checked_rows) == (True, 0, 3)
    assert outcome.examples == []


def test_transactions_of_unknown_customers_fail_customer_integrity(duckdb_warehouse):
    create(duckdb_warehouse, "marts.dim_customers", CUSTOMERS_DDL, CLEAN_CUSTOMERS)
    transactions = [("t1", "c1"), ("t2", "c404"), ("t3", "c3")]
    create(
        duckdb_warehouse,
        "marts.fct_transactions",
        "transaction_id VARCHAR, customer_id VARCHAR",
        transactions,
    )

    outcome = check(duckdb_warehouse, "fct_transactions")["customer_id_in_dim_customers"]

    assert (outcome.passed, outcome.failing_rows, outcome.checked_rows) == (False, 1, 3)
    assert outcome.examples == [{"transaction_id": "t2"}]


def test_feature_table_mixes_gx_and_sql_checks(duckdb_warehouse):
    day, later = "2024-05-01", "2024-05-02"
    features = [
        ("c1", 3, 40, day, day),
        ("c2", -1, 10, day, day),
        ("c2", 0, -2, day, day),
        ("c3", 5, 5, day, day),
        # The customer's attributes read from a version that starts after the as-of date.
        ("c4", 1, 1, later, day),
    ]
    create(
        duckdb_warehouse,
        "marts.customer_features",
        "customer_id VARCHAR, recency_days BIGINT, tenure_days BIGINT, "
        "attributes_valid_from DATE, as_of DATE",
        features,
    )

    outcomes = check(duckdb_warehouse, "customer_features")

    assert set(outcomes) == {"customer_id_unique_not_null", "no_look_ahead"}
    unique, look_ahead = outcomes["customer_id_unique_not_null"], outcomes["no_look_ahead"]
    assert (unique.passed, unique.failing_rows, unique.checked_rows) == (False, 2, 5)
    assert (look_ahead.passed, look_ahead.failing_rows, look_ahead.checked_rows) == (False, 3, 5)


# --- declarations and errors -------------------------------------------------------------


def write_model_with_checks(folder, checks_yaml: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "things.sql").write_text("SELECT 1 AS id\n")
    (folder / "things.yml").write_text(checks_yaml)
    return load_models(folder)


def test_a_check_whose_sql_fails_names_its_file_and_publishes_nothing(tmp_path, warehouse):
    from reward_assets.quality.publish import build_model
    from reward_assets.warehouse.sql_models import SqlModelError

    models = write_model_with_checks(
        tmp_path / "models",
        "checks:\n  - name: broken\n    kind: violations\n"
        "    sql: SELECT no_such_column FROM {table}\n",
    )

    with pytest.raises(SqlModelError) as raised:
        build_model(warehouse, models["things"], models, {}, tmp_path / "data")
    assert str(tmp_path / "models" / "things.yml") in str(raised.value)
    assert "no_such_column" in str(raised.value)
    assert not warehouse.table_exists("marts.things")


@pytest.mark.parametrize(
    "declaration",
    [
        "checks:\n  - name: x\n    kind: violations\n",
        "checks:\n  - name: x\n    kind: unique_not_null\n",
        "checks:\n  - name: x\n    kind: at_least\n    column: n\n    min: 0\n    sql: SELECT 1\n",
        "checks:\n  - kind: unique_not_null\n    column: id\n",
        "checks:\n  - name: x\n    kind: unique\n    column: id\n",
    ],
    ids=["violations-without-sql", "kind-without-column", "sql-on-a-row-rule", "no-name", "kind"],
)
def test_a_malformed_declaration_is_refused_naming_the_file(tmp_path, declaration):
    from reward_assets.warehouse.sql_models import SqlModelError

    models = write_model_with_checks(tmp_path / "models", declaration)

    with pytest.raises(SqlModelError, match="things.yml"):
        load_checks(checks_path(models["things"]))
