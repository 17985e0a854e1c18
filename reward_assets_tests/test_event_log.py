"""The local instance's event log (reward_assets/defs/event_log.py, configured in
dagster_home/dagster.yaml) stores a range run's materialisations exactly as Dagster's
stock SQLite storage does, and what reads them (the UI's queries, the schedule) sees them."""

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from dagster._core.storage.event_log import SqliteEventLogStorage

from reward_assets.defs.event_log import BatchingSqliteEventLogStorage
from reward_assets.warehouse.store import Warehouse
from reward_assets_tests.conftest import PLATFORM_GROUPS
from reward_assets_tests.landing_builders import write_basic_landing

PROJECT = Path(__file__).resolve().parents[1]
DAYS = ("2023-03-01", "2023-03-02", "2023-03-03")
# What the stock storage is configured as when dagster.yaml names no event log storage.
STOCK_YAML = "telemetry:\n  enabled: false\n"


def fresh_home(path: Path, yaml: str | None, monkeypatch) -> Path:
    path.mkdir(parents=True)
    if yaml is None:
        shutil.copy(PROJECT / "dagster_home" / "dagster.yaml", path / "dagster.yaml")
    else:
        (path / "dagster.yaml").write_text(yaml)
    monkeypatch.setenv("DAGSTER_HOME", str(path))
    return path


def comparable(metadata) -> str:
    """The metadata, with what differs between two runs of the same data kept only by name:
    wall-clock timings (`*_seconds`) and the SQL models' preview (rows in no set order)."""
    return repr(
        sorted(
            (k, "varies" if k.endswith("seconds") or k == "preview" else v)
            for k, v in metadata.items()
        )
    )


def run_range_and_read() -> dict:
    """A range run of the platform on the DAGSTER_HOME instance, then what its readers see."""
    from reward_assets.definitions import defs
    from reward_assets.pipeline import materialize_all

    definitions = defs()
    platform = dg.AssetSelection.groups(*PLATFORM_GROUPS)
    keys = platform.resolve(definitions.resolve_asset_graph())
    schedule = definitions.resolve_schedule_def("daily_refresh_schedule")
    with dg.DagsterInstance.get() as instance:

        def tick():
            with dg.build_schedule_context(
                instance=instance,
                repository_def=definitions.get_repository_def(),
                resources=definitions.resources,
            ) as context:
                return schedule.evaluate_tick(context)

        before = tick()
        summary = materialize_all(
            definitions, instance, dt.date(2023, 3, 1), dt.date(2023, 3, 3), platform
        )
        assert summary.success, summary
        stored = {
            (
                e.dagster_event.asset_key.to_user_string(),
                e.dagster_event.partition,
                comparable(e.dagster_event.materialization.metadata),
            )
            for run_id in summary.run_ids
            for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        }
        indexed = {
            (
                key.to_user_string(),
                r.partition_key,
                comparable(r.asset_materialization.metadata),
            )
            for key in keys
            for r in instance.fetch_materializations(key, limit=100).records
        }
        latest = {
            key.to_user_string(): (
                event.dagster_event.partition,
                comparable(event.asset_materialization.metadata),
            )
            for key in keys
            if (event := instance.get_latest_materialization_event(key))
        }
        partitions = {
            key.to_user_string(): instance.get_materialized_partitions(key)
            for key in keys
            if definitions.resolve_asset_graph().get(key).is_partitioned
        }
        after = tick()
        return {
            "storage": type(instance.event_log_storage),
            "stored": stored,
            "indexed": indexed,
            "latest": latest,
            "partitions": partitions,
            "schedule": (before.run_requests, after.run_requests, after.skip_message),
        }


def test_a_range_run_stores_and_reads_as_with_the_stock_storage(tmp_path, monkeypatch):
    """Both instances under `reward-assets run`'s switches: with the stock storage a batch
    is stored event by event, as it always was."""
    from reward_assets.pipeline import DAGSTER_SWITCHES

    write_basic_landing(tmp_path / "data")
    for name, value in DAGSTER_SWITCHES.items():
        monkeypatch.setenv(name, value)
    seen = {}
    for name, yaml in (("stock", STOCK_YAML), ("project", None)):
        fresh_home(tmp_path / name, yaml, monkeypatch)
        # Each its own empty warehouse, as the metadata describes what a run found there.
        warehouse = Warehouse(f"duckdb:///{tmp_path / name / 'warehouse.duckdb'}")
        warehouse.ensure_schemas()
        warehouse.dispose()
        monkeypatch.setenv("WAREHOUSE_URL", warehouse.url)
        seen[name] = run_range_and_read()
    stock, project = seen["stock"], seen["project"]

    assert stock["storage"] is SqliteEventLogStorage
    assert project["storage"] is BatchingSqliteEventLogStorage
    # A range: several days of each partitioned asset, the batches the new storage writes.
    assert {partition for _, partition, _ in project["stored"]} >= set(DAYS)
    assert project["indexed"] == project["stored"]
    for name in ("stored", "latest", "partitions", "schedule"):
        assert project[name] == stock[name], name
    assert project["partitions"]["transactions"] == set(DAYS)
    assert all(latest[0] == DAYS[-1] for latest in project["latest"].values() if latest[0])
    before, after, skipped = project["schedule"]
    assert len(before) == 1 and after == []  # the schedule asks for the days, then no more
    assert "waiting to be loaded" in skipped


def table_rows(database: Path, table: str, skip: tuple[str, ...] = ()) -> list[tuple]:
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.connect() as conn:
        columns = [c for c in sa.inspect(conn).get_columns(table) if c["name"] not in skip]
        names = ", ".join(c["name"] for c in columns)
        rows = conn.execute(sa.text(f"SELECT {names} FROM {table} ORDER BY 1, 2")).all()
    engine.dispose()
    return [tuple(row) for row in rows]


def test_a_batch_writes_the_rows_storing_event_by_event_writes(tmp_path, monkeypatch):
    """Row for row, ids included, in the run's database and the index: the same events
    through `store_event_batch` and through stock `store_event` one at a time."""
    parts = dg.DailyPartitionsDefinition(start_date="2023-03-01")

    @dg.asset(partitions_def=parts, backfill_policy=dg.BackfillPolicy.single_run())
    def daily(context: dg.AssetExecutionContext):
        # Data versions are the tags the index keeps per event.
        return dg.MaterializeResult(
            metadata={"days": len(context.partition_keys)}, data_version=dg.DataVersion("v1")
        )

    fresh_home(tmp_path / "home", STOCK_YAML, monkeypatch)
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(
            [daily],
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": DAYS[0],
                "dagster/asset_partition_range_end": DAYS[-1],
            },
        )
        events = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    assert [e.dagster_event.partition for e in events] == list(DAYS)

    stock = SqliteEventLogStorage(str(tmp_path / "stock"))
    for event in events:
        stock.store_event(event)
    batched = BatchingSqliteEventLogStorage(str(tmp_path / "batched"))
    batched.store_event_batch(events)

    run_db = f"{result.run_id}.db"
    for database, table, skip in [
        (run_db, "event_logs", ()),
        ("index.db", "event_logs", ()),
        ("index.db", "asset_event_tags", ()),
        # create_timestamp is the wall clock at the row's insert
        ("index.db", "asset_keys", ("create_timestamp",)),
    ]:
        rows = table_rows(tmp_path / "batched" / database, table, skip)
        assert rows, (database, table)
        assert rows == table_rows(tmp_path / "stock" / database, table, skip), (database, table)
