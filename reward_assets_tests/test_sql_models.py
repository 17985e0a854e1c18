"""The SQL model loader of dbt_like_sql/: parsing, refs, dependency order, materialisation.

Models are written into small folders under tmp_path and run on real databases (a DuckDB
file; PostgreSQL where a test is parametrised over both and a server is reachable).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import sqlalchemy as sa

from reward_assets.ingest.contract import (
    ENTITIES,
    LOWEST_TIER,
    TIER_RANKS,
    TIERS,
    TRANSACTIONS,
    sql_types,
)
from reward_assets.ingest.load import load_window, raw_columns
from reward_assets.recommend.eligibility import unavailable_reason
from reward_assets.warehouse.sql_models import (
    SQL_DIR,
    SqlModel,
    SqlModelError,
    load_models,
    materialize,
    parse_model,
    render,
)
from reward_assets.warehouse.store import Warehouse
from reward_assets_tests.landing_builders import transaction, write_basic_landing, write_rows

D1, D2, D3, D4 = (dt.datetime(2023, 3, day) for day in (1, 2, 3, 4))


def write_model(folder: Path, name: str, body: str, **header: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"-- {key}: {value}" for key, value in header.items()]
    path = folder / f"{name}.sql"
    path.write_text("\n".join([*lines, body]) + "\n")
    return path


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request) -> Warehouse:
    """The same test on a DuckDB file and on a fresh PostgreSQL database."""
    fixture = "duckdb_warehouse" if request.param == "duckdb" else "pg_warehouse"
    return request.getfixturevalue(fixture)


def make_events(warehouse: Warehouse, rows: list[tuple[str, dt.datetime]]) -> None:
    with warehouse.begin() as conn:
        conn.execute(sa.text("CREATE TABLE raw.events (event_id VARCHAR, occurred_at TIMESTAMP)"))
        if rows:
            conn.execute(
                sa.text("INSERT INTO raw.events VALUES (:i, :t)"),
                [{"i": i, "t": t} for i, t in rows],
            )


def table_rows(warehouse: Warehouse, table: str) -> list[tuple]:
    frame = warehouse.frame(f"SELECT * FROM {table}")
    return sorted(tuple(row) for row in frame.itertuples(index=False))


def events_model(folder: Path, where: bool = True) -> None:
    """A partitioned staging model over raw.events; without `where`, a careless one."""
    body = "SELECT event_id, occurred_at FROM {{ source('raw', 'events') }}"
    if where:
        body += "\nWHERE occurred_at >= :partition_start AND occurred_at < :partition_end"
    write_model(
        folder,
        "stg_events",
        body,
        schema="staging",
        materialized="partitioned",
        partition_column="occurred_at",
    )


def window(start: dt.datetime, end: dt.datetime) -> dict[str, dt.datetime]:
    return {"partition_start": start, "partition_end": end}


# --- refs, sources and dependency order --------------------------------------------------


def test_ref_renders_to_the_schema_qualified_table_and_source_to_raw(tmp_path):
    write_model(tmp_path, "base", "SELECT * FROM {{ source('raw', 'things') }}", schema="staging")
    write_model(
        tmp_path,
        "report",
        "SELECT b.id FROM {{ ref('base') }} b\n"
        "JOIN {{source('raw','other')}} o ON o.id = b.id\n"
        "JOIN {{ ref( 'base' ) }} again ON again.id = b.id",
        schema="marts",
    )
    models = load_models(tmp_path)

    assert render(models["report"], models) == (
        "SELECT b.id FROM staging.base b\n"
        "JOIN raw.other o ON o.id = b.id\n"
        "JOIN staging.base again ON again.id = b.id"
    )
    assert render(models["base"], models) == "SELECT * FROM raw.things"
    assert models["report"].refs == ("base",)
    assert models["report"].sources == (("raw", "other"),)
    assert models["base"].refs == ()
    assert models["base"].sources == (("raw", "things"),)
    assert models["base"].table == "staging.base"


def test_load_models_orders_dependencies_before_dependants(tmp_path):
    # Alphabetical order is the reverse of the dependency order, so sorting cannot pass.
    write_model(tmp_path, "c_base", "SELECT 1 AS id")
    write_model(tmp_path, "b_middle", "SELECT id FROM {{ ref('c_base') }}")
    write_model(
        tmp_path,
        "a_top",
        "SELECT m.id FROM {{ ref('b_middle') }} m JOIN {{ ref('c_base') }} c ON c.id = m.id",
    )
    write_model(tmp_path, "d_alone", "SELECT 2 AS id")

    order = list(load_models(tmp_path))

    assert sorted(order) == ["a_top", "b_middle", "c_base", "d_alone"]
    assert order.index("c_base") < order.index("b_middle") < order.index("a_top")


def test_header_fields_are_parsed(tmp_path):
    path = write_model(
        tmp_path,
        "stg_events",
        "SELECT 1 AS id",
        schema="staging",
        materialized="partitioned",
        partition_column="occurred_at",
        group="staging",
        description="Events of the window: typed, one line.",
    )
    model = parse_model(path)

    assert model == SqlModel(
        name="stg_events",
        path=path,
        body="SELECT 1 AS id",
        schema="staging",
        materialized="partitioned",
        partition_column="occurred_at",
        group="staging",
        description="Events of the window: typed, one line.",
        refs=(),
        sources=(),
    )
    assert model.partitioned
    assert model.table == "staging.stg_events"


def test_a_model_without_header_is_a_warehouse_table_in_marts(tmp_path):
    model = parse_model(write_model(tmp_path, "plain", "SELECT 1 AS id;"))

    assert (model.schema, model.materialized, model.group) == ("marts", "table", "warehouse")
    assert model.partition_column is None
    assert not model.partitioned
    assert model.body == "SELECT 1 AS id"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-- schema: marts\n-- owner: me\nSELECT 1\n", "unknown header key 'owner'"),
        ("-- materialized: partitioned\nSELECT 1\n", "partition_column"),
        ("-- materialized: snapshot\nSELECT 1\n", "materialized"),
        ("-- schema: marts\n\n   \n", "no SQL"),
        ("", "no SQL"),
    ],
    ids=["unknown-key", "partitioned-without-column", "bad-materialized", "blank-body", "empty"],
)
def test_bad_model_files_raise_naming_the_file(tmp_path, text, message):
    path = tmp_path / "broken_model.sql"
    path.write_text(text)

    with pytest.raises(SqlModelError) as raised:
        parse_model(path)
    assert str(path) in str(raised.value)
    assert message in str(raised.value)


def test_header_only_file_is_rejected(tmp_path):
    path = tmp_path / "header_only.sql"
    path.write_text("-- schema: marts\n-- materialized: table\n")

    with pytest.raises(SqlModelError, match="no SQL"):
        parse_model(path)


def test_unknown_ref_names_the_referencing_file(tmp_path):
    write_model(tmp_path, "good", "SELECT 1 AS id")
    bad = write_model(tmp_path, "bad", "SELECT * FROM {{ ref('missing_model') }}")

    with pytest.raises(SqlModelError) as raised:
        load_models(tmp_path)
    assert str(bad) in str(raised.value)
    assert "missing_model" in str(raised.value)


def test_ref_cycle_names_a_file_and_the_cycle(tmp_path):
    a = write_model(tmp_path, "a", "SELECT * FROM {{ ref('b') }}")
    b = write_model(tmp_path, "b", "SELECT * FROM {{ ref('a') }}")
    write_model(tmp_path, "c", "SELECT 1 AS id")

    with pytest.raises(SqlModelError) as raised:
        load_models(tmp_path)
    message = str(raised.value)
    assert str(a) in message or str(b) in message
    assert re.search(r"\ba -> b -> a\b|\bb -> a -> b\b", message), message


# --- materialisation -------------------------------------------------------------------


def test_sql_error_at_materialize_names_the_file_and_keeps_the_old_table(
    tmp_path, duckdb_warehouse
):
    models_dir = tmp_path / "models"
    make_events(duckdb_warehouse, [("e1", D1), ("e2", D2)])
    write_model(models_dir, "events_copy", "SELECT event_id FROM {{ source('raw', 'events') }}")
    models = load_models(models_dir)
    assert materialize(duckdb_warehouse, models["events_copy"], models, {}).rows == 2

    path = write_model(
        models_dir, "events_copy", "SELECT no_such_column FROM {{ source('raw', 'events') }}"
    )
    models = load_models(models_dir)
    with pytest.raises(SqlModelError) as raised:
        materialize(duckdb_warehouse, models["events_copy"], models, {})
    assert str(path) in str(raised.value)
    assert "no_such_column" in str(raised.value)
    # The failed rebuild was one transaction: the old table is intact, no staging leftover.
    assert table_rows(duckdb_warehouse, "marts.events_copy") == [("e1",), ("e2",)]
    assert not duckdb_warehouse.table_exists("marts.events_copy__next")


def test_table_model_is_replaced_not_appended(tmp_path, duckdb_warehouse):
    make_events(duckdb_warehouse, [("e1", D1), ("e2", D2)])
    write_model(
        tmp_path / "models",
        "events_copy",
        "SELECT event_id, occurred_at FROM {{ source('raw', 'events') }}",
        schema="marts",
    )
    models = load_models(tmp_path / "models")
    model = models["events_copy"]

    assert materialize(duckdb_warehouse, model, models, {}).rows == 2
    first = table_rows(duckdb_warehouse, "marts.events_copy")
    assert materialize(duckdb_warehouse, model, models, {}).rows == 2
    assert (
        table_rows(duckdb_warehouse, "marts.events_copy")
        == first
        == [
            ("e1", pd.Timestamp(D1)),
            ("e2", pd.Timestamp(D2)),
        ]
    )

    with duckdb_warehouse.begin() as conn:
        conn.execute(sa.text("DELETE FROM raw.events WHERE event_id = 'e1'"))
        conn.execute(sa.text("INSERT INTO raw.events VALUES ('e3', :t)"), {"t": D3})
    assert materialize(duckdb_warehouse, model, models, {}).rows == 2
    assert [r[0] for r in table_rows(duckdb_warehouse, "marts.events_copy")] == ["e2", "e3"]
    assert not duckdb_warehouse.table_exists("marts.events_copy__next")


def test_partitioned_model_replaces_exactly_its_window(tmp_path, warehouse):
    make_events(
        warehouse,
        [("a1", D1 + dt.timedelta(hours=1)), ("b1", D2), ("b2", D2 + dt.timedelta(hours=23))]
        + [("c1", D3 + dt.timedelta(hours=12))],
    )
    events_model(tmp_path / "models")
    models = load_models(tmp_path / "models")
    model = models["stg_events"]
    for start, end in ((D1, D2), (D2, D3), (D3, D4)):
        materialize(warehouse, model, models, window(start, end))
    assert [r[0] for r in table_rows(warehouse, "staging.stg_events")] == ["a1", "b1", "b2", "c1"]

    # Day 2 changes in raw; days 1 and 3 change too, but only day 2 is rebuilt.
    with warehouse.begin() as conn:
        conn.execute(sa.text("DELETE FROM raw.events WHERE event_id IN ('b2', 'a1', 'c1')"))
        conn.execute(
            sa.text("INSERT INTO raw.events VALUES (:i, :t)"),
            [
                {"i": "b3", "t": D2 + dt.timedelta(hours=5)},
                {"i": "a9", "t": D1 + dt.timedelta(hours=5)},
            ],
        )
    materialize(warehouse, model, models, window(D2, D3))
    after = table_rows(warehouse, "staging.stg_events")
    assert [r[0] for r in after] == ["a1", "b1", "b3", "c1"]

    materialize(warehouse, model, models, window(D2, D3))
    assert table_rows(warehouse, "staging.stg_events") == after


def test_outer_window_filter_stops_a_careless_model(tmp_path, duckdb_warehouse):
    make_events(
        duckdb_warehouse, [("a1", D1), ("b1", D2), ("b2", D2 + dt.timedelta(hours=3)), ("c1", D3)]
    )
    events_model(tmp_path / "models", where=False)  # selects every day of raw.events
    models = load_models(tmp_path / "models")
    model = models["stg_events"]

    materialize(duckdb_warehouse, model, models, window(D2, D3))
    assert [r[0] for r in table_rows(duckdb_warehouse, "staging.stg_events")] == ["b1", "b2"]

    materialize(duckdb_warehouse, model, models, window(D1, D2))
    materialize(duckdb_warehouse, model, models, window(D2, D3))
    assert [r[0] for r in table_rows(duckdb_warehouse, "staging.stg_events")] == [
        "a1",
        "b1",
        "b2",
    ]


@pytest.mark.parametrize(
    "backend",
    [
        "duckdb",
        "postgres",
    ],
)
def test_partitioned_materialize_returns_the_rows_written(tmp_path, request, backend):
    warehouse = request.getfixturevalue(
        "duckdb_warehouse" if backend == "duckdb" else "pg_warehouse"
    )
    make_events(warehouse, [("a1", D1), ("b1", D2), ("b2", D2 + dt.timedelta(hours=1))])
    events_model(tmp_path / "models")
    models = load_models(tmp_path / "models")

    assert materialize(warehouse, models["stg_events"], models, window(D2, D3)).rows == 2


def test_a_rejected_table_build_leaves_the_table_and_stays_beside_it(tmp_path, warehouse):
    make_events(warehouse, [("e1", D1), ("e2", D2)])
    write_model(tmp_path / "models", "events_copy", "SELECT * FROM {{ source('raw', 'events') }}")
    models = load_models(tmp_path / "models")
    model = models["events_copy"]
    assert materialize(warehouse, model, models, {}).published
    with warehouse.begin() as conn:
        conn.execute(sa.text("INSERT INTO raw.events VALUES ('e3', :t)"), {"t": D3})
    seen = []

    def reject(staged) -> bool:
        # The audit reads the build beside the table, whose readers still see the old rows.
        seen.append(table_rows(warehouse, staged.staged))
        assert [r[0] for r in table_rows(warehouse, staged.table)] == ["e1", "e2"]
        return False

    built = materialize(warehouse, model, models, {}, audit=reject)

    assert (built.published, built.rows) == (False, 3)
    assert [[r[0] for r in rows] for rows in seen] == [["e1", "e2", "e3"]]
    assert [r[0] for r in table_rows(warehouse, "marts.events_copy")] == ["e1", "e2"]
    # Left for inspection, and replaced by the next build, which the audit approves.
    assert len(table_rows(warehouse, "marts.events_copy__next")) == 3
    assert materialize(warehouse, model, models, {}, audit=lambda staged: True).published
    assert [r[0] for r in table_rows(warehouse, "marts.events_copy")] == ["e1", "e2", "e3"]
    assert not warehouse.table_exists("marts.events_copy__next")


def test_a_rejected_window_leaves_every_day_of_the_table(tmp_path, warehouse):
    make_events(warehouse, [("a1", D1), ("b1", D2), ("c1", D3)])
    events_model(tmp_path / "models")
    models = load_models(tmp_path / "models")
    model = models["stg_events"]
    for start, end in ((D1, D2), (D2, D3), (D3, D4)):
        assert materialize(warehouse, model, models, window(start, end)).published
    with warehouse.begin() as conn:
        conn.execute(sa.text("DELETE FROM raw.events WHERE event_id = 'b1'"))
        conn.execute(sa.text("INSERT INTO raw.events VALUES ('b2', :t)"), {"t": D2})
    published = []

    def whole_table(staged) -> bool:
        published.append(warehouse.frame(staged.published_rows(warehouse), staged.params))
        return False

    built = materialize(warehouse, model, models, window(D2, D3), audit=whole_table)

    assert (built.published, built.rows) == (False, 1)
    # The audit saw the table as the swap would leave it: days 1 and 3 kept, day 2 new.
    assert sorted(published[0].event_id) == ["a1", "b2", "c1"]
    assert [r[0] for r in table_rows(warehouse, "staging.stg_events")] == ["a1", "b1", "c1"]

    assert materialize(warehouse, model, models, window(D2, D3)).published
    assert [r[0] for r in table_rows(warehouse, "staging.stg_events")] == ["a1", "b2", "c1"]
    assert not warehouse.table_exists("staging.stg_events__next")


def test_a_first_window_rejected_publishes_no_table(tmp_path, warehouse):
    make_events(warehouse, [("a1", D1)])
    events_model(tmp_path / "models")
    models = load_models(tmp_path / "models")

    built = materialize(warehouse, models["stg_events"], models, window(D1, D2), lambda s: False)

    assert not built.published
    assert not warehouse.table_exists("staging.stg_events")


def test_values_are_bound_parameters_not_pasted_text(tmp_path, warehouse):
    with warehouse.begin() as conn:
        conn.execute(sa.text("CREATE TABLE raw.people (person_id VARCHAR, last_name VARCHAR)"))
        conn.execute(
            sa.text("INSERT INTO raw.people VALUES (:i, :n)"),
            [{"i": "p1", "n": "O'Brien"}, {"i": "p2", "n": "Smith"}, {"i": "p3", "n": "O"}],
        )
    write_model(
        tmp_path / "models",
        "named",
        "SELECT person_id, last_name, CAST(:label AS VARCHAR) AS label\n"
        "FROM {{ source('raw', 'people') }} WHERE last_name = :name",
    )
    models = load_models(tmp_path / "models")
    assert ":name" in render(models["named"], models)

    written = materialize(
        warehouse, models["named"], models, {"name": "O'Brien", "label": "it's; DROP TABLE x"}
    ).rows

    assert written == 1
    assert table_rows(warehouse, "marts.named") == [("p1", "O'Brien", "it's; DROP TABLE x")]


# --- the project's own models ------------------------------------------------------------


def test_project_models_load_in_dependency_order():
    models = load_models(SQL_DIR)
    order = list(models)
    files = {p.stem for p in SQL_DIR.glob("*.sql")}

    assert set(order) == files
    assert {
        "stg_customers",
        "dim_customers",
        "dim_rewards",
        "fct_transactions",
        "customer_features",
        "held_rows",
    } <= files
    position = order.index
    assert position("stg_customers") < position("dim_customers")
    assert position("dim_customers") < position("fct_transactions")
    assert position("fct_transactions") < position("customer_features")
    assert position("stg_transactions") < position("held_rows")
    assert position("dim_customers") < position("held_rows")
    with_refs = [m for m in models.values() if m.refs]
    assert with_refs
    for model in with_refs:
        assert all(position(ref) < position(model.name) for ref in model.refs), model.name
    assert set(models["customer_features"].refs) >= {"dim_customers", "fct_transactions"}
    assert models["stg_customers"].sources == (("raw", "customers"),)
    partitioned = {m.name: m.partition_column for m in models.values() if m.partitioned}
    views = {m.name: m.sources for m in models.values() if m.materialized == "view"}
    assert views == {
        "stg_transactions": (("raw", "transactions"),),
        "stg_redemptions": (("raw", "redemptions"),),
        "stg_engagement_events": (("raw", "engagement_events"),),
        "stg_provider_events": (("raw", "provider_events"), ("raw", "engagement_events")),
    }
    assert partitioned == {
        "score_history": "as_of",
        **dict.fromkeys(
            [
                "analytics_email_funnel",
                "analytics_redemptions",
                "analytics_revenue",
                "analytics_activity",
                "analytics_churn_risk",
                "analytics_recommendations",
                "analytics_uplift",
            ],
            "day",
        ),
    }


def test_project_models_build_on_empty_raw_tables(warehouse):
    """Every real model is valid SQL on this engine, run in load order."""
    from reward_assets.churn.model import SCORE_COLUMNS as CHURN_COLUMNS
    from reward_assets.email.outbox import SENT_EVENT_COLUMNS
    from reward_assets.email.webhooks import EVENT_COLUMNS
    from reward_assets.engagement.send_time import SCORE_COLUMNS as ENGAGEMENT_COLUMNS
    from reward_assets.recommend.log import ensure_log
    from reward_assets.recommend.sets import COLUMNS as SET_COLUMNS

    for entity in ENTITIES.values():
        warehouse.create_table(entity.table, sql_types(raw_columns(entity)))
    # The tables the models read that Python assets write.
    for table, columns in {
        "raw.email_sends": SENT_EVENT_COLUMNS,
        "raw.provider_events": EVENT_COLUMNS,
        "ml.churn_scores": CHURN_COLUMNS,
        "ml.engagement_scores": ENGAGEMENT_COLUMNS,
        "ml.recommendation_sets": SET_COLUMNS,
    }.items():
        warehouse.replace_table(table, columns, [])
    with warehouse.begin() as conn:  # the view recommendation_log writes (recommend/log.py)
        ensure_log(conn)
    models = load_models(SQL_DIR)
    params = {
        "as_of": dt.date(2023, 3, 3),
        "as_of_end": D4,
        "period_start": D1,
        "holdout_threshold": 500,
        "tiers": list(TIERS),
        "partition_start": D1,
        "partition_end": D4,
    }
    assert models
    for model in models.values():
        rendered = render(model, models)
        assert "{{" not in rendered and "}}" not in rendered, model.name
        materialize(warehouse, model, models, params)
        assert warehouse.row_count(model.table) == 0, model.name


def test_tier_macros_read_the_order_from_the_bound_tiers(tmp_path, warehouse):
    with warehouse.begin() as conn:
        conn.execute(sa.text("CREATE TABLE raw.members (member_id VARCHAR, tier VARCHAR)"))
        conn.execute(
            sa.text("INSERT INTO raw.members VALUES (:i, :t)"),
            [{"i": "m1", "t": "b"}, {"i": "m2", "t": None}, {"i": "m3", "t": "z"}],
        )
    write_model(
        tmp_path / "models",
        "ranked",
        "SELECT member_id, COALESCE(tier, {{ lowest_tier() }}) AS tier,\n"
        "{{tier_rank( 'tier' )}} AS tier_rank FROM {{ source('raw', 'members') }}",
    )
    models = load_models(tmp_path / "models")
    assert "{{" not in render(models["ranked"], models)

    materialize(warehouse, models["ranked"], models, {"tiers": ["a", "b", "c"]})

    ranked = warehouse.frame(
        "SELECT member_id, tier, COALESCE(tier_rank, 0) AS tier_rank FROM marts.ranked "
        "ORDER BY member_id"
    )
    assert ranked.values.tolist() == [["m1", "b", 2], ["m2", "a", 0], ["m3", "z", 0]]


def test_dims_take_tier_ranks_from_the_contract_and_availability_from_eligibility(warehouse):
    """What the batch reads from the dims (tier ranks, `is_available`) means what the
    contract and the API's re-check mean, with the parameters the assets bind."""
    from reward_assets.api.recommendations import rewards_by_id
    from reward_assets.defs.warehouse.sql_assets import model_params

    for entity in (ENTITIES["customers"], ENTITIES["rewards"]):
        warehouse.create_table(entity.table, sql_types(raw_columns(entity)))
    tiers = [*TIERS, None]
    customers = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(len(tiers))],
            "email": "someone@example.com",
            "signup_at": pd.Timestamp("2023-03-01"),
            "tier": tiers,
            "holdout_bucket": 9_999,
        }
    )
    stock = [
        (active, inventory) for active in (True, False, None) for inventory in (None, -1, 0, 3)
    ]
    rewards = pd.DataFrame(
        {
            "reward_id": [f"r{i}" for i in range(len(stock))],
            "name": "A reward",
            "category": "dining",
            "points_cost": 100,
            "inventory": pd.array([inventory for _, inventory in stock], dtype="Int64"),
            "min_tier": [tiers[i % len(tiers)] for i in range(len(stock))],
            "active": pd.array([active for active, _ in stock], dtype="boolean"),
        }
    )
    with warehouse.begin() as conn:
        warehouse.append(conn, "raw.customers", customers)
        warehouse.append(conn, "raw.rewards", rewards)
    settings = SimpleNamespace(
        as_of=dt.date(2023, 3, 3), partitions_start_date=D1.date(), holdout_share=0.05
    )
    params = model_params(warehouse, settings)
    models = load_models(SQL_DIR)
    for name in ("stg_customers", "stg_rewards", "dim_customers", "dim_rewards"):
        materialize(warehouse, models[name], models, params)

    dim_customers = warehouse.frame("SELECT tier, tier_rank FROM marts.dim_customers")
    assert sorted(map(tuple, dim_customers.values.tolist())) == sorted(
        [(tier, rank) for tier, rank in TIER_RANKS.items()] + [(LOWEST_TIER, 1)]
    )
    dim_rewards = warehouse.frame("SELECT * FROM marts.dim_rewards")
    assert set(dim_rewards["min_tier"]) == set(TIERS)
    assert (dim_rewards["min_tier"].map(TIER_RANKS) == dim_rewards["min_tier_rank"]).all()
    served = rewards_by_id(dim_rewards)
    available = {
        r.reward_id: unavailable_reason(r.active, r.inventory) is None for r in served.values()
    }
    assert dict(zip(dim_rewards["reward_id"], dim_rewards["is_available"], strict=True)) == (
        available
    )
    assert 0 < sum(available.values()) < len(available)


# --- views ---------------------------------------------------------------------------------


def view_models(folder: Path) -> dict[str, SqlModel]:
    """A staging view over raw.events and a mart built from it."""
    write_model(
        folder,
        "stg_events",
        "SELECT event_id, occurred_at, CAST(occurred_at AS DATE) AS day "
        "FROM {{ source('raw', 'events') }}",
        schema="staging",
        materialized="view",
    )
    write_model(folder, "events_mart", "SELECT event_id, day FROM {{ ref('stg_events') }}")
    return load_models(folder)


def view_kind(warehouse: Warehouse, table: str) -> str | None:
    schema, _, name = table.rpartition(".")
    return warehouse.scalar(
        "SELECT table_type FROM information_schema.tables "
        "WHERE table_schema = :s AND table_name = :n",
        {"s": schema, "n": name},
    )


def test_a_view_reads_its_source_as_it_changes_and_replaces_the_table_it_was(tmp_path, warehouse):
    make_events(warehouse, [("a1", D1), ("b1", D2)])
    models = view_models(tmp_path / "models")
    # The model was a table before (a warehouse built by the previous partitioned kind).
    warehouse.ensure_schemas()
    with warehouse.begin() as conn:
        conn.execute(sa.text("CREATE TABLE staging.stg_events AS SELECT 'old' AS event_id"))

    built = materialize(warehouse, models["stg_events"], models, {})

    assert built.published and built.rows == 2
    assert view_kind(warehouse, "staging.stg_events") == "VIEW"
    assert not warehouse.table_exists("staging.stg_events__next")
    # Loads rewrite the raw rows in place (DELETE and INSERT) under the view.
    with warehouse.begin() as conn:
        conn.execute(sa.text("DELETE FROM raw.events WHERE occurred_at >= :d"), {"d": D2})
        conn.execute(sa.text("INSERT INTO raw.events VALUES ('c1', :t)"), {"t": D3})
    assert [r[0] for r in table_rows(warehouse, "staging.stg_events")] == ["a1", "c1"]
    # Building it again, and the mart from it by a swap beside, still work with the view.
    assert materialize(warehouse, models["stg_events"], models, {}).rows == 2
    assert materialize(warehouse, models["events_mart"], models, {}).rows == 2
    assert materialize(warehouse, models["events_mart"], models, {}).published
    assert [r[0] for r in table_rows(warehouse, "marts.events_mart")] == ["a1", "c1"]


def test_a_view_takes_no_bound_parameters(tmp_path):
    for body in (
        "SELECT * FROM {{ source('raw', 'events') }} WHERE occurred_at < :as_of_end",
        "SELECT {{ lowest_tier() }} AS tier",
    ):
        path = write_model(tmp_path, "stg_bad", body, materialized="view")
        with pytest.raises(SqlModelError, match="no bound parameters"):
            parse_model(path)
    # A cast is not a parameter.
    path = write_model(tmp_path, "stg_ok", "SELECT '1'::INTEGER AS n", materialized="view")
    assert parse_model(path).materialized == "view"


def test_the_loads_rewrite_raw_tables_under_the_staging_views(tmp_path, warehouse):
    """PostgreSQL refuses to drop a table a view reads: the raw loads must keep rewriting
    their tables in place, a window or a whole snapshot at a time."""
    data = tmp_path / "data"
    write_basic_landing(data)
    start, end = dt.datetime(2023, 3, 1), dt.datetime(2023, 3, 4)
    load_window(warehouse, TRANSACTIONS, data, start, end)
    models = load_models(SQL_DIR)
    materialize(warehouse, models["stg_transactions"], models, {})
    write_rows(data, "transactions", "2023-03-02.csv", [transaction("t9", "cust001", "2023-03-02")])

    load_window(warehouse, TRANSACTIONS, data, start, end)

    assert view_kind(warehouse, "staging.stg_transactions") == "VIEW"
    ids = warehouse.frame("SELECT transaction_id FROM staging.stg_transactions").transaction_id
    assert len(ids) == 9 and "t9" in set(ids) and "t2023-03-02-1" not in set(ids)
