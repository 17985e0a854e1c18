"""`engagement_cycle_job` and `engagement_cycle_schedule`: the daily cycle, the whole
engagement group: suppression, segments, plan and messages. Delivery (`delivery_job`)
sends what is due."""

import dagster as dg

from reward_assets.defs.engagement import ENGAGEMENT
from reward_assets.settings import Settings

engagement_cycle_job = dg.define_asset_job(
    "engagement_cycle_job",
    selection=dg.AssetSelection.groups(ENGAGEMENT),
    description="Segments, plans and writes today's emails into the outbox.",
)


@dg.definitions
def engagement_cycle() -> dg.Definitions:
    """The job and its schedule, whose cron and time zone (ENGAGEMENT_CYCLE_CRON,
    ENGAGEMENT_CYCLE_TIMEZONE) are read when Dagster loads the code."""
    settings = Settings()
    return dg.Definitions(
        jobs=[engagement_cycle_job],
        schedules=[
            dg.ScheduleDefinition(
                name="engagement_cycle_schedule",
                job=engagement_cycle_job,
                cron_schedule=settings.engagement_cycle_cron,
                execution_timezone=settings.engagement_cycle_timezone,
                default_status=dg.DefaultScheduleStatus.STOPPED,
                description="Daily (ENGAGEMENT_CYCLE_CRON in ENGAGEMENT_CYCLE_TIMEZONE).",
            )
        ],
    )
