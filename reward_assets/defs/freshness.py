"""Freshness policies on the served tables and the marts, sized to the schedule that
refreshes each: a table is late once a whole period of its schedule and a grace for the
run have passed since it was last materialised. Dagster's freshness daemon evaluates them
(`dagster dev`/`dg dev` runs it) and `freshness_alert_sensor` tells the operator."""

import datetime as dt

import dagster as dg

from reward_assets.defs.analytics.assets import ANALYTICS, analytics_schedule
from reward_assets.defs.engagement import ENGAGEMENT
from reward_assets.defs.ingest.schedules import daily_refresh_schedule
from reward_assets.defs.ml.gates import SCORING
from reward_assets.settings import Settings
from reward_assets.warehouse.snapshots import SERVED_TABLES

MARTS = "warehouse"
# Room for the run itself: a refresh of 1M customers takes the better part of an hour.
GRACE = dt.timedelta(hours=3)
SERVED_ASSETS = {table.rpartition(".")[2] for table in SERVED_TABLES}


def cron_period(cron: str) -> dt.timedelta:
    """The longest gap between two ticks of a five-field cron, to the day: weekly when it
    names weekdays, monthly when it names days or months, else daily (a sub-daily cron
    still counts as daily: a table a day late is what the operator needs to hear of)."""
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(f"expected a five-field cron, got {cron!r}")
    _, _, day, month, weekday = fields
    if weekday != "*":
        return dt.timedelta(days=7)
    if day != "*" or month != "*":
        return dt.timedelta(days=31)
    return dt.timedelta(days=1)


def group_schedules(settings: Settings) -> dict[str, str]:
    """The cron that refreshes each group with served tables or marts; scoring follows
    every successful refresh (`score_after_refresh`), so it keeps the refresh's rhythm."""
    return {
        MARTS: daily_refresh_schedule.cron_schedule,
        SCORING: daily_refresh_schedule.cron_schedule,
        ENGAGEMENT: settings.engagement_cycle_cron,
        ANALYTICS: analytics_schedule.cron_schedule,
    }


def fail_window(group: str, settings: Settings) -> dt.timedelta:
    # A served table in a group without a schedule of its own follows the daily refresh.
    crons = group_schedules(settings)
    return cron_period(crons.get(group, crons[MARTS])) + GRACE


def with_freshness(spec: dg.AssetSpec, settings: Settings) -> dg.AssetSpec:
    """`spec` with the freshness policy of its schedule if it is a mart or served table."""
    if spec.key.path[-1] not in SERVED_ASSETS and spec.group_name != MARTS:
        return spec
    return spec.replace_attributes(
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=fail_window(spec.group_name, settings)
        )
    )
