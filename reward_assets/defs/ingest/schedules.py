import datetime as dt

import dagster as dg

from reward_assets.defs.partitions import RANGE_END_TAG, RANGE_START_TAG, daily_partitions
from reward_assets.defs.resources import LandingResource, SettingsResource
from reward_assets.ingest.contract import ENTITIES
from reward_assets.ingest.landing import landing_files

daily_refresh_job = dg.define_asset_job(
    "daily_refresh_job",
    selection=dg.AssetSelection.groups("ingestion", "staging", "warehouse"),
    partitions_def=daily_partitions,
    description="Loads a range of days of landing data and rebuilds the marts that follow.",
)


@dg.schedule(
    job=daily_refresh_job,
    cron_schedule="0 6 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def daily_refresh_schedule(
    context: dg.ScheduleEvaluationContext, settings: SettingsResource, landing: LandingResource
):
    """Loads every landed day not loaded yet, and the day before it, in one run.

    Data time, not wall time, picks the days: a landed file of an event entity whose
    partition has no materialisation. The day before is reloaded because a file may hold
    rows from just across midnight. Reads the landing folder and the instance only, never
    the DuckDB file, which a run may be writing.
    """
    first = settings.get().partitions_start_date
    missing: set[dt.date] = set()
    for entity in (e for e in ENTITIES.values() if e.partitioned):
        landed = {f.day for f in landing_files(landing.path, entity.name) if f.day}
        loaded = context.instance.get_materialized_partitions(dg.AssetKey(entity.name))
        missing |= {day for day in landed if day >= first and day.isoformat() not in loaded}
    if not missing:
        return dg.SkipReason(
            f"no landed day from {first} on is waiting to be loaded in {landing.path}/"
        )
    start = max(min(missing) - dt.timedelta(days=1), first).isoformat()
    end = max(missing).isoformat()
    return dg.RunRequest(
        run_key=f"daily-refresh-{start}-{end}",
        tags={RANGE_START_TAG: start, RANGE_END_TAG: end},
    )
