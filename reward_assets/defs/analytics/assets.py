import datetime as dt

import dagster as dg

from reward_assets.analytics.report import DAILY_TABLES, RANGE_TABLES, range_report
from reward_assets.defs.partitions import daily_partitions
from reward_assets.defs.pools import WAREHOUSE_POOL
from reward_assets.defs.resources import SettingsResource, WarehouseResource
from reward_assets.ingest.clock import resolve_as_of

ANALYTICS = "analytics"


class ReportConfig(dg.Config):
    """The report's range; both ends inclusive. Unset: the last `days` partitions up to
    AS_OF (the data's today)."""

    start_date: str | None = None
    end_date: str | None = None
    days: int = 30


def report_range(config: ReportConfig, as_of: dt.date, first: dt.date) -> tuple[dt.date, dt.date]:
    end = dt.date.fromisoformat(config.end_date) if config.end_date else as_of
    if config.start_date:
        return dt.date.fromisoformat(config.start_date), end
    if config.days < 1:
        raise ValueError(f"days must be at least 1, got {config.days}")
    return max(end - dt.timedelta(days=config.days - 1), first), end


@dg.asset(
    pool=WAREHOUSE_POOL,
    group_name=ANALYTICS,
    deps=[table.rpartition(".")[2] for table in DAILY_TABLES + RANGE_TABLES],
    kinds={"html"},
    # Lets `dg launch --assets group:analytics --partition-range ...` take it along.
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def analytics_report(
    context: dg.AssetExecutionContext,
    config: ReportConfig,
    settings: SettingsResource,
    warehouse: WarehouseResource,
):
    """The morning report over a range of days: funnel, redemptions, revenue, customers,
    churn-risk mix, recommendation acceptance and uplift, with small charts shown here
    (an entry each, under a kilobyte) and the full charts in a standalone HTML file under
    DATA_DIR/reports/."""
    # Imported here: matplotlib costs every load of the definitions a third of a second.
    from reward_assets.analytics.charts import charts, markdown, ui_charts, write_report

    project = settings.get()
    with warehouse.open() as wh:
        start, end = report_range(
            config, resolve_as_of(wh, project.as_of), project.partitions_start_date
        )
        report = range_report(wh, start, end)
    pictures = charts(report)
    path = write_report(report, pictures, project.data_dir / "reports")
    uplift = report["uplift"]
    context.log.info(f"analytics report {start}..{end} written to {path}")
    return dg.MaterializeResult(
        metadata={
            "start_date": start.isoformat(),
            "end_date": end.isoformat(),
            "days_with_data": report["days_with_data"],
            **{name: dg.MetadataValue.md(text) for name, text in ui_charts(report).items()},
            "report": dg.MetadataValue.md(markdown(report)),
            "html": dg.MetadataValue.path(str(path)),
            "emails_sent": report["email_funnel"]["totals"]["sent"],
            "redemptions": report["redemptions"]["redemptions"],
            "uplift": dg.MetadataValue.float(uplift["uplift"])
            if uplift["uplift"] is not None
            else dg.MetadataValue.null(),
            "uplift_ci": f"{uplift['ci_low']} .. {uplift['ci_high']}",
        }
    )


analytics_job = dg.define_asset_job(
    "analytics_job",
    selection=dg.AssetSelection.groups(ANALYTICS),
    partitions_def=daily_partitions,
    description="The daily analytics of a day (or a range, as one run) and the report.",
)

analytics_schedule = dg.build_schedule_from_partitioned_job(
    analytics_job,
    name="analytics_schedule",
    hour_of_day=7,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Each morning: yesterday's analytics partition, then the report.",
)
