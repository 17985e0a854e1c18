import datetime as dt

import dagster as dg

from reward_assets.defs.partitions import DAILY_TAG, daily_partitions, window_of
from reward_assets.defs.pools import WAREHOUSE_POOL
from reward_assets.defs.resources import (
    LandingResource,
    SettingsResource,
    WarehouseResource,
)
from reward_assets.defs.warehouse.table_metadata import table_metadata
from reward_assets.ingest.contract import (
    CUSTOMERS,
    ENGAGEMENT_EVENTS,
    REDEMPTIONS,
    REWARDS,
    TRANSACTIONS,
    Entity,
)
from reward_assets.ingest.load import LoadReport, load_snapshot, load_window

QUARANTINE_CHECK = "quarantine_share_within_limit"


def _check_spec(entity: Entity) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        QUARANTINE_CHECK,
        asset=entity.name,
        description="Warns when more than QUARANTINE_MAX_SHARE of the rows read were quarantined.",
    )


def _result(
    context: dg.AssetExecutionContext, report: LoadReport, limit: float, tables: dict
) -> dg.MaterializeResult:
    considered = report.rows_loaded + report.rows_quarantined
    share = report.rows_quarantined / considered if considered else 0.0
    metadata = {
        "dagster/row_count": report.rows_loaded,
        "files_read": report.files_read,
        "rows_read": report.rows_read,
        "rows_quarantined": report.rows_quarantined,
        "quarantined_by_reason": dict(sorted(report.quarantined.items())),
        "optional_values_nulled": dict(sorted(report.nulled_optional.items())),
        "files_quarantined": report.files_quarantined,
        "files_skipped": report.files_skipped,
        **tables,
    }
    if report.rows_other_partitions:
        metadata["rows_for_other_partitions"] = report.rows_other_partitions
    for name in report.files_skipped:
        context.log.warning(f"{report.entity}: {name} is not read (not .csv, .csv.gz or .parquet)")
    for name in report.files_quarantined:
        context.log.warning(
            f"{report.entity}: {name} could not be read and is quarantined whole "
            "(see raw.quarantine for the reason)"
        )
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name=QUARANTINE_CHECK,
                passed=share <= limit,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"quarantined_share": round(share, 4), "limit": limit},
            )
        ],
    )


def snapshot_asset(entity: Entity) -> dg.AssetsDefinition:
    @dg.asset(
        pool=WAREHOUSE_POOL,
        name=entity.name,
        group_name="ingestion",
        kinds={"python", "duckdb"},
        check_specs=[_check_spec(entity)],
        description=f"Raw {entity.name} from the landing folder (a full snapshot); "
        "contract violations go to raw.quarantine with their reason. A snapshot that would "
        "drop more than SNAPSHOT_MAX_SHRINK of the loaded rows fails and changes nothing.",
    )
    def _asset(
        context: dg.AssetExecutionContext,
        settings: SettingsResource,
        landing: LandingResource,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        config = settings.get()
        with warehouse.open() as wh:
            report = load_snapshot(wh, entity, landing.path, config.snapshot_max_shrink)
            tables = table_metadata(wh, entity.table)
        return _result(context, report, config.quarantine_max_share, tables)

    return _asset


def event_asset(entity: Entity, deps: list[str]) -> dg.AssetsDefinition:
    @dg.asset(
        pool=WAREHOUSE_POOL,
        name=entity.name,
        group_name="ingestion",
        kinds={"python", "duckdb"},
        deps=deps,
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        tags=DAILY_TAG,
        check_specs=[_check_spec(entity)],
        description=f"Raw {entity.name} by event date (UTC); a partition or a range of them "
        "replaces exactly its days. Contract violations go to raw.quarantine.",
    )
    def _asset(
        context: dg.AssetExecutionContext,
        settings: SettingsResource,
        landing: LandingResource,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        config = settings.get()
        start, end = window_of(context)
        with warehouse.open() as wh:
            known_rewards = None
            if entity is REDEMPTIONS:
                if not wh.table_exists("raw.rewards"):
                    raise dg.Failure(
                        "redemptions are checked against the reward catalogue, which is not "
                        "loaded yet: materialise `rewards` first"
                    )
                known_rewards = set(wh.frame("SELECT reward_id FROM raw.rewards")["reward_id"])
            first_day = dt.datetime.combine(config.partitions_start_date, dt.time())
            report = load_window(wh, entity, landing.path, start, end, known_rewards, first_day)
            tables = table_metadata(wh, entity.table)
        context.log.info(
            f"{entity.name} {start:%Y-%m-%d}..{end:%Y-%m-%d}: {report.rows_loaded} rows loaded, "
            f"{report.rows_quarantined} quarantined from {report.files_read} files"
        )
        return _result(context, report, config.quarantine_max_share, tables)

    return _asset


customers = snapshot_asset(CUSTOMERS)
rewards = snapshot_asset(REWARDS)
transactions = event_asset(TRANSACTIONS, deps=[])
redemptions = event_asset(REDEMPTIONS, deps=["rewards"])
engagement_events = event_asset(ENGAGEMENT_EVENTS, deps=[])
