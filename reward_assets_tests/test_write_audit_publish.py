"""Write, audit, publish: a served table is built beside the one readers see, checked, and
only then swapped in and published. A failed blocking check leaves the previous good
version serving, through the API, on DuckDB (the snapshots) and on PostgreSQL (the
tables), and the next good run publishes."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from reward_assets.quality.checks import checks_path, load_checks
from reward_assets.quality.publish import ViewAudit, build_model, replace_served
from reward_assets.recommend.sets import TABLE_COLUMNS
from reward_assets.warehouse.load_log import LOG_COLUMNS, LOG_TABLE, record_load
from reward_assets.warehouse.snapshots import SERVED_TABLES, snapshot_path
from reward_assets.warehouse.sql_models import SQL_DIR, load_models
from reward_assets.warehouse.staging import Carry
from reward_assets.warehouse.store import Warehouse
from reward_assets_tests.api_world import (
    ApiWorld,
    copy_ops_store,
    copy_world,
    serve,
    shared_world,
)
from reward_assets_tests.test_api_live import (
    PRODUCTION_SECRET,
    STAGING,
    copy_tables,
    sample_customers,
)

DIMS = ("marts.dim_customers", "marts.dim_rewards")
# The dims, and a model that reads dim_customers: skipped while its blocking check fails.
SELECTION = ("dim_customers", "dim_rewards", "fct_transactions")
NEW_BALANCE = 123_457


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request) -> Warehouse:
    return request.getfixturevalue(
        "duckdb_warehouse" if request.param == "duckdb" else "pg_warehouse"
    )


# --- the tables Python assets write ------------------------------------------------------

SCORE_COLUMNS = {"customer_id": "VARCHAR", "churn_probability": "DOUBLE PRECISION"}


def scores(*rows: tuple[str | None, float]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(SCORE_COLUMNS))


def test_a_python_table_with_a_duplicate_split_across_chunks_is_not_published(warehouse, tmp_path):
    data_dir = tmp_path / "data"
    good = replace_served(
        warehouse, "ml.churn_scores", SCORE_COLUMNS, [scores(("c1", 0.2), ("c2", 0.7))], data_dir
    )
    assert (good.published, good.rows, good.blocked_by) == (True, 2, [])
    snapshot = snapshot_path(data_dir, "ml.churn_scores")
    published = snapshot.stat().st_mtime_ns if warehouse.dialect == "duckdb" else None

    # Two chunks, as the scoring assets write them: the duplicate is in neither alone.
    chunks = [scores(("c1", 0.3), ("c3", 0.1)), scores(("c3", 0.4), (None, 0.5))]
    bad = replace_served(warehouse, "ml.churn_scores", SCORE_COLUMNS, chunks, data_dir)

    assert (bad.published, bad.rows, bad.blocked_by) == (
        False,
        4,
        ["customer_id_unique_not_null"],
    )
    unique = bad.outcomes["customer_id_unique_not_null"]
    assert (unique.failing_rows, unique.checked_rows, unique.examples) == (3, 4, [None, "c3", "c3"])
    assert bad.outcomes["churn_probability_in_unit_interval"].passed
    assert bad.metadata() == {
        "published": False,
        "check_seconds": bad.metadata()["check_seconds"],
        "blocked_by": "customer_id_unique_not_null",
        "rejected_build": "ml.churn_scores__next",
    }
    assert warehouse.frame("SELECT * FROM ml.churn_scores ORDER BY 1").values.tolist() == [
        ["c1", 0.2],
        ["c2", 0.7],
    ]
    if published is not None:
        assert snapshot.stat().st_mtime_ns == published
        assert sorted(pd.read_parquet(snapshot).customer_id) == ["c1", "c2"]
    assert warehouse.row_count("ml.churn_scores__next") == 4


SETS = "ml.recommendation_sets"


def sets_rows(*rows: tuple[str, int, str, str]) -> pd.DataFrame:
    """Recommendation rows (customer, rank, reward, as_of) of TABLE_COLUMNS."""
    frame = pd.DataFrame(rows, columns=["customer_id", "rank", "reward_id", "as_of"])
    return frame.assign(
        as_of=pd.to_datetime(frame.as_of).dt.date,
        score=frame["rank"] * 0.5,
        reason="taste",
        is_almost_there=False,
        is_exploration=frame["rank"] == 2,
        model_version="v1",
        source="model",
        computed_as_of=pd.to_datetime(frame.as_of).dt.date,
        inputs_key=frame.customer_id.str[1:].astype("int64"),
    )[list(TABLE_COLUMNS)]


def served_sets(warehouse: Warehouse, table: str = SETS) -> pd.DataFrame:
    frame = warehouse.frame(f"SELECT * FROM {table} ORDER BY customer_id, rank")
    return frame.assign(
        as_of=pd.to_datetime(frame.as_of), computed_as_of=pd.to_datetime(frame.computed_as_of)
    )


def test_carried_rows_stay_in_place_and_a_rejected_build_keeps_the_served_table(
    warehouse, tmp_path
):
    data_dir = tmp_path / "data"
    day, next_day = "2023-03-01", "2023-03-02"
    first = sets_rows(
        *[(c, r, f"w{r}", day) for c in ("c1", "c2", "c3") for r in (1, 2)], ("c4", 1, "w1", day)
    )
    assert replace_served(warehouse, SETS, TABLE_COLUMNS, [first], data_dir).published
    carried = Carry(pd.DataFrame({"customer_id": ["c1", "c3"], "as_of": [dt.date(2023, 3, 2)] * 2}))

    # c2 gets a new set, c4 left (neither carried nor computed), c5 arrived.
    new = sets_rows(("c2", 1, "w3", next_day), ("c5", 1, "w1", next_day))
    served = replace_served(warehouse, SETS, TABLE_COLUMNS, [new], data_dir, carry=carried)

    expected = pd.concat(
        [first[first.customer_id.isin(["c1", "c3"])].assign(as_of=dt.date(2023, 3, 2)), new]
    ).sort_values(["customer_id", "rank"], ignore_index=True)
    expected = expected.assign(
        as_of=pd.to_datetime(expected.as_of), computed_as_of=pd.to_datetime(expected.computed_as_of)
    )
    assert (served.published, served.rows) == (True, 6)
    pd.testing.assert_frame_equal(served_sets(warehouse), expected, check_dtype=False)
    assert not warehouse.table_exists(f"{SETS}__next")
    assert not warehouse.table_exists(f"{SETS}__kept")
    if warehouse.dialect == "duckdb":
        snapshot = pd.read_parquet(snapshot_path(data_dir, SETS))
        assert snapshot[["customer_id", "rank"]].values.tolist() == (
            expected[["customer_id", "rank"]].values.tolist()
        )
    published = (
        snapshot_path(data_dir, SETS).stat().st_mtime_ns if warehouse.dialect == "duckdb" else None
    )

    # A build whose new row repeats a carried customer's rank: rejected, nothing moves,
    # and the whole build (carried rows too) waits in __next.
    before = served_sets(warehouse)
    again = Carry(pd.DataFrame({"customer_id": ["c1", "c2"], "as_of": [dt.date(2023, 3, 3)] * 2}))
    bad = sets_rows(("c1", 1, "w9", "2023-03-03"))
    rejected = replace_served(warehouse, SETS, TABLE_COLUMNS, [bad], data_dir, carry=again)
    assert (rejected.published, rejected.rows) == (False, 4)
    assert rejected.blocked_by == ["rank_unique_per_customer"]
    pd.testing.assert_frame_equal(served_sets(warehouse), before)
    inspected = served_sets(warehouse, f"{SETS}__next")
    assert len(inspected) == 4
    assert (inspected.as_of == pd.Timestamp("2023-03-03")).all()
    assert not warehouse.table_exists(f"{SETS}__kept")
    if published is not None:
        assert snapshot_path(data_dir, SETS).stat().st_mtime_ns == published


def test_carried_rows_are_copied_into_a_build_declared_otherwise(duckdb_warehouse, tmp_path):
    """A table declared anew (here without `reason`) cannot keep rows in place: the build
    copies them and replaces the table whole."""
    first = sets_rows(("c1", 1, "w1", "2023-03-01"), ("c2", 1, "w2", "2023-03-01"))
    replace_served(duckdb_warehouse, SETS, TABLE_COLUMNS, [first], tmp_path)
    carried = Carry(pd.DataFrame({"customer_id": ["c1"], "as_of": [dt.date(2023, 3, 2)]}))
    declared = {c: t for c, t in TABLE_COLUMNS.items() if c != "reason"}
    new = sets_rows(("c2", 1, "w3", "2023-03-02"))[list(declared)]

    served = replace_served(duckdb_warehouse, SETS, declared, [new], tmp_path, carry=carried)

    assert (served.published, served.rows) == (True, 2)
    assert [c for c, _ in duckdb_warehouse.columns(SETS)] == list(declared)
    rows = served_sets(duckdb_warehouse)
    assert rows[["customer_id", "reward_id", "as_of"]].values.tolist() == [
        ["c1", "w1", pd.Timestamp("2023-03-02")],
        ["c2", "w3", pd.Timestamp("2023-03-02")],
    ]
    assert not duckdb_warehouse.table_exists(f"{SETS}__kept")


# The run's period, for the in_period checks of the staging views a mart reads.
PERIOD = {
    "period_start": dt.datetime(2023, 3, 1),
    "period_end": dt.datetime(2023, 3, 10),
    "as_of_end": dt.datetime(2023, 3, 3),
}


def test_a_mart_keeps_its_previous_version_when_a_view_it_reads_fails_a_blocking_check(
    warehouse, tmp_path
):
    """A view has no previous version to keep, so the marts built from it carry its
    blocking checks: a duplicate id in raw.redemptions leaves fct_redemptions as it was."""
    data_dir = tmp_path / "data"
    with warehouse.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE raw.redemptions (redemption_id VARCHAR, customer_id VARCHAR, "
                "reward_id VARCHAR, redeemed_at TIMESTAMP, points_spent INTEGER)"
            )
        )
        conn.execute(
            sa.text("INSERT INTO raw.redemptions VALUES ('r1', 'c1', 'w1', :t, 5)"),
            {"t": dt.datetime(2023, 3, 2)},
        )
        conn.execute(sa.text("CREATE TABLE marts.dim_rewards (reward_id VARCHAR, category TEXT)"))
        conn.execute(sa.text("INSERT INTO marts.dim_rewards VALUES ('w1', 'dining')"))
        conn.execute(sa.text("CREATE TABLE marts.dim_customers (customer_id VARCHAR)"))
        conn.execute(sa.text("INSERT INTO marts.dim_customers VALUES ('c1')"))
    models = load_models(SQL_DIR)
    view = build_model(warehouse, models["stg_redemptions"], models, PERIOD, data_dir)
    good = build_model(warehouse, models["fct_redemptions"], models, PERIOD, data_dir)
    assert (view.published, good.published, good.blocked_by) == (True, True, [])

    with warehouse.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO raw.redemptions VALUES ('r1', 'c1', 'w1', :t, 7)"),
            {"t": dt.datetime(2023, 3, 2, 1)},
        )
    view = build_model(warehouse, models["stg_redemptions"], models, PERIOD, data_dir)
    bad = build_model(warehouse, models["fct_redemptions"], models, PERIOD, data_dir)

    # The view reports its failed check, and the mart does not swap in what it read.
    assert not view.outcomes["redemption_id_unique_not_null"].passed
    assert warehouse.row_count("staging.stg_redemptions") == 2
    assert (bad.published, bad.blocked_by) == (
        False,
        ["stg_redemptions:redemption_id_unique_not_null"],
    )
    assert warehouse.frame(
        "SELECT points_spent FROM marts.fct_redemptions"
    ).points_spent.tolist() == [5]
    assert warehouse.row_count("marts.fct_redemptions__next") == 2


def _load_transactions(warehouse, start, end, *rows):
    """A logged load of transactions: replaces [start, end) with `rows` (id, time), or the
    whole table without a window."""
    with warehouse.begin() as conn:
        if start:
            conn.execute(
                sa.text(
                    "DELETE FROM raw.transactions WHERE occurred_at >= :s AND occurred_at < :e"
                ),
                {"s": start, "e": end},
            )
        else:
            conn.execute(sa.text("DELETE FROM raw.transactions"))
        for transaction_id, at in rows:
            conn.execute(
                sa.text(
                    "INSERT INTO raw.transactions VALUES (:id, 'c1', :t, 10.0, 'usd', 'x', 'y', 1)"
                ),
                {"id": transaction_id, "t": at},
            )
        record_load(conn, "transactions", start, end)


def _transactions_view(warehouse):
    """An empty, logged raw.transactions; the models and the view stg_transactions."""
    warehouse.create_table(LOG_TABLE, LOG_COLUMNS)
    with warehouse.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE raw.transactions (transaction_id VARCHAR, customer_id VARCHAR, "
                "occurred_at TIMESTAMP, amount DOUBLE PRECISION, currency VARCHAR, "
                "category VARCHAR, channel VARCHAR, points_earned INTEGER)"
            )
        )
    models = load_models(SQL_DIR)
    return models, models["stg_transactions"]


def test_a_views_unique_rule_reads_only_the_windows_loaded_since_its_pass(warehouse, tmp_path):
    """Once the whole rule passed, a load of a window is checked on the window's ids: a
    missing id, one repeated in the window, or one a row outside holds. What it finds
    runs the whole rule, so the outcome is the one the whole rule reports."""
    data_dir, day = tmp_path / "data", dt.datetime(2023, 3, 1)
    models, view = _transactions_view(warehouse)
    unique = next(c for c in load_checks(checks_path(view)) if c.unique)

    def build():
        audited = build_model(warehouse, view, models, PERIOD, data_dir)
        return audited.outcomes[unique.name]

    def holds():
        return ViewAudit.before_build(warehouse, view, PERIOD).unique_still_holds(warehouse, unique)

    def outcome(o):
        return (o.passed, o.failing_rows, o.checked_rows, o.examples)

    _load_transactions(warehouse, day, day + dt.timedelta(days=2), ("t1", day), ("t2", day))
    assert not holds()  # never passed: the whole rule runs
    assert outcome(build()) == (True, 0, 2, [])

    windows = [
        (("t3", day + dt.timedelta(days=2)),),  # clean
        (("t1", day + dt.timedelta(days=2)),),  # an id a row outside the window holds
        (("t4", day + dt.timedelta(days=2)), ("t4", day + dt.timedelta(days=2, hours=1))),
        ((None, day + dt.timedelta(days=2)),),
    ]
    expected = [
        (True, 0, 3, []),
        (False, 2, 3, ["t1", "t1"]),
        (False, 2, 4, ["t4", "t4"]),
        (False, 1, 3, [None]),
    ]
    for rows, (passed, failing, checked, examples) in zip(windows, expected, strict=True):
        _load_transactions(warehouse, day + dt.timedelta(days=2), day + dt.timedelta(days=3), *rows)
        assert holds() == passed
        assert outcome(build()) == (passed, failing, checked, examples)
        if not passed:  # the window fixed: it passes on the windows loaded since the pass
            _load_transactions(
                warehouse, day + dt.timedelta(days=2), day + dt.timedelta(days=3), *windows[0]
            )
            assert holds()
            assert outcome(build()) == (True, 0, 3, [])

    # A load of the whole table: the whole rule runs again.
    _load_transactions(warehouse, None, None, ("t1", day), ("t1", day))
    assert not holds()
    assert outcome(build()) == (False, 2, 2, ["t1", "t1"])


def test_a_views_row_rules_read_only_the_windows_loaded_since_their_pass(warehouse, tmp_path):
    """Once a view's row rules passed, the next build reads them on the windows loaded
    since, as long as only the period's end moved, and forward; anything else, or a load
    of the whole table, reads the whole view again."""
    data_dir, day = tmp_path / "data", dt.datetime(2023, 3, 1)
    models, view = _transactions_view(warehouse)
    rule = next(c for c in load_checks(checks_path(view)) if c.expectations)

    def build(**params):
        audited = build_model(warehouse, view, models, {**PERIOD, **params}, data_dir)
        o = audited.outcomes[rule.name]
        return (o.passed, o.failing_rows, o.checked_rows)

    def unlogged(transaction_id, at):
        # A row no load logged: only a read of the whole view can see it.
        with warehouse.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO raw.transactions VALUES (:id, 'c1', :t, 1, 'usd', 'x', 'y', 1)"
                ),
                {"id": transaction_id, "t": at},
            )

    def load(first: int, *rows: tuple[str, int]):
        """A logged load of the days [first, first + 1), rows as (id, day)."""
        start = day + dt.timedelta(days=first)
        rows = tuple((i, day + dt.timedelta(days=d)) for i, d in rows)
        _load_transactions(warehouse, start, start + dt.timedelta(days=1), *rows)

    load(0, ("t1", 0))
    assert build() == (True, 0, 1)
    unlogged("early", day - dt.timedelta(days=5))  # before the period: breaks the rule
    later = {
        "as_of_end": PERIOD["as_of_end"] + dt.timedelta(days=1),
        "period_end": PERIOD["period_end"] + dt.timedelta(days=1),
    }
    # The next day, the period's end moved on: its window alone is read.
    load(2, ("t2", 2))
    assert build(**later) == (True, 0, 3)
    # A window's row past the period fails, counted from the window; fixed, it passes.
    load(12, ("t3", 12))
    assert build(**later) == (False, 1, 4)
    load(12)
    assert build(**later) == (True, 0, 3)
    # An earlier end than the pass's, or another period start: the whole view.
    assert build() == (False, 1, 3)
    assert build(**later, period_start=day - dt.timedelta(days=9)) == (True, 0, 3)
    assert build(**later) == (False, 1, 3)
    # A load of the whole table reads it all, here too.
    _load_transactions(warehouse, None, None, ("t1", day), ("t2", day + dt.timedelta(days=1)))
    assert build(**later) == (True, 0, 2)


def test_a_failing_warning_check_still_publishes(duckdb_warehouse, tmp_path):
    with duckdb_warehouse.begin() as conn:
        conn.execute(sa.text("CREATE TABLE marts.dim_rewards (reward_id VARCHAR, category TEXT)"))
        conn.execute(sa.text("INSERT INTO marts.dim_rewards VALUES ('w1', 'dining')"))
        conn.execute(
            sa.text(
                "CREATE TABLE staging.stg_redemptions AS SELECT * FROM (VALUES "
                "('r1', 'c1', 'w1', TIMESTAMP '2023-03-02', 5), "
                "('r2', 'c1', 'w9', TIMESTAMP '2023-03-02', 5)) "
                "v(redemption_id, customer_id, reward_id, redeemed_at, points_spent)"
            )
        )
        conn.execute(sa.text("CREATE TABLE marts.dim_customers (customer_id VARCHAR)"))
        conn.execute(sa.text("INSERT INTO marts.dim_customers VALUES ('c1')"))
    models = load_models(SQL_DIR)

    audited = build_model(
        duckdb_warehouse, models["fct_redemptions"], models, PERIOD, tmp_path / "data"
    )

    # reward_id_in_dim_rewards warns (a retired reward keeps its history): not blocking.
    assert audited.outcomes["reward_id_in_dim_rewards"].failing_rows == 1
    assert (audited.published, audited.blocked_by) == (True, [])
    assert duckdb_warehouse.row_count("marts.fct_redemptions") == 2
    assert snapshot_path(tmp_path / "data", "marts.fct_redemptions").exists()


# --- the API through a failed run and a good one ------------------------------------------


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    return shared_world(tmp_path_factory)


def run(world: ApiWorld, monkeypatch) -> tuple[bool, list[str], set[str]]:
    """One run of SELECTION on the world's stores: (success, failed checks, assets
    materialised)."""
    from reward_assets.definitions import defs
    from reward_assets.pipeline import materialize_all

    for variable in ("AS_OF", "HOLDOUT_SHARE", "PARTITIONS_START_DATE", "OPS_DB_URL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("DATA_DIR", str(world.data_dir))
    monkeypatch.setenv("WAREHOUSE_URL", world.warehouse_url)
    with dg.DagsterInstance.ephemeral() as instance:
        summary = materialize_all(
            defs(), instance, world.config.start_date, world.last_day, list(SELECTION)
        )
        done = {k for k in SELECTION if instance.get_latest_materialization_event(dg.AssetKey(k))}
    return summary.success, sorted(summary.failed_checks), done


def plant_duplicates(warehouse: Warehouse, customer_id: str, reward_id: str) -> None:
    """A second row for the customer and for the reward in staging, and a change the
    dims would serve if they were published: a new balance, the reward withdrawn."""
    with warehouse.begin() as conn:
        conn.execute(
            sa.text("UPDATE staging.stg_customers SET points_balance = :b WHERE customer_id = :c"),
            {"b": NEW_BALANCE, "c": customer_id},
        )
        conn.execute(
            sa.text("UPDATE staging.stg_rewards SET active = FALSE WHERE reward_id = :r"),
            {"r": reward_id},
        )
    for table, column, key in (
        ("staging.stg_customers", "customer_id", customer_id),
        ("staging.stg_rewards", "reward_id", reward_id),
    ):
        row = warehouse.frame(f"SELECT * FROM {table} WHERE {column} = :k", {"k": key})
        with warehouse.begin() as conn:
            warehouse.append(conn, table, row)


def remove_duplicates(warehouse: Warehouse, customer_id: str, reward_id: str) -> None:
    for table, column, key in (
        ("staging.stg_customers", "customer_id", customer_id),
        ("staging.stg_rewards", "reward_id", reward_id),
    ):
        rows = warehouse.frame(f"SELECT * FROM {table} WHERE {column} = :k", {"k": key})
        assert len(rows) == 2
        with warehouse.begin() as conn:
            conn.execute(sa.text(f"DELETE FROM {table} WHERE {column} = :k"), {"k": key})
            warehouse.append(conn, table, rows.iloc[:1])


def answers(url: str, customer_id: str, reward_id: str) -> dict[str, dict]:
    with httpx.Client(base_url=url, timeout=30) as client:
        return {
            path: client.get(path).json()
            for path in (
                f"/api/customers/{customer_id}",
                f"/api/customers/{customer_id}/recommended_rewards?limit=10",
                f"/api/rewards/{reward_id}",
            )
        }


def first_recommended(world: ApiWorld, customer_id: str) -> str:
    sets = pd.read_parquet(world.snapshots / "ml.recommendation_sets.parquet")
    return sets[sets.customer_id == customer_id].sort_values("rank").reward_id.iloc[0]


def assert_rejected_then_published(
    picked: ApiWorld, target: ApiWorld, url: str, monkeypatch
) -> None:
    """Plant duplicate ids in the dims' staging rows of `target`, run, and check the API
    at `url` (serving `target`) before, after the failed run and after a good one.
    `picked` holds the snapshots and ops store the customer and reward are picked from."""
    customer_id = sample_customers(picked, 1)[0]
    reward_id = first_recommended(picked, customer_id)
    warehouse = Warehouse(target.warehouse_url)
    before = answers(url, customer_id, reward_id)
    assert before[f"/api/rewards/{reward_id}"]["active"] is True
    versions = {t: table_version(target, warehouse, t) for t in DIMS}
    rows = {t: warehouse.row_count(t) for t in DIMS}
    plant_duplicates(warehouse, customer_id, reward_id)

    warehouse.dispose()  # no connection of the test's open while the run writes DuckDB
    success, failed, done = run(target, monkeypatch)

    assert not success
    assert failed == [
        "dim_customers:customer_id_unique_not_null",
        "dim_rewards:reward_id_unique_not_null",
    ]
    assert done == {"dim_customers", "dim_rewards"}  # fct_transactions: skipped
    assert answers(url, customer_id, reward_id) == before
    assert {t: warehouse.row_count(t) for t in DIMS} == rows
    # Neither swapped nor published: the very snapshot files (DuckDB), tables (PostgreSQL).
    assert {t: table_version(target, warehouse, t) for t in DIMS} == versions
    # The rejected builds wait beside the tables, every offending row in them.
    duplicated = warehouse.scalar(
        "SELECT COUNT(*) FROM marts.dim_customers__next WHERE customer_id = :c",
        {"c": customer_id},
    )
    assert duplicated == 2

    remove_duplicates(warehouse, customer_id, reward_id)
    warehouse.dispose()
    success, failed, done = run(target, monkeypatch)

    assert (success, failed, done) == (True, [], set(SELECTION))
    after = answers(url, customer_id, reward_id)
    assert after[f"/api/customers/{customer_id}"]["points_balance"] == NEW_BALANCE
    assert after[f"/api/rewards/{reward_id}"]["active"] is False
    recommended = after[f"/api/customers/{customer_id}/recommended_rewards?limit=10"]
    assert reward_id not in [item["reward"]["reward_id"] for item in recommended["items"]]
    assert all(table_version(target, warehouse, t) != versions[t] for t in DIMS)
    assert not warehouse.table_exists("marts.dim_customers__next")
    warehouse.dispose()


def table_version(world: ApiWorld, warehouse: Warehouse, table: str):
    """What changes when a served table is published: its snapshot file on DuckDB, the
    table itself (its OID) on PostgreSQL."""
    if world.warehouse_url.startswith("duckdb"):
        stat = snapshot_path(world.data_dir, table).stat()
        return stat.st_ino, stat.st_mtime_ns
    return warehouse.scalar("SELECT to_regclass(:t)::oid::bigint", {"t": table})


def test_duckdb_serves_the_last_good_dims_until_a_good_run(world, tmp_path, monkeypatch):
    copy = copy_world(world, tmp_path)
    env = {"DATA_DIR": str(copy.data_dir), "WAREHOUSE_URL": copy.warehouse_url}
    with serve(env) as url:
        assert_rejected_then_published(copy, copy, url, monkeypatch)


@pytest.mark.postgres
def test_postgresql_serves_the_last_good_dims_until_a_good_run(
    world, pg_url, tmp_path, monkeypatch
):
    source, warehouse = Warehouse(world.warehouse_url), Warehouse(pg_url)
    copy_tables(source, warehouse, [*SERVED_TABLES, *STAGING, "staging.stg_transactions"])
    source.dispose()
    warehouse.dispose()
    on_pg = ApiWorld(tmp_path / "no-snapshots", pg_url, world.config)
    env = {
        "WAREHOUSE_URL": pg_url,
        "DATA_DIR": str(on_pg.data_dir),
        "OPS_DB_URL": copy_ops_store(world, tmp_path / "ops.sqlite"),
        # Outside the embedded demo the API refuses the public default secret.
        "UNSUBSCRIBE_SECRET": PRODUCTION_SECRET,
    }
    with serve(env) as url:
        assert_rejected_then_published(world, on_pg, url, monkeypatch)


def test_every_served_table_a_python_asset_writes_has_blocking_checks_on_its_asset():
    from reward_assets.definitions import defs
    from reward_assets.quality.checks import load_checks, table_checks_path

    definitions = defs()
    sql_models = {p.stem for p in SQL_DIR.glob("*.sql")}
    python_written = [t for t in SERVED_TABLES if t.rpartition(".")[2] not in sql_models]
    assert sorted(python_written) == [
        "ml.churn_scores",
        "ml.customer_segments",
        "ml.engagement_scores",
        "ml.recommendation_sets",
        "ml.send_time_preferences",
    ]
    for table in python_written:
        declared = load_checks(table_checks_path(table))
        asset = definitions.resolve_assets_def(table.rpartition(".")[2])
        specs = {spec.name: spec for spec in asset.check_specs}
        # Besides their SQL checks, the tables a fallback may build say whether it did.
        extra = {
            "ml.recommendation_sets": {"served_by_a_ranker"},
            "ml.churn_scores": {"served_by_model"},
            "ml.send_time_preferences": {"served_by_model"},
        }.get(table, set())
        assert declared and set(specs) == {c.name for c in declared} | extra, table
        assert all(specs[c.name].blocking == c.blocking for c in declared), table
        assert any(c.blocking for c in declared), table
