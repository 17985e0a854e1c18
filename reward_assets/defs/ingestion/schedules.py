import dagster as dg

from reward_assets.defs.partitions import daily_partitions
from reward_assets.pipeline import latest_landed_day
from reward_assets.settings import get_settings

daily_refresh_job = dg.define_asset_job(
    "daily_refresh_job",
    selection=dg.AssetSelection.groups("ingestion", "staging", "warehouse"),
    partitions_def=daily_partitions,
    description="Loads one day of landing data and rebuilds the marts that follow from it.",
)


@dg.schedule(
    job=daily_refresh_job,
    cron_schedule="0 6 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def daily_refresh_schedule(context: dg.ScheduleEvaluationContext):
    """Loads the newest landed day: data time, not wall time, picks the partition.

    Reads only the landing folder (never the DuckDB file, which a run may be writing).
    The run key is the day, so a day already loaded is not requested again.
    """
    settings = get_settings()
    day = latest_landed_day(settings)
    if day is None:
        return dg.SkipReason(f"no dated landing files under {settings.data_dir}/")
    if day < settings.partitions_start_date:
        return dg.SkipReason(f"newest landed day {day} is before the first partition")
    key = day.isoformat()
    return dg.RunRequest(run_key=f"daily-refresh-{key}", partition_key=key)
