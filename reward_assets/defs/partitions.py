"""The one daily partitioning of the project: every daily asset imports it from here.

Read when Dagster loads the definitions (not at package import), so PARTITIONS_START_DATE
can move it.
"""

import dagster as dg

from reward_assets.settings import get_settings

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=get_settings().partitions_start_date.isoformat(), timezone="UTC"
)


def window_of(context: dg.AssetExecutionContext):
    """The run's partition window as naive UTC datetimes (the warehouse's convention)."""
    window = context.partition_time_window
    return window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)


# Lets a date range be launched across every daily asset at once:
#   dg launch --assets 'tag:partitioned=daily' --partition-range 2023-03-01...2023-03-31
DAILY_TAG = {"partitioned": "daily"}
