"""The daily refresh builds the fact tables incrementally (the windows loaded since their
last build, the rows of customers and rewards that changed, and the provider events
whose row or landed twin changed), and what it serves equals, row for row, a full
rebuild from the same inputs, on DuckDB and PostgreSQL."""

import datetime as dt

import pandas as pd
import pytest

from reward_assets.defs.warehouse.sql_assets import model_params, project_models
from reward_assets.email.outbox import SENT_EVENT_COLUMNS
from reward_assets.email.webhooks import EVENT_COLUMNS
from reward_assets.ingest.contract import CUSTOMERS, ENTITIES, REDEMPTIONS, REWARDS
from reward_assets.ingest.load import load_snapshot, load_window
from reward_assets.pipeline import warehouse_summary
from reward_assets.quality.publish import VIEW_CHECKS_TABLE, build_model
from reward_assets.seed.generate import generate, simulate_day
from reward_assets.seed.model import SeedConfig
from reward_assets.settings import Settings
from reward_assets.warehouse.load_log import LOG_TABLE
from reward_assets.warehouse.staging import Slice
from reward_assets.warehouse.store import Warehouse

INCREMENTAL = ["fct_transactions", "fct_redemptions", "held_rows", "fct_engagement_events"]
# What the incremental models read, in dependency order (the refresh job builds these
# with the same function, one asset each).
MODELS = [
    "stg_customers",
    "stg_rewards",
    "stg_transactions",
    "stg_redemptions",
    "stg_engagement_events",
    "stg_provider_events",
    "dim_customers",
    "dim_rewards",
    *INCREMENTAL,
]


def _read(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.astype(str)
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def _refresh(warehouse: Warehouse, data, first: dt.date, last: dt.date, sends, posted) -> dict:
    """Load the days first..last, the snapshots, the emails sent and the provider events
    posted, and build the models as the daily refresh does; each model's audit."""
    start = dt.datetime.combine(first, dt.time())
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time())
    for entity in (CUSTOMERS, REWARDS):
        load_snapshot(warehouse, entity, data)
    rewards = set(warehouse.frame("SELECT reward_id FROM raw.rewards").reward_id)
    first_partition = dt.datetime.combine(Settings().partitions_start_date, dt.time())
    for entity in (e for e in ENTITIES.values() if e.partitioned):
        known = rewards if entity is REDEMPTIONS else None
        load_window(warehouse, entity, data, start, end, known, first_partition)
    for table, columns, rows in (
        ("raw.email_sends", SENT_EVENT_COLUMNS, sends),
        ("raw.provider_events", EVENT_COLUMNS, posted),
    ):
        frame = pd.DataFrame(rows, columns=list(columns))
        frame["occurred_at"] = pd.to_datetime(frame["occurred_at"])
        warehouse.replace_table(table, columns, [frame], logged_by="occurred_at")
    models, params = project_models(), model_params(warehouse, Settings())
    return {name: build_model(warehouse, models[name], models, params, data) for name in MODELS}


@pytest.mark.parametrize(
    "backend", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_an_incremental_refresh_equals_a_full_rebuild(tmp_path, request, backend):
    data = tmp_path / "data"
    config = SeedConfig(output=data, customers=300, rewards=30, days=20, seed=11)
    generate(config)
    url = (
        f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
        if backend == "duckdb"
        else request.getfixturevalue("pg_url")
    )
    customers_file = data / "customers" / "customers.csv"
    rewards_file = data / "rewards" / "rewards.csv"
    customers, rewards = _read(customers_file), _read(rewards_file)
    redemptions = pd.concat(map(_read, sorted((data / "redemptions").glob("*.csv"))))
    transactions = pd.concat(map(_read, sorted((data / "transactions").glob("*.csv"))))
    buyers = transactions.customer_id[transactions.customer_id.isin(customers.customer_id)]
    late, leaving = buyers.value_counts().index[:2]
    last = config.start_date + dt.timedelta(days=config.days - 1)
    # A landed event that arrives late: missing from its file until the new day's
    # refresh reloads that day, and posted by its provider meanwhile with an earlier time.
    late_file = data / "engagement_events" / f"{last.isoformat()}.csv"
    late_events = _read(late_file)
    twin = late_events.iloc[len(late_events) // 2]
    late_events[late_events.event_id != twin.event_id].to_csv(late_file, index=False)
    early = f"{config.start_date + dt.timedelta(days=2)} 09:00:00"
    provider_row = [
        twin.event_id,
        twin.customer_id,
        twin.event_type,
        early,
        twin.message_id,
        twin.campaign,
    ]
    posted = [provider_row, ["prov-1", buyers.iloc[0], "click", early, "m-1", "c"]]
    sends = [["send-1", buyers.iloc[0], early, "m-1", "c", None, None]]
    # A customer who arrives only with the new day, their earlier rows held until then.
    customers[customers.customer_id != late].to_csv(customers_file, index=False)
    warehouse = Warehouse(url)
    try:
        warehouse.ensure_schemas()
        first_build = _refresh(warehouse, data, config.start_date, last, sends, posted)
        assert all(first_build[m].built.staged.window is None for m in INCREMENTAL)

        # The new day, with the late customer arriving, another leaving the snapshot and
        # a redeemed reward moving category: rows outside the new day change too.
        landed = simulate_day(data, new_customers=15)
        now = _read(customers_file)
        now = now[now.customer_id != leaving]
        pd.concat([now, customers[customers.customer_id == late]]).to_csv(
            customers_file, index=False
        )
        moved = redemptions.reward_id.value_counts().index[0]
        rewards.loc[rewards.reward_id == moved, "category"] = "moved"
        rewards.to_csv(rewards_file, index=False)
        late_events.to_csv(late_file, index=False)
        # An email sent on the new day, one more provider event on an early day.
        new_day = f"{landed.first_day} 10:00:00"
        sends.append(["send-2", buyers.iloc[1], new_day, "m-2", "c", None, None])
        posted.append(["prov-2", buyers.iloc[1], "open", early, "m-2", "c"])
        # As daily_refresh_schedule asks: the new day and the day before it.
        day_before = landed.first_day - dt.timedelta(days=1)
        refresh = _refresh(warehouse, data, day_before, landed.last_day, sends, posted)

        served = {m: _sorted(warehouse.frame(f"SELECT * FROM marts.{m}")) for m in INCREMENTAL}
        for name in INCREMENTAL:
            assert isinstance(refresh[name].built.staged.window, Slice)
            assert refresh[name].published
            assert 0 < refresh[name].rows < len(served[name])
        late_days = warehouse.frame(
            "SELECT DISTINCT CAST(occurred_at AS DATE) AS day FROM marts.fct_transactions "
            "WHERE customer_id = :c",
            {"c": late},
        ).day
        assert (pd.to_datetime(late_days).dt.date < day_before).any()
        assert not warehouse.scalar(
            "SELECT COUNT(*) FROM marts.fct_transactions WHERE customer_id = :c", {"c": leaving}
        )
        assert (
            warehouse.scalar(
                "SELECT COUNT(*) FROM marts.fct_redemptions WHERE category = 'moved' "
                "AND redeemed_at < :day",
                {"day": landed.first_day},
            )
            == (redemptions.reward_id == moved).sum()
        )

        # The provider's copy of the late event left the early day once it landed.
        events = warehouse.frame(
            "SELECT event_id, occurred_at FROM marts.fct_engagement_events "
            "WHERE event_id IN ('prov-1', 'prov-2', 'send-1', 'send-2', :twin)",
            {"twin": twin.event_id},
        )
        assert sorted(events.event_id) == sorted(
            ["prov-1", "prov-2", "send-1", "send-2", twin.event_id]
        )
        assert str(events[events.event_id == twin.event_id].occurred_at.iloc[0]) > early

        models = project_models()
        params = model_params(warehouse, Settings())
        for name in INCREMENTAL:
            # Nothing changed since: a build replaces no row.
            again = build_model(warehouse, models[name], models, params, data)
            assert isinstance(again.built.staged.window, Slice)
            assert again.rows == 0 and again.published
            # The full rebuild: the same model from scratch on the same inputs.
            with warehouse.begin() as conn:
                conn.exec_driver_sql(f"DROP TABLE marts.{name}__state")
            full = build_model(warehouse, models[name], models, params, data)
            assert full.built.staged.window is None and full.published
            rebuilt = _sorted(warehouse.frame(f"SELECT * FROM marts.{name}"))
            pd.testing.assert_frame_equal(served[name], rebuilt)

        # What the builds record about their inputs stays out of the run's summary.
        assert warehouse.table_exists("marts.fct_transactions__state")
        assert warehouse.table_exists(LOG_TABLE)
        counts, _ = warehouse_summary(warehouse)
        assert "marts.fct_transactions" in counts
        assert [t for t in counts if "__" in t or t in (LOG_TABLE, VIEW_CHECKS_TABLE)] == []
    finally:
        warehouse.dispose()


@pytest.mark.parametrize(
    "backend", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_logged_replacement_logs_and_rewrites_only_the_days_that_changed(
    tmp_path, request, backend
):
    url = (
        f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
        if backend == "duckdb"
        else request.getfixturevalue("pg_url")
    )
    columns = {"event_id": "VARCHAR", "occurred_at": "TIMESTAMP"}
    day = dt.datetime(2023, 3, 1, 12)
    rows = {f"e{i}": day + dt.timedelta(days=i) for i in range(8)}

    def replace(events: dict) -> list:
        frame = pd.DataFrame({"event_id": list(events), "occurred_at": list(events.values())})
        warehouse.replace_table("raw.sends", columns, [frame], logged_by="occurred_at")
        log = warehouse.frame(f"SELECT * FROM {LOG_TABLE} ORDER BY seq")
        served = warehouse.frame("SELECT * FROM raw.sends ORDER BY event_id")
        assert list(served.event_id) == sorted(events)
        return [
            tuple(None if pd.isna(value) else str(value) for value in window)
            for window in zip(log.window_start, log.window_end, strict=True)
        ]

    warehouse = Warehouse(url)
    try:
        warehouse.ensure_schemas()
        assert replace(rows) == [(None, None)]  # a new table: logged whole
        assert len(replace(rows)) == 1  # the same rows: nothing logged
        # Days 1 and 2 (a row moved from one to the other), day 5 (added), day 7 (removed).
        changed = {**rows, "e1": rows["e2"], "new": rows["e5"]}
        del changed["e7"]
        days = [str(dt.datetime(2023, 3, 1) + dt.timedelta(days=d)) for d in range(9)]
        assert replace(changed)[1:] == [(days[1], days[3]), (days[5], days[6]), (days[7], days[8])]
        # A changed row without a day: the whole table.
        assert replace({**changed, "undated": None})[-1] == (None, None)
    finally:
        warehouse.dispose()
